"""The training loop's periodic generation-quality evaluation (issue 17), on rank 0 only.

Every ``training_loop.generation_eval_interval_epochs`` epochs the current model (the EMA when there
is one) draws ``generation_eval_samples`` samples with ``generation_eval_sampler`` in
``generation_eval_steps`` steps and is scored against the data source's ground-truth shapes by the
same core as ``python -m holo3d.sample.generation_eval`` (``holo3d.eval.generation_run``). The
figures (``GenerationQualityReport.scalars``) go to the dashboard as split "generation" and, with
the ceiling and floor rows, to train.log.

Exact resume: every random stream training draws from (python, numpy, torch, CUDA) is saved before
an evaluation and restored after it, and the model is put back in the train / eval mode it was in,
so a run with the evaluation on trains bitwise as one with it off.

Skipped, with one log line saying why, for data sources without ground-truth shapes (said at start)
and for models that cannot be scored (said at the first evaluation): see ``generation_run``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Dict, Optional

import torch

from holo3d.eval.generation_run import (
    CannotEvaluate,
    GenerationEvaluator,
    GenerationSettings,
    cannot_evaluate_reason,
    ground_truth_of,
)
from holo3d.train.rng_state import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

SPLIT = "generation"  # the dashboard split (one curve per figure, beside "train" and "val")


def generation_settings(loop_cfg: Any) -> Optional[GenerationSettings]:
    """The evaluation's settings from the loop's ``generation_eval_*`` options (None: off).

    Raises ValueError naming the option when a value cannot work; call it on every rank so that a
    bad value stops all of them at start.
    """
    from holo3d.diffusion import SAMPLERS

    if loop_cfg.generation_eval_interval_epochs <= 0:
        return None
    prefix = "training_loop.generation_eval"
    if loop_cfg.generation_eval_samples < 2:
        raise ValueError(f"{prefix}_samples={loop_cfg.generation_eval_samples}; the set metrics need >= 2")
    if loop_cfg.generation_eval_steps < 1:
        raise ValueError(f"{prefix}_steps={loop_cfg.generation_eval_steps}; it must be >= 1")
    if loop_cfg.generation_eval_sampler not in SAMPLERS:
        raise ValueError(f"{prefix}_sampler={loop_cfg.generation_eval_sampler!r}; expected one of "
                         f"{', '.join(SAMPLERS)}")
    return GenerationSettings(num_samples=loop_cfg.generation_eval_samples,
                              sampler=loop_cfg.generation_eval_sampler, steps=loop_cfg.generation_eval_steps)


class GenerationQualityProbe:
    """Runs the evaluation on a model and returns its dashboard figures; None once it is off."""

    def __init__(self, evaluator: Optional[GenerationEvaluator]):
        self.evaluator = evaluator

    @classmethod
    def create(cls, settings: GenerationSettings, data_source) -> "GenerationQualityProbe":
        """A probe over the data source's ground truth, or an idle one (logged) when it has none."""
        try:
            truth = ground_truth_of(data_source)
        except Exception as error:  # noqa: BLE001 - monitoring must never stop training
            why = str(error) if isinstance(error, CannotEvaluate) else f"{type(error).__name__}: {error}"
            logger.warning("generation-quality evaluation skipped: %s", why)
            return cls(None)
        logger.info("generation-quality evaluation: %d samples (%s, %d steps) against %d held-out objects "
                    "of %s", settings.num_samples, settings.sampler, settings.steps, len(truth.heldout_names),
                    truth.folder)
        return cls(GenerationEvaluator(truth, settings))

    def run(self, step: int, model: torch.nn.Module) -> Optional[Dict[str, float]]:
        """Scores ``model`` (eval mode, no gradients, RNG streams restored); the finite figures, or
        None when the evaluation is off. Exceptions propagate, after the restore."""
        if self.evaluator is None:
            return None
        reason = cannot_evaluate_reason(model)
        if reason is not None:
            logger.warning("generation-quality evaluation skipped: %s", reason)
            self.evaluator = None  # the model's kind does not change during a run: say it once
            return None
        tic = time.perf_counter()
        saved, was_training = capture_rng_state(), model.training
        try:
            run = self.evaluator.evaluate(model.eval(), next(model.parameters()).device)
        finally:
            model.train(was_training)
            restore_rng_state(saved)
        figures = run.report.scalars()
        logger.info("iteration %d generation quality (%.1f s): %s\n%s", step, time.perf_counter() - tic,
                    " ".join(f"{k}={v:.4g}" for k, v in figures.items()), run.report.table())
        return {k: v for k, v in figures.items() if math.isfinite(v)}
