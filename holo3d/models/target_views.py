"""TargetViews: the per-scene frames a grid model lifts from or supervises with, ready to use.

Splits a SceneBatch into targets (the first T frames of each scene) and sources, with masks
binarised and images composited on the background colour, and computes the render losses against
the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.data.scene_batch import SceneBatch
from holo3d.models.losses import composite_on_background, psnr_from_mse, weighted_bce, weighted_mse


@dataclass
class TargetViews:
    """Frames of S scenes, V views each.

    Attributes:
        rgb: (S, V, 3, H, W) composited on the background where the views are targets.
        fg: (S, V, 1, H, W) foreground (binarised when a threshold is set).
        crop: (S, V, 1, H, W) 1 on real pixels, 0 on padding.
        cameras: S*V cameras, scene-major.
    """

    rgb: torch.Tensor
    fg: torch.Tensor
    crop: torch.Tensor
    cameras: CamerasBase

    @property
    def image_size(self) -> Tuple[int, int]:
        return tuple(self.rgb.shape[-2:])

    def stacked(self) -> torch.Tensor:
        """(S, V, 5, H, W): rgb, fg, crop on channels, to gather them under rays in one pass."""
        return torch.cat([self.rgb, self.fg, self.crop], dim=2)

    def resized(self, size: Tuple[int, int]) -> "TargetViews":
        """The same views at another (H, W); NDC cameras need no change."""
        if tuple(size) == self.image_size:
            return self
        s, v = self.rgb.shape[:2]
        flat = self.stacked().flatten(0, 1)  # (S*V, 5, H, W)
        antialias = size[0] < flat.shape[-2]
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=antialias)
        flat = flat.reshape(s, v, *flat.shape[1:])  # (S, V, 5, h, w)
        return TargetViews(flat[:, :, :3], flat[:, :, 3:4], flat[:, :, 4:5], self.cameras)

    @classmethod
    def split(
        cls,
        batch: SceneBatch,
        n_targets: int,
        bg_color: Sequence[float],
        fg_threshold: Optional[float],
    ) -> Tuple["TargetViews", "TargetViews"]:
        """(targets, sources). Targets are always composited on ``bg_color`` (the renderer's
        background); sources only when ``fg_threshold`` is set (``mask_images``)."""
        fg = batch.fg_probability.to(batch.image_rgb.dtype)
        if fg_threshold is not None:
            fg = (fg > fg_threshold).to(fg.dtype)
        crop = batch.mask_crop if batch.mask_crop is not None else torch.ones_like(fg)
        crop = crop.to(fg.dtype)
        masked = composite_on_background(batch.image_rgb, fg, bg_color, channel_dim=2)
        sources_rgb = masked if fg_threshold is not None else batch.image_rgb
        t, k = slice(0, n_targets), slice(n_targets, None)
        targets = cls(masked[:, t], fg[:, t], crop[:, t], batch.cameras_of(t))
        sources = cls(sources_rgb[:, k], fg[:, k], crop[:, k], batch.cameras_of(k))
        return targets, sources


def eval_render_size(image_size: Sequence[int], longer_side: int) -> Tuple[int, int]:
    """(H, W) with the longer side ``longer_side`` and the images' aspect (0: the images' size)."""
    h, w = (int(v) for v in image_size)
    if longer_side <= 0 or longer_side == max(h, w):
        return (h, w)
    scale = longer_side / max(h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


def render_losses(
    rgb_fine: torch.Tensor, rgb_coarse: torch.Tensor, opacity: torch.Tensor, gt: torch.Tensor
) -> Dict[str, torch.Tensor]:
    """Losses and metrics of rendered rays against gathered targets.

    Args:
        rgb_fine, rgb_coarse: (S, X, 3); opacity: (S, X, 1).
        gt: (S, X, 5): target rgb (on the background), fg, crop weight.
    Returns:
        loss_rgb_fine, loss_rgb_coarse, loss_mask, psnr, psnr_coarse, opacity_mean (0-d float32).
    """
    rgb, fg, crop = gt[..., :3], gt[..., 3:4], gt[..., 4:5]
    loss_fine = weighted_mse(rgb_fine, rgb, crop)
    loss_coarse = weighted_mse(rgb_coarse, rgb, crop)
    return {
        "loss_rgb_fine": loss_fine,
        "loss_rgb_coarse": loss_coarse,
        "loss_mask": weighted_bce(opacity, fg, crop),
        "psnr": psnr_from_mse(loss_fine),
        "psnr_coarse": psnr_from_mse(loss_coarse),
        "opacity_mean": opacity.detach().float().mean(),
    }
