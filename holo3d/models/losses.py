"""Photometric losses and metrics on rendered rays (HoloDiffusion trains only on renders).

Every function takes ``weight``: 1 where a ray / pixel counts (inside the mask crop), 0 where it is
padding, so the same code serves sampled rays (S, R, C) and full images flattened to rays. All
losses are computed in float32 whatever autocast does around them.
"""

from __future__ import annotations

from typing import Sequence

import torch


def composite_on_background(
    rgb: torch.Tensor, fg: torch.Tensor, bg_color: Sequence[float], channel_dim: int = -1
) -> torch.Tensor:
    """gt = rgb * fg + bg * (1 - fg): the target a renderer with background ``bg_color`` must match.

    Args:
        rgb: (..., 3, ...) colours; fg: same shape with 1 channel at ``channel_dim``.
    """
    shape = [1] * rgb.ndim
    shape[channel_dim] = 3
    bg = torch.as_tensor(bg_color, dtype=rgb.dtype, device=rgb.device).view(shape)
    return rgb * fg + bg * (1.0 - fg)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the weighted rays.

    Args:
        pred, target: (..., C); weight: (..., 1).
    Returns:
        0-d float32.
    """
    err = (pred.float() - target.float()).square().mean(dim=-1, keepdim=True)
    return (err * weight).sum() / weight.sum().clamp_min(1e-8)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for colours in [0, 1] (detached: a metric, not a loss)."""
    return -10.0 * torch.log10(mse.detach().clamp_min(1e-10))


def weighted_bce(
    opacity: torch.Tensor, fg: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Binary cross-entropy between rendered opacity and the foreground mask.

    Written out instead of ``F.binary_cross_entropy``, which autocast refuses to run in half
    precision. opacity, fg, weight: (..., 1). Returns 0-d float32.
    """
    o = opacity.float().clamp(eps, 1.0 - eps)
    fg = fg.float()
    bce = -(fg * torch.log(o) + (1.0 - fg) * torch.log1p(-o))
    return (bce * weight).sum() / weight.sum().clamp_min(1e-8)
