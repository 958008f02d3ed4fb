"""Few-view reconstruction of one sequence: pick K source views, lift them into a grid with the model,
render the held-out views.

The grid is the model's own reconstruction (``reconstruct``: the U-Net at t=0, or the lifted grid
itself without a U-Net), or, for diffusion models with ``denoise_from_t > 0``, the lifted grid noised
to t and denoised back with DDIM (SDEdit-style), which lets the prior fill in what K views miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.data.scene_batch import SceneBatch
from holo3d.diffusion import q_sample, sample_ddim
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


def fg_threshold(model: torch.nn.Module) -> Optional[float]:
    """The mask binarisation the model trains with (None: soft masks, images not masked)."""
    threshold = float(getattr(model, "mask_threshold", 0.5))
    return threshold if getattr(model, "mask_images", True) and threshold > 0 else None


@torch.no_grad()
def reconstruct_sequence(
    model: torch.nn.Module,
    dataset,
    indices: List[int],
    n_sources: int,
    max_targets: int,
    chunk_size: int,
    denoise_from_t: int = 0,
    denoise_steps: int = 10,
    generator: Optional[torch.Generator] = None,
) -> SequenceReconstruction:
    """Lifts ``n_sources`` of the frames ``indices`` (capture order) and renders the others."""
    sources, held_out = split_views(len(indices), n_sources, max_targets)
    order = [indices[i] for i in held_out + sources]  # targets first, as the model expects
    device = next(model.parameters()).device
    batch = SceneBatch.from_frame_data(collate_frames(dataset, order).to(device), frames_per_scene=len(order))
    targets, source_views = TargetViews.split(batch, len(held_out), tuple(model.bg_color), fg_threshold(model))
    v0 = model.lift(source_views.rgb, source_views.fg, source_views.cameras, source_views.crop)  # (1, F, D, H, W)
    if denoise_from_t > 0:
        grid = denoise_from(model, v0, denoise_from_t, denoise_steps, generator)
    else:
        grid = model.reconstruct(v0)
    out = model.render_grid(grid, targets.cameras, targets.image_size, chunk_size)  # each (1, T, C, H, W)
    return SequenceReconstruction(
        grid=grid[0], gt=targets.rgb[0].float().cpu(), gt_full=batch.image_rgb[0, : len(held_out)].float().cpu(),
        fg=targets.fg[0].float().cpu(), rgb=out["rgb"][0].float().cpu(), depth=out["depth"][0].float().cpu(),
        opacity=out["opacity"][0].float().cpu(), all_cameras=batch.camera,
    )


def denoise_from(
    model: torch.nn.Module, v0: torch.Tensor, t_start: int, steps: int, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """Noises V0 (B, F, D, H, W) to timestep ``t_start`` and runs ``steps`` DDIM steps back to 0.

    DDIM over the schedule truncated at t_start starts from its last entry, so passing x_t as the
    sampler's starting "noise" continues the reverse chain from t_start (timesteps keep their scale).
    """
    if not getattr(model, "use_diffusion", False):
        raise SettingsError("denoise_from_t > 0 needs a diffusion model (use_diffusion=True)")
    schedule = model.diffusion.schedule(v0.device)
    t_start = min(int(t_start), len(schedule) - 1)
    t = torch.full((v0.shape[0],), t_start, device=v0.device, dtype=torch.long)
    noise = torch.randn(v0.shape, generator=generator, device=generator.device if generator else v0.device)
    x_t = q_sample(v0.float(), t, schedule, noise.to(v0.device)).to(v0.dtype)
    steps = max(1, min(int(steps), t_start + 1))
    return sample_ddim(model.denoise, v0.shape, schedule[: t_start + 1], steps=steps, eta=0.0, noise=x_t)
