"""What the training loop shows: scalars, image panels, sample videos and the generation-quality
figures (``generation_monitor``), from rank 0 only.

Everything here is best effort: a visualisation that fails is logged once and never stops training.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import torch

from holo3d.models.protocol import GenerativeModel
from holo3d.train.generation_monitor import SPLIT, GenerationQualityProbe, generation_settings
from holo3d.viz.logger_base import ExperimentLogger

logger = logging.getLogger(__name__)


class TrainingMonitor:
    def __init__(self, sink: ExperimentLogger, enabled: bool = True,
                 generation: Optional[GenerationQualityProbe] = None):
        self.sink = sink
        self.enabled = enabled  # False: nothing is rendered or posted (other ranks, logger=none)
        self.generation = generation  # rank 0 with generation_eval_interval_epochs > 0, else None
        self._failed: set = set()

    @classmethod
    def create(cls, loop_cfg: Any, exp_dir: str, is_main_process: bool,
               data_source: Any = None) -> "TrainingMonitor":
        """The monitor of this rank; ``data_source`` gives the generation evaluation its ground truth."""
        settings = generation_settings(loop_cfg)  # every rank: a bad value stops them all at start
        if not is_main_process:
            return cls(ExperimentLogger(), enabled=False)
        generation = GenerationQualityProbe.create(settings, data_source) if settings is not None else None
        if loop_cfg.logger == "none":  # the generation figures still go to train.log
            return cls(ExperimentLogger(), enabled=False, generation=generation)
        from holo3d.viz.logger_factory import make_logger

        kwargs: Dict[str, Any] = {}
        if loop_cfg.logger == "visdom":
            kwargs = {"server": loop_cfg.visdom_server, "port": loop_cfg.visdom_port}
        return cls(make_logger(loop_cfg.logger, exp_dir, **kwargs), generation=generation)

    def scalars(self, step: int, values: Dict[str, float], split: str) -> None:
        self._guard("scalars", self.sink.log_scalars, step, values, split)

    def panels(self, step: int, model: torch.nn.Module, batch: Any) -> None:
        """Renders the batch's targets in full (evaluation mode) and posts the panels."""
        self._guard("panels", self._panels, step, model, batch)

    def sample_video(self, step: int, model: torch.nn.Module) -> None:
        if isinstance(model, GenerativeModel) and model.can_sample:
            self._guard("sample_video", self._sample_video, step, model)

    def generation_quality(self, step: int, model: torch.nn.Module) -> None:
        """Scores ``model``'s samples against the ground truth (train.log, and the dashboard's
        "generation" split); training's random streams are left as they were."""
        if self.generation is not None:
            figures = self._attempt("generation_quality", self.generation.run, step, model)
            if figures:
                self.scalars(step, figures, SPLIT)

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
        if self.enabled:
            self._attempt(what, fn, *args)

    def _attempt(self, what: str, fn, *args) -> Any:
        """``fn(*args)``, or None (warned once per ``what``) when it raises."""
        try:
            return fn(*args)
        except Exception as error:  # monitoring must never stop training
            if what not in self._failed:
                self._failed.add(what)
                logger.warning("monitoring (%s) failed (later failures are silent): %s", what, error)
            return None
