"""Figure 2b: a full sample of ``sample_n`` grids with ``model.sample`` (batched, no rendering).

For every (sampler, steps) in ``sample_samplers`` — at the base config the 1000-step ancestral DDPM
chain that HoloDiffusion samples with, and 50-step DDIM — every precision and every U-Net variant.
Before timing, a 2-step DDIM sample at the same batch warms up kernels, compilation and graph
capture, so the figure is the sampler's steady cost; the first (warm-up) call is reported apart.
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional

import torch

from holo3d.bench.context import BenchContext
from holo3d.bench.denoiser_variants import use_variant, variants_for
from holo3d.bench.model_setup import autocast
from holo3d.bench.timing import time_fn
from holo3d.bench.unet_step import first_call_s


def make_sample(ctx: BenchContext, sampler: str, steps: Optional[int], precision: str
                ) -> Callable[[], torch.Tensor]:
    """A zero-argument ``model.sample(sample_n, sampler, steps)`` on the bench device."""
    model, device, n = ctx.model, ctx.device, ctx.settings.sample_n

    def sample() -> torch.Tensor:
        with autocast(precision, device):
            return model.sample(n, sampler=sampler, steps=steps, device=device)

    return sample


def measure_sample(ctx: BenchContext, sampler: str, steps: Optional[int], precision: str,
                   variant: str) -> None:
    s, model = ctx.settings, ctx.model
    n_steps = steps or model.num_diffusion_steps
    config = ctx.config(n=s.sample_n, sampler=sampler, steps=n_steps, precision=precision,
                        variant=variant, compile_mode=s.compile_mode if variant == "compile" else None,
                        repeats=s.sample_repeats)
    model.eval()
    with ctx.guard([("sample.time", "s")], config), use_variant(model, variant, s):
        first = first_call_s(make_sample(ctx, "ddim", 2, precision), ctx.device)
        timing = time_fn(make_sample(ctx, sampler, steps, precision), ctx.device, 0, s.sample_repeats)
        ctx.emit("sample.time", timing.median_s, "s", config, first_call_s=first,
                 per_step_ms=timing.median_s * 1e3 / n_steps, **timing.stats())


def run_sample(ctx: BenchContext) -> None:
    s = ctx.settings
    for (sampler, steps), variant, precision in itertools.product(
        s.sample_samplers, variants_for(s, ctx.device), s.precisions
    ):
        measure_sample(ctx, sampler, steps, precision, variant)
