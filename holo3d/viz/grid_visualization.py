"""Pictures for the dashboard: feature grids as PCA colours, depth as colour, panels side by side.

Every function returns a float image ``(3, H, W)`` in [0, 1] on the CPU, the format both loggers
take.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

# Anchor colours of a perceptually ordered dark-blue -> teal -> yellow ramp (viridis-like), so depth
# reads near-to-far without matplotlib.
_DEPTH_RAMP = torch.tensor([
    [0.27, 0.00, 0.33],
    [0.23, 0.32, 0.55],
    [0.13, 0.57, 0.55],
    [0.37, 0.79, 0.38],
    [0.99, 0.91, 0.14],
])
_QUANTILE_SAMPLES = 100_000  # torch.quantile refuses huge inputs; a strided subsample suffices


def _robust_unit_range(values: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """Maps ``values`` (..., N) to [0, 1] per row using its 1st/99th percentiles (outliers clip)."""
    stride = max(1, values.shape[-1] // _QUANTILE_SAMPLES)
    sample = values[..., ::stride]
    q = torch.quantile(sample, torch.tensor([low, high], dtype=values.dtype), dim=-1)  # (2, ...)
    lo, hi = q[0].unsqueeze(-1), q[1].unsqueeze(-1)
    # A row with (numerically) no spread next to a strong one is rounding noise: do not stretch it
    # to full contrast, keep it near mid-grey.
    floor = (hi - lo).max().clamp_min(1e-8) * 1e-3
    spread = (hi - lo).clamp_min(floor)
    lo = (lo + hi) / 2 - spread / 2
    return ((values - lo) / spread).clamp(0.0, 1.0)


def pca_components(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Projects ``features (N, C)`` onto its top-``k`` principal axes -> ``(N, k)``.

    Uses the C x C covariance (cheap for millions of voxels). Each axis's sign is fixed so its
    largest loading is positive, so colours do not flip between logging steps. Missing components
    (C < k) are zero.
    """
    x = features - features.mean(dim=0, keepdim=True)
    cov = x.T @ x / max(1, x.shape[0] - 1)  # (C, C)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    axes = vecs.flip(-1)[:, :k]  # (C, min(k, C))
    flip = axes.gather(0, axes.abs().argmax(0, keepdim=True)).sign()
    axes = axes * torch.where(flip == 0, torch.ones_like(flip), flip)
    projected = x @ axes  # (N, min(k, C))
    return F.pad(projected, (0, k - projected.shape[1]))


def _slice_indices(depth: int, n_slices: int) -> list[int]:
    """Evenly spaced interior slices along D (the outermost ones are often empty)."""
    n = max(1, min(n_slices, depth))
    return [int(round((i + 1) * depth / (n + 1) - 0.5)) for i in range(n)]


def feature_grid_pca_image(grid: torch.Tensor, n_slices: int = 4, gap: int = 2) -> torch.Tensor:
    """Colours a feature grid ``(C, D, H, W)`` by the PCA of its channels; returns ``(3, H, W')``.

    The 3 leading components become RGB (normalised over the whole grid, so slices are comparable),
    and ``n_slices`` slices along D are laid side by side, separated by white ``gap`` columns.
    """
    if grid.ndim != 4:
        raise ValueError(f"expected a (C, D, H, W) grid, got shape {tuple(grid.shape)}")
    c, d, h, w = grid.shape
    features = grid.detach().float().cpu().reshape(c, -1).T  # (D*H*W, C)
    colours = _robust_unit_range(pca_components(features).T)  # (3, D*H*W)
    if c < 3:  # absent components: mid grey rather than black, so they read as "no information"
        colours[c:] = 0.5
    volume = colours.reshape(3, d, h, w)  # (3, D, H, W)
    return side_by_side([volume[:, i] for i in _slice_indices(d, n_slices)], gap=gap)


def depth_to_image(depth: torch.Tensor, mask: Optional[torch.Tensor] = None,
                   background: float = 1.0) -> torch.Tensor:
    """Colours ``depth (1, H, W)`` or ``(H, W)``, near dark blue to far yellow -> ``(3, H, W)``.

    The range is taken over foreground pixels (``mask > 0.5`` and finite depth); the rest become
    ``background`` grey level.
    """
    depth = depth.detach().float().cpu().reshape(depth.shape[-2:])  # (H, W)
    valid = torch.isfinite(depth)
    if mask is not None:
        valid &= mask.detach().cpu().reshape(depth.shape) > 0.5
    image = torch.full((3, *depth.shape), float(background))
    if valid.any():
        vals = depth[valid]
        t = (vals - vals.min()) / (vals.max() - vals.min()).clamp_min(1e-8)
        image[:, valid] = depth_ramp_colour(t).T
    return image


def depth_ramp_colour(t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the depth ramp for ``t (...)`` in [0, 1] -> ``(..., 3)``, on
    ``t``'s device (shared by the dashboard panels and the sample videos)."""
    ramp = _DEPTH_RAMP.to(t.device)
    pos = t.clamp(0, 1) * (len(ramp) - 1)
    lo = pos.floor().long().clamp(max=len(ramp) - 2)
    frac = (pos - lo).unsqueeze(-1)
    return ramp[lo] * (1 - frac) + ramp[lo + 1] * frac


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(1|3, H, W)`` or ``(H, W)`` on any device -> float ``(3, H, W)`` in [0, 1] on the CPU."""
    image = image.detach().float().cpu()
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (1|3, H, W) image, got shape {tuple(image.shape)}")
    return image.clamp(0, 1)


def side_by_side(images: Sequence[torch.Tensor], gap: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Lays images left to right (e.g. target | render | depth | mask) -> ``(3, H, W_total)``.

    Images are converted with ``to_rgb`` and resized (bilinear) to the tallest one's height.
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    rgbs = [to_rgb(im) for im in images]
    height = max(im.shape[1] for im in rgbs)
    panels = []
    for i, im in enumerate(rgbs):
        if im.shape[1] != height:
            width = max(1, round(im.shape[2] * height / im.shape[1]))
            im = F.interpolate(im[None], size=(height, width), mode="bilinear",
                               align_corners=False)[0]
        if i and gap:
            panels.append(torch.full((3, height, gap), fill))
        panels.append(im)
    return torch.cat(panels, dim=2)
