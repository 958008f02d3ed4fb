"""What the training loop shows: scalars, image panels and sample videos, from rank 0 only.

Everything here is best effort: a visualisation that fails is logged once and never stops training.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

import torch

from holo3d.models.protocol import GenerativeModel
from holo3d.viz.logger_base import ExperimentLogger

logger = logging.getLogger(__name__)


class TrainingMonitor:
    def __init__(self, sink: ExperimentLogger, enabled: bool = True):
        self.sink = sink
        self.enabled = enabled  # False: nothing is rendered or posted (other ranks, logger=none)
        self._failed: set = set()

    @classmethod
    def create(cls, loop_cfg: Any, exp_dir: str, is_main_process: bool) -> "TrainingMonitor":
        if not is_main_process or loop_cfg.logger == "none":
            return cls(ExperimentLogger(), enabled=False)
        from holo3d.viz.logger_factory import make_logger

        kwargs: Dict[str, Any] = {}
        if loop_cfg.logger == "visdom":
            kwargs = {"server": loop_cfg.visdom_server, "port": loop_cfg.visdom_port}
        return cls(make_logger(loop_cfg.logger, exp_dir, **kwargs))

    def scalars(self, step: int, values: Dict[str, float], split: str) -> None:
        self._guard("scalars", self.sink.log_scalars, step, values, split)

    def panels(self, step: int, model: torch.nn.Module, batch: Any) -> None:
        """Renders the batch's targets in full (evaluation mode) and posts the panels."""
        self._guard("panels", self._panels, step, model, batch)

    def sample_video(self, step: int, model: torch.nn.Module) -> None:
        if isinstance(model, GenerativeModel) and model.can_sample:
            self._guard("sample_video", self._sample_video, step, model)

    def close(self) -> None:
        self._guard("close", self.sink.close)

    @torch.no_grad()
    def _panels(self, step: int, model: torch.nn.Module, batch: Any) -> None:
        from pytorch3d.implicitron.models.renderer.base import EvaluationMode

        from holo3d.viz.panels import prediction_panels

        was_training = model.training
        try:
            preds = model.eval()(**batch, evaluation_mode=EvaluationMode.EVALUATION)
        finally:
            model.train(was_training)
        self.sink.log_images(step, prediction_panels(preds))

    def _sample_video(self, step: int, model: GenerativeModel) -> None:
        self.sink.log_video(step, "sample", model.preview_frames())

    def _guard(self, what: str, fn, *args) -> None:
        if not self.enabled:
            return
        try:
            fn(*args)
        except Exception as error:  # monitoring must never stop training
            if what not in self._failed:
                self._failed.add(what)
                logger.warning("monitoring (%s) failed (later failures are silent): %s", what, error)
