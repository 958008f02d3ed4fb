"""Few-view reconstruction of one sequence: pick K source views, lift them into a grid with the model,
render the held-out views.

The reconstruction is the model's own (``ReconstructionModel.reconstruct_from_views``: for
HoloDiffusion the U-Net at t=0, or the lifted grid itself without a U-Net), or, for diffusion
models with ``denoise_from_t > 0``, the lifted grid noised
to t and denoised back with DDIM (SDEdit-style), which lets the prior fill in what K views miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.data.scene_batch import SceneBatch
from holo3d.models.protocol import ReconstructionModel
from holo3d.models.target_views import TargetViews
from holo3d.sample.dataset_access import collate_frames
from holo3d.sample.input_checks import SettingsError


def split_views(n_frames: int, n_sources: int, max_targets: int = 0) -> Tuple[List[int], List[int]]:
    """(source positions, held-out positions) within a sequence of ``n_frames`` frames.

    Sources are ``n_sources`` positions evenly spread over the sequence (so they see the object from
    all around, as a capture would); held-out views are the rest, evenly thinned to ``max_targets``
    (0: all of them).
    """
    if not 1 <= n_sources < n_frames:
        raise SettingsError(f"n_source_views={n_sources}: need 1 <= n_source_views < frames in the sequence ({n_frames})")
    sources = torch.linspace(0, n_frames - 1, n_sources).round().long().unique().tolist()
    held_out = [i for i in range(n_frames) if i not in set(sources)]
    if 0 < max_targets < len(held_out):
        keep = torch.linspace(0, len(held_out) - 1, max_targets).round().long().unique().tolist()
        held_out = [held_out[i] for i in keep]
    return sources, held_out


@dataclass
class SequenceReconstruction:
    """One sequence's reconstruction and its held-out views (T of them).

    Attributes:
        grid: (F, D, H, W) the rendered grid.
        gt: (T, 3, H, W) held-out images composited on the background (what the model renders).
        gt_full: (T, 3, H, W) held-out images as loaded.
        fg: (T, 1, H, W) their foreground masks.
        rgb / depth / opacity: (T, 3|1|1, H, W) renders of the held-out views.
        all_cameras: cameras of every frame of the sequence (for its turntable's up axis).
    """

    grid: torch.Tensor
    gt: torch.Tensor
    gt_full: torch.Tensor
    fg: torch.Tensor
    rgb: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    all_cameras: CamerasBase


@torch.no_grad()
def reconstruct_sequence(
    model: ReconstructionModel,
    dataset,
    indices: List[int],
    n_sources: int,
    max_targets: int,
    chunk_size: int,
    denoise_from_t: int = 0,
    denoise_steps: int = 10,
    generator: Optional[torch.Generator] = None,
) -> SequenceReconstruction:
    """Reconstructs ``n_sources`` of the frames ``indices`` (capture order) and renders the others."""
    sources, held_out = split_views(len(indices), n_sources, max_targets)
    order = [indices[i] for i in held_out + sources]  # targets first, as the model expects
    device = next(model.parameters()).device
    batch = SceneBatch.from_frame_data(collate_frames(dataset, order).to(device), frames_per_scene=len(order))
    targets, src = TargetViews.split(batch, len(held_out), model.background, model.input_fg_threshold)
    grid = model.reconstruct_from_views(
        src.rgb, src.fg, src.cameras, src.crop, denoise_from_t=denoise_from_t, denoise_steps=denoise_steps,
        generator=generator,
    )  # (1, ...)
    out = model.render_samples(grid, targets.cameras, targets.image_size, chunk_size)  # each (1, T, C, H, W)
    return SequenceReconstruction(
        grid=grid[0], gt=targets.rgb[0].float().cpu(), gt_full=batch.image_rgb[0, : len(held_out)].float().cpu(),
        fg=targets.fg[0].float().cpu(), rgb=out["rgb"][0].float().cpu(), depth=out["depth"][0].float().cpu(),
        opacity=out["opacity"][0].float().cpu(), all_cameras=batch.camera,
    )
