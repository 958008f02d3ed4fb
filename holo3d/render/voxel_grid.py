"""The voxel-grid field: where a grid's voxels sit in the world, and trilinear look-ups into it.

A grid ``(S, C, D, H, W)`` covers the world cube ``[-volume_extent / 2, volume_extent / 2]^3``; its
``D x H x W`` voxels are cells of that cube and their values live at the cell centres. The W axis
runs along world x, H along world y and D along world z, which is exactly how ``F.grid_sample``
reads a 5-D input (grid coordinate order ``(x, y, z)`` indexes ``(W, H, D)``). With
``align_corners=False`` the cube's faces map to grid coordinates -1 and +1, so sampling at
``voxel_centers`` returns the voxel values exactly; feature lifting pools image features onto
``voxel_centers`` and the renderer reads them back with ``sample_voxel_grid``, so the two agree by
construction.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Resolution = Union[int, Sequence[int]]


def _resolution_dhw(resolution: Resolution) -> Tuple[int, int, int]:
    if isinstance(resolution, int):
        return (resolution, resolution, resolution)
    d, h, w = (int(r) for r in resolution)
    return (d, h, w)


def _cell_centres(n: int, volume_extent: float, device: Optional[torch.device]) -> torch.Tensor:
    half = volume_extent / 2.0
    return -half + volume_extent * (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


def voxel_centers(
    resolution: Resolution,
    volume_extent: float = 2.0,
    device: Optional[Union[str, torch.device]] = None,
) -> torch.Tensor:
    """World coordinates of every voxel centre.

    Args:
        resolution: D (= H = W) or (D, H, W).
        volume_extent: side length of the world cube the grid covers.
    Returns:
        (D, H, W, 3) float32 xyz; ``[..., 0]`` varies along W, ``[..., 1]`` along H and
        ``[..., 2]`` along D.
    """
    d, h, w = _resolution_dhw(resolution)
    z = _cell_centres(d, volume_extent, device)
    y = _cell_centres(h, volume_extent, device)
    x = _cell_centres(w, volume_extent, device)
    zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)  # (D, H, W, 3)


def sample_voxel_grid(
    grid: torch.Tensor, points: torch.Tensor, volume_extent: float = 2.0
) -> torch.Tensor:
    """Trilinear interpolation of each scene's grid at that scene's points.

    Points more than half a voxel outside the cube read zeros (zero padding), so empty space outside
    the volume carries no features.

    Args:
        grid: (S, C, D, H, W).
        points: (S, M, 3) world xyz.
    Returns:
        (S, M, C) in the grid's dtype.
    """
    s, m = points.shape[:2]
    coords = (points * (2.0 / volume_extent)).to(grid.dtype)
    coords = coords.reshape(s, m, 1, 1, 3)  # (S, M, 1, 1, 3)
    sampled = F.grid_sample(
        grid, coords, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (S, C, M, 1, 1)
    return sampled.reshape(s, -1, m).transpose(1, 2)  # (S, M, C)
