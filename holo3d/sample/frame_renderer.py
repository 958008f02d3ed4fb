"""Full frames of one sample from many cameras, a few frames per renderer call, and frame post-processing
(resizing, depth colouring, side-by-side panels) for the videos.

The renderer itself chunks rays (``chunk_size`` per batched pass); grouping frames on top keeps the
ray tensors of a long, large video from being built all at once and lets a progress bar count frames.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.models.protocol import RenderableModel
from holo3d.viz.grid_visualization import depth_ramp_colour


@torch.no_grad()
def render_views(
    model: RenderableModel,
    sample: torch.Tensor,
    cameras: Optional[CamerasBase],
    image_size: Sequence[int],
    chunk_size: int,
    progress=None,
) -> Dict[str, torch.Tensor]:
    """Renders one ``sample`` (e.g. a grid (F, D, H, W)) from V cameras (None: image models, V = 1).

    Returns dict of rgb (V, 3, H, W) and, where the model has them, depth (V, 1, H, W) and opacity
    (V, 1, H, W), float32 on the sample's device (resize / convert there before copying to the
    host). ``progress`` (a tqdm bar or None) advances by one per frame.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if cameras is None:
        out = model.render_samples(sample[None], None, (h, w), chunk_size)
        if progress is not None:
            progress.update(1)
        return {k: v[0].float() for k, v in out.items()}
    per_call = max(1, chunk_size // (h * w))
    parts = []
    for start in range(0, len(cameras), per_call):
        index = list(range(start, min(start + per_call, len(cameras))))
        out = model.render_samples(sample[None], cameras[index], (h, w), chunk_size)
        parts.append({k: v[0].float() for k, v in out.items()})  # (v, C, H, W)
        if progress is not None:
            progress.update(len(index))
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def resize_frames(frames: torch.Tensor, size: Optional[Sequence[int]]) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, *size), bilinear (antialiased when shrinking); None keeps the size."""
    if size is None or tuple(size) == tuple(frames.shape[-2:]):
        return frames
    shrink = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    resized = F.interpolate(frames.float(), size=tuple(int(s) for s in size), mode="bilinear",
                            align_corners=False, antialias=shrink)
    return resized.clamp(0, 1)


def depth_image(depth: torch.Tensor, opacity: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Colour-coded depth, near = bright: (T, 1, H, W) x2 -> (T, 3, H, W) in [0, 1].

    The range is taken over all frames (robust 2nd-98th percentiles of pixels with opacity above
    ``threshold``) so colours mean the same depth throughout a video; empty space fades to black.
    """
    solid = depth[opacity > threshold]
    if solid.numel() < 2:
        return torch.zeros(depth.shape[0], 3, *depth.shape[-2:], device=depth.device)
    solid = solid.float()[:: max(1, solid.numel() // 100_000)]  # torch.quantile's input limit
    lo, hi = torch.quantile(solid, torch.tensor([0.02, 0.98], device=solid.device)).tolist()
    nearness = 1.0 - ((depth - lo) / max(hi - lo, 1e-6)).clamp(0, 1)  # (T, 1, H, W)
    colour = depth_ramp_colour(nearness[:, 0])  # (T, H, W, 3)
    return colour.permute(0, 3, 1, 2) * opacity.clamp(0, 1)


def side_by_side(*panels: torch.Tensor) -> torch.Tensor:
    """Panels (T, 3, H, W) of equal height placed left to right with a 2-pixel white gap."""
    gap = torch.ones(panels[0].shape[0], 3, panels[0].shape[-2], 2)
    pieces = []
    for i, panel in enumerate(panels):
        pieces += [panel.float().cpu()] + ([gap] if i < len(panels) - 1 else [])
    return torch.cat(pieces, dim=-1)  # (T, 3, H, sum W)
