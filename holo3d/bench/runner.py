"""Runs the selected figure families (or profiles) and says whether the run is clean.

A family that fails before its own per-measurement guards (e.g. the model cannot be built) is
reported as one "failed" line named after the family, and the next family still runs. The exit
status is 1 when any line failed or a numerics check is out of tolerance, else 0; "oom" (a
configuration that does not fit the GPU) and "skipped" are results, not failures.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Sequence

import torch

from holo3d.bench.context import BenchContext
from holo3d.bench.end_to_end import run_e2e
from holo3d.bench.model_setup import backend_flags
from holo3d.bench.numerics import run_numerics
from holo3d.bench.profiling import profile_targets, run_profile
from holo3d.bench.render_frame import run_render
from holo3d.bench.report import Reporter
from holo3d.bench.sample_run import run_sample
from holo3d.bench.settings import ALL_FIGURES, BenchSettings
from holo3d.bench.train_step import run_train
from holo3d.bench.unet_step import run_unet

logger = logging.getLogger(__name__)

FAMILIES: Dict[str, Callable[[BenchContext], None]] = {
    "numerics": run_numerics,
    "train": run_train,
    "unet": run_unet,
    "sample": run_sample,
    "render": run_render,
    "e2e": run_e2e,
}
assert tuple(FAMILIES) == ALL_FIGURES


def run_figures(ctx: BenchContext, only: Sequence[str]) -> None:
    for name in only:
        logger.info("figure family %s", name)
        with ctx.guard([(name, "")], {"bench": ctx.settings.name, "family": name}):
            FAMILIES[name](ctx)


def run_profiles(ctx: BenchContext, spec: str, out_dir: str, trace: bool) -> None:
    for what in profile_targets(spec):
        with ctx.guard([(f"profile.{what}", "ms")], {"bench": ctx.settings.name}):
            run_profile(ctx, what, out_dir, trace)


def exit_status(reporter: Reporter) -> int:
    out_of_tolerance = [line["figure"] for line in reporter.lines if line.get("passed") is False]
    if out_of_tolerance:
        logger.error("numerics out of tolerance: %s", ", ".join(out_of_tolerance))
    return 1 if reporter.n_failed or out_of_tolerance else 0


def run(settings: BenchSettings, reporter: Reporter, only: Sequence[str] = ALL_FIGURES,
        profile: str = "", profile_dir: str = "bench_profiles", trace: bool = False) -> int:
    """Measures ``only`` (or, with ``profile``, profiles those targets); returns the exit status."""
    torch.manual_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    ctx = BenchContext(settings, reporter)
    with backend_flags(settings.tf32, settings.cudnn_benchmark):
        if profile:
            run_profiles(ctx, profile, profile_dir, trace)
        else:
            run_figures(ctx, only)
    return exit_status(reporter)
