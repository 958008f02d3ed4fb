"""BenchContext: what every figure shares — settings, reporter, device, and one model instance.

The model (186.8M parameters at the base config) is built once and reused by every figure; the
training figure steps an optimizer on it, which changes its random weights but not its cost.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch

from holo3d.bench.model_setup import backend_state, build_model, model_summary
from holo3d.bench.report import Reporter
from holo3d.bench.settings import BenchSettings
from holo3d.bench.timing import free_device_memory
from holo3d.models.holo_diffusion import HoloDiffusionModel

logger = logging.getLogger(__name__)


class BenchContext:
    def __init__(self, settings: BenchSettings, reporter: Reporter):
        self.settings = settings
        self.reporter = reporter
        self.device = torch.device(settings.device)
        self._model: Optional[HoloDiffusionModel] = None

    @property
    def model(self) -> HoloDiffusionModel:
        if self._model is None:
            self._model = build_model(self.settings.model, self.device, self.settings.seed)
        return self._model

    def config(self, backend: bool = True, **figure_config: Any) -> Dict[str, Any]:
        """A figure's ``config``: its own settings, then the bench mode, the backend switches in
        force in this process (not for figures measured in a subprocess), and the model."""
        return {
            **figure_config,
            "bench": self.settings.name,
            "device": str(self.device),
            **(backend_state() if backend else {}),
            "model": model_summary(self.model, self.settings.model),
        }

    def emit(self, figure: str, value: Optional[float], unit: str, config: Dict[str, Any],
             **extra: Any) -> Dict[str, Any]:
        return self.reporter.emit(figure, value, unit, config, **extra)

    @contextlib.contextmanager
    def guard(self, figures: Sequence[Tuple[str, str]], config: Dict[str, Any]) -> Iterator[None]:
        """Runs a measurement; if it raises, writes each (figure, unit) with status "oom" (out of
        device memory: a result, e.g. 8 scenes in fp32) or "failed", and lets the run go on."""
        free_device_memory(self.device)  # what a previous failed measurement left behind
        try:
            yield
        except Exception as error:  # noqa: BLE001 - every failure becomes a reported line
            status = "oom" if isinstance(error, torch.OutOfMemoryError) else "failed"
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            logger.error("%s failed:\n%s", figures[0][0], traceback.format_exc())
            for figure, unit in figures:
                self.emit(figure, None, unit, config, status=status, error=message)
        finally:
            free_device_memory(self.device)
