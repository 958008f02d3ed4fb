"""Figure 2a: one denoising step of the 3D U-Net, ``model.denoise(x_t, t)``, without autograd.

x_t is a (B, F, D, H, W) standard-normal grid and t random timesteps, for every batch size in
``unet_batches`` (1 and 15: one sample, and the batched 15-sample run of generate_samples), every
precision, and every U-Net variant asked for (eager; channels_last_3d, torch.compile, CUDA graph
behind flags). The first call of each variant is reported apart (compilation / graph capture).
"""

from __future__ import annotations

import itertools
import time
from typing import Callable

import torch

from holo3d.bench.context import BenchContext
from holo3d.bench.denoiser_variants import use_variant, variants_for
from holo3d.bench.model_setup import autocast
from holo3d.bench.timing import synchronize, time_fn


def grid_shape(ctx: BenchContext, batch: int) -> tuple:
    model = ctx.model
    res = model.grid_resolution
    return (batch, model.feature_size, res, res, res)


def make_denoise_step(ctx: BenchContext, batch: int, precision: str) -> Callable[[], torch.Tensor]:
    """A zero-argument ``model.denoise`` call on a fixed random x_t and t."""
    model, device = ctx.model, ctx.device
    generator = torch.Generator().manual_seed(ctx.settings.seed)
    x_t = torch.randn(grid_shape(ctx, batch), generator=generator).to(device)
    t = torch.randint(0, model.num_diffusion_steps, (batch,), generator=generator).to(device)

    @torch.no_grad()
    def step() -> torch.Tensor:
        with autocast(precision, device):
            return model.denoise(x_t, t)

    return step


def first_call_s(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call: compilation or capture happens here for compile / cuda_graph."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure_unet_step(ctx: BenchContext, batch: int, precision: str, variant: str) -> None:
    s = ctx.settings
    config = ctx.config(batch=batch, precision=precision, variant=variant,
                        compile_mode=s.compile_mode if variant == "compile" else None,
                        grid=list(grid_shape(ctx, batch)[1:]), warmup=s.warmup, repeats=s.repeats)
    ctx.model.eval()
    with ctx.guard([("unet.step_time", "ms")], config), use_variant(ctx.model, variant, s):
        step = make_denoise_step(ctx, batch, precision)
        first = first_call_s(step, ctx.device)
        timing = time_fn(step, ctx.device, s.warmup, s.repeats)
        ctx.emit("unet.step_time", timing.median_s * 1e3, "ms", config, first_call_s=first,
                 per_sample_ms=timing.median_s * 1e3 / batch, **timing.stats())


def run_unet(ctx: BenchContext) -> None:
    s = ctx.settings
    for variant, precision, batch in itertools.product(
        variants_for(s, ctx.device), s.precisions, s.unet_batches
    ):
        measure_unet_step(ctx, batch, precision, variant)
