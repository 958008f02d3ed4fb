"""Figure 3: full-frame rendering of a grid, ``model.render_samples`` (VolumeRenderer.render_image).

One (1, F, D, H, W) grid with values tanh(N(0, 1)) (the renderer's cost does not depend on the
values: every ray gets the same number of points), seen by V turntable cameras at
``render_size``^2, without autograd, with the model's coarse + fine points per ray, at each chunk
size (rays per batched pass; 0 = every ray of the call at once), in each precision.
The figure is milliseconds per frame: the median time of one call divided by V.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict

import torch

from holo3d.bench.context import BenchContext
from holo3d.bench.model_setup import autocast
from holo3d.bench.synthetic_batch import FOCAL_LENGTH, ORBIT_DISTANCE
from holo3d.bench.timing import time_fn
from holo3d.render.trajectories import turntable_cameras


def make_render(ctx: BenchContext, views: int, chunk: int, precision: str
                ) -> Callable[[], Dict[str, torch.Tensor]]:
    """A zero-argument full-frame render of ``views`` frames with ``chunk`` rays per pass."""
    model, device, size = ctx.model, ctx.device, ctx.settings.render_size
    generator = torch.Generator().manual_seed(ctx.settings.seed)
    res = model.grid_resolution
    grid = torch.tanh(torch.randn(1, model.feature_size, res, res, res, generator=generator)).to(device)
    cameras = turntable_cameras(views, distance=ORBIT_DISTANCE, focal_length=FOCAL_LENGTH, device=device)
    chunk_size = chunk if chunk > 0 else views * size * size

    def render() -> Dict[str, torch.Tensor]:
        with autocast(precision, device):
            return model.render_samples(grid, cameras, (size, size), chunk_size=chunk_size)

    return render


def measure_render(ctx: BenchContext, views: int, chunk: int, precision: str) -> None:
    s = ctx.settings
    renderer = ctx.model.renderer
    config = ctx.config(image_size=[s.render_size, s.render_size], views=views,
                        chunk_size=chunk if chunk > 0 else "full", precision=precision,
                        points_per_ray=[renderer.n_pts_coarse, renderer.n_pts_fine],
                        warmup=s.warmup, repeats=s.repeats)
    ctx.model.eval()
    with ctx.guard([("render.frame_time", "ms")], config):
        timing = time_fn(make_render(ctx, views, chunk, precision), ctx.device, s.warmup, s.repeats)
        ctx.emit("render.frame_time", timing.median_s * 1e3 / views, "ms", config, **timing.stats())


def run_render(ctx: BenchContext) -> None:
    s = ctx.settings
    for precision, views, chunk in itertools.product(s.precisions, s.render_views, s.chunk_sizes):
        measure_render(ctx, views, chunk, precision)
