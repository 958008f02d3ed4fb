"""A synthetic object: a category's primitives, centred at the origin and scaled to a fixed radius.

World frame: +y up, the object's front facing +z, its bounding-box centre at the origin and every
vertex within ``radius`` of it, so the object fits the cube [-extent/2, extent/2]^3 whenever
radius < extent / 2 (HoloDiffusion's voxel grid covers it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from pytorch3d.renderer import TexturesAtlas, TexturesVertex
from pytorch3d.structures import Meshes

from holo3d.data.synthetic.categories import get_builder
from holo3d.data.synthetic.primitives import Primitive

ATLAS_RESOLUTION = 8  # texels per face edge: pattern detail without many triangles


@dataclass
class SyntheticObject:
    """One object of a category, already normalised to the world frame above."""

    category: str
    parts: List[Primitive]

    def mesh_arrays(self):
        """(V, 3) float32 vertices, (F, 3) int64 faces, (V, 3) float32 colours in [0, 1]."""
        verts, faces, colours, offset = [], [], [], 0
        for part in self.parts:
            v, f, c = part.world_mesh()
            verts.append(v)
            faces.append(f + offset)
            colours.append(c)
            offset += len(v)
        return (
            np.concatenate(verts).astype(np.float32),
            np.concatenate(faces).astype(np.int64),
            np.concatenate(colours).astype(np.float32),
        )

    def mesh(self, device: str = "cpu", atlas_resolution: int = ATLAS_RESOLUTION) -> Meshes:
        """A single PyTorch3D mesh coloured by a per-face texture atlas (for rendering)."""
        verts, faces, _ = (torch.from_numpy(a).to(device) for a in self.mesh_arrays())
        atlas = np.concatenate([p.world_atlas(atlas_resolution) for p in self.parts])
        textures = TexturesAtlas([torch.from_numpy(atlas.astype(np.float32)).to(device)])
        return Meshes(verts=[verts], faces=[faces], textures=textures)

    def vertex_coloured_mesh(self) -> Meshes:
        """The same mesh with the pattern sampled at the vertices (for saving as .ply)."""
        verts, faces, colours = (torch.from_numpy(a) for a in self.mesh_arrays())
        return Meshes(verts=[verts], faces=[faces], textures=TexturesVertex([colours]))

    def occupancy(self, resolution: int = 64, extent: float = 2.0) -> np.ndarray:
        """(D, H, W) = (z, y, x) bool grid over the voxel centres of [-extent/2, extent/2]^3.

        ``grid[k, j, i]`` is True when the centre (x_i, y_j, z_k), with
        ``x_i = (i + 0.5) * extent / resolution - extent / 2``, lies inside some part.
        """
        centres = (np.arange(resolution) + 0.5) * extent / resolution - extent / 2
        grid = np.zeros((resolution,) * 3, dtype=bool)  # (D, H, W)
        for part in self.parts:
            # only the voxels inside the part's bounding box can be inside the part
            low, high = part.world_bounds()
            ix, iy, iz = (np.flatnonzero((centres >= low[a]) & (centres <= high[a])) for a in range(3))
            if min(len(ix), len(iy), len(iz)) == 0:
                continue
            z, y, x = np.meshgrid(centres[iz], centres[iy], centres[ix], indexing="ij")
            inside = part.contains(np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1))
            grid[np.ix_(iz, iy, ix)] |= inside.reshape(len(iz), len(iy), len(ix))
        return grid

    def describe(self) -> dict:
        """A JSON-able description of the parts (kind, size, pose, finish) for provenance."""
        return {"category": self.category, "parts": [_part_dict(p) for p in self.parts]}


def _part_dict(part: Primitive) -> dict:
    finish = dataclasses.asdict(part.finish)
    return {
        "kind": part.kind,
        "size": [float(s) for s in part.size],
        "rotation": part.rotation.tolist(),
        "translation": part.translation.tolist(),
        "finish": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in finish.items()},
    }


def make_object(category: str, rng: np.random.Generator, radius: float = 0.8) -> SyntheticObject:
    """Builds a random object of ``category`` and normalises it (bbox centre 0, max radius)."""
    parts = get_builder(category)(rng)
    verts = np.concatenate([p.world_mesh()[0] for p in parts])
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    scale = radius / np.linalg.norm(verts - centre, axis=1).max()
    return SyntheticObject(category=category, parts=[_scaled(p, centre, scale) for p in parts])


def _scaled(part: Primitive, centre: np.ndarray, scale: float) -> Primitive:
    """The part after x -> scale * (x - centre); sizes scale, rotations stay."""
    return dataclasses.replace(
        part,
        size=tuple(float(s) * scale for s in part.size),
        translation=(part.translation - centre) * scale,
    )
