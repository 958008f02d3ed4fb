"""BenchContext: what every figure shares — settings, reporter, device, and one model instance.

The model (186.8M parameters at the base config) is built once and reused by every figure; the
training figure steps an optimizer on it, which changes its random weights but not its cost.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from holo3d.bench.model_setup import backend_state, build_model, model_summary
from holo3d.bench.report import Reporter
from holo3d.bench.settings import BenchSettings
from holo3d.models.holo_diffusion import HoloDiffusionModel


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

    def config(self, **figure_config: Any) -> Dict[str, Any]:
        """A figure's ``config``: its own settings, then the bench mode, backend switches, model."""
        return {
            **figure_config,
            "bench": self.settings.name,
            "device": str(self.device),
            **backend_state(),
            "model": model_summary(self.model, self.settings.model),
        }

    def emit(self, figure: str, value: Optional[float], unit: str, config: Dict[str, Any],
             **extra: Any) -> Dict[str, Any]:
        return self.reporter.emit(figure, value, unit, config, **extra)
