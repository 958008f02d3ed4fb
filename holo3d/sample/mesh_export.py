"""Coloured meshes of grid samples: field density on a lattice -> marching cubes -> PLY with vertex colours.

The density and colour come from the model's own radiance field (its RenderMLP decoding the grid),
so the mesh is the surface the renders show. Colours are queried at each vertex looking along the
inward normal, i.e. as a camera facing that bit of surface would see it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

import torch
from pytorch3d.io import IO
from pytorch3d.ops.marching_cubes import marching_cubes
from pytorch3d.renderer import TexturesVertex
from pytorch3d.structures import Meshes

from holo3d.io.atomic_file import temporary_sibling
from holo3d.models.protocol import FieldModel

logger = logging.getLogger(__name__)


class GridField:
    """Density and colour of one sample's radiance field at world points (``FieldModel.query_field``)."""

    def __init__(self, model: FieldModel, grid: torch.Tensor):
        if not isinstance(model, FieldModel):
            raise TypeError(f"{type(model).__name__} has no radiance field to mesh")
        self.model, self.extent, self.grid = model, float(model.scene_extent), grid

    @torch.no_grad()
    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """points, directions (M, 3) -> density (M,), rgb (M, 3), float32."""
        density, rgb = self.model.query_field(self.grid, points, directions)
        return density.float(), rgb.float()

    def density_lattice(self, resolution: int) -> torch.Tensor:
        """Density at the corners of a ``resolution``^3 lattice spanning the cube: (D, H, W), z-major.

        Corner-aligned points are what ``marching_cubes``' local coordinates [-1, 1] refer to.
        """
        axis = torch.linspace(-self.extent / 2, self.extent / 2, resolution)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        points = torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)  # (R^3, 3) xyz
        up = torch.tensor([[0.0, 1.0, 0.0]]).expand_as(points)  # density ignores the direction
        density, _ = self(points, up)
        return density.reshape(resolution, resolution, resolution).cpu()


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """The level that best splits ``values`` into two classes (Otsu 1979), on log(1 + density).

    Density is heavy-tailed, so the histogram is taken of log1p(values) and the level mapped back.
    """
    logs = torch.log1p(values.float().clamp_min(0).flatten())
    lo, hi = float(logs.min()), float(logs.max())
    if hi - lo < 1e-8:
        return float(values.flatten()[0])
    hist = torch.histc(logs, bins=bins, min=lo, max=hi).double()
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = hist.cumsum(0)  # values in bins 0..i (class 0 for a split after bin i)
    mean_cum = (hist * centres).cumsum(0)
    weight1 = hist.sum() - weight0
    mean0 = mean_cum / weight0.clamp_min(1e-12)
    mean1 = (mean_cum[-1] - mean_cum) / weight1.clamp_min(1e-12)
    between = weight0 * weight1 * (mean0 - mean1) ** 2  # between-class variance per split
    # Splits anywhere in an empty gap are equally good: take the middle of the gap.
    best = torch.nonzero(between >= between.max() * (1 - 1e-9)).flatten()
    level = float((edges[int(best[0]) + 1] + edges[int(best[-1]) + 1]) / 2)
    return float(torch.expm1(torch.tensor(level)))


def _outward_normals(field: GridField, verts: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``normals`` (V, 3) flipped where density grows along them (they must point out of the solid)."""
    step = field.extent / 256
    up = torch.tensor([[0.0, 1.0, 0.0]]).expand_as(verts)
    ahead, _ = field(verts + step * normals, up)
    behind, _ = field(verts - step * normals, up)
    sign = torch.where(ahead > behind, -1.0, 1.0)[:, None].to(normals)
    return normals * sign


def extract_mesh(
    model: torch.nn.Module, grid: torch.Tensor, resolution: int = 64, threshold: float = 0.0
) -> Tuple[Optional[Meshes], float]:
    """(coloured mesh or None when no surface crosses the level, the density level used).

    Args:
        grid: (F, D, H, W) feature grid.
        resolution: lattice points per side for marching cubes.
        threshold: density level (per world unit); <= 0 picks it with ``otsu_threshold``.
    """
    field = GridField(model, grid)
    density = field.density_lattice(resolution)  # (R, R, R)
    level = threshold if threshold > 0 else otsu_threshold(density)
    verts_list, faces_list = marching_cubes(density[None], isolevel=level, return_local_coords=True)
    verts, faces = verts_list[0], faces_list[0]
    if len(verts) == 0 or len(faces) == 0:  # marching_cubes gives [] for an empty surface
        return None, level
    verts = verts * (field.extent / 2)  # local [-1, 1] -> world cube
    normals = Meshes([verts], [faces]).verts_normals_packed()
    outward = _outward_normals(field, verts, normals)
    _, colours = field(verts, -outward)  # looking at the surface from outside
    mesh = Meshes([verts], [faces], textures=TexturesVertex([colours.cpu().clamp(0, 1)]))
    return mesh, level


def save_mesh_ply(mesh: Meshes, path: Path) -> Path:
    """Binary PLY with uint8 vertex colours, written to a temporary name and renamed."""
    path = Path(path)
    tmp = temporary_sibling(path)  # keeps the .ply suffix PyTorch3D's IO picks the format by
    try:
        IO().save_mesh(mesh, tmp, colors_as_uint8=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
