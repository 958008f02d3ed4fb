"""A short, cheap sample video for the training monitor: one few-step DDIM sample on a small turntable.

Costs a handful of U-Net calls and ~16 small frames, so it can run every few epochs. It draws from
its own seeded generator (the training RNG streams are untouched, keeping resume exact) and puts the
model back in the train / eval mode it was in.
"""

from __future__ import annotations

import torch

from holo3d.render.trajectories import turntable_cameras
from holo3d.sample.camera_path import DEFAULT_DISTANCE_PER_EXTENT


@torch.no_grad()
def preview_sample_video(
    model: torch.nn.Module,
    n_frames: int = 16,
    image_size: int = 64,
    steps: int = 10,
    seed: int = 0,
    elevation_deg: float = 20.0,
) -> torch.Tensor:
    """Frames (T, 3, H, W) float in [0, 1] on the CPU of one sample seen from a turntable.

    The same seed gives the same starting noise every time, so successive previews show how the
    model's sample for a fixed noise evolves over training.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator(device=device).manual_seed(seed)
        grid = model.sample(1, sampler="ddim", steps=steps, eta=0.0, generator=generator, device=device)
        extent = float(getattr(model, "volume_extent", 2.0))
        cameras = turntable_cameras(
            n_frames, elevation_deg=elevation_deg, distance=DEFAULT_DISTANCE_PER_EXTENT * extent,
            device=device,
        )
        out = model.render_grid(grid, cameras, (image_size, image_size))  # rgb (1, T, 3, H, W)
        return out["rgb"][0].float().clamp(0, 1).cpu()
    finally:
        model.train(was_training)
