"""Procedural objects: closed outward-facing primitives, determinism, variety, fit in the cube."""

import numpy as np
import pytest
import torch
from pytorch3d.renderer import TexturesAtlas
from pytorch3d.renderer.mesh.rasterizer import Fragments

from holo3d.data.synthetic import CATEGORIES
from holo3d.data.synthetic.atlas import texel_barycentrics
from holo3d.data.synthetic.primitives import KINDS, Primitive, rotation_about
from holo3d.data.synthetic.sequence import sequence_rngs
from holo3d.data.synthetic.shape import make_object

SIZES = {"box": (0.3, 0.5, 0.2), "frustum": (0.4, 0.2, 0.5), "ellipsoid": (0.3, 0.4, 0.5), "torus": (0.5, 0.1)}


@pytest.mark.parametrize("kind", KINDS)
def test_primitive_faces_point_outwards_and_inside_test_agrees(kind):
    part = Primitive(kind, SIZES[kind], rotation=rotation_about("x", 0.3), translation=[0.1, 0.2, 0.3])
    verts, faces, _ = part.world_mesh()
    normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    centres = verts[faces].mean(axis=1)
    # a step inwards along the normal lands inside the solid, a big step outwards outside it
    assert part.contains(centres - 0.01 * normals).mean() > 0.99
    assert part.contains(centres + 0.05 * normals).mean() < 0.01
    low, high = part.world_bounds()
    assert np.all(verts >= low - 1e-6) and np.all(verts <= high + 1e-6)


def test_atlas_texel_layout_matches_pytorch3d_sampling():
    """A pixel at texel (iy, ix)'s centroid must sample exactly that texel."""
    r = 5
    bary = torch.tensor(texel_barycentrics(r), dtype=torch.float32).reshape(1, r * r, 1, 1, 3)
    atlas = torch.arange(r * r, dtype=torch.float32).reshape(1, r, r, 1).expand(1, r, r, 3)
    fragments = Fragments(
        pix_to_face=torch.zeros(1, r * r, 1, 1, dtype=torch.long), zbuf=None, bary_coords=bary, dists=None
    )
    sampled = TexturesAtlas([atlas]).sample_textures(fragments)[0, :, 0, 0, 0]
    assert torch.equal(sampled, torch.arange(r * r, dtype=torch.float32))


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_objects_are_deterministic_varied_and_fit_the_volume(category):
    def build(index, seed=0):
        return make_object(category, sequence_rngs(seed, category, index)[0], radius=0.8)

    verts_a = build(3).mesh_arrays()[0]
    assert np.array_equal(verts_a, build(3).mesh_arrays()[0])
    others = [build(i).describe() for i in range(4)]
    assert len({repr(o) for o in others}) == 4, "objects of a category should differ"
    for index in range(4):
        obj = build(index)
        verts, faces, colours = obj.mesh_arrays()
        assert np.linalg.norm(verts, axis=1).max() == pytest.approx(0.8, abs=1e-4)
        assert np.allclose((verts.min(0) + verts.max(0)) / 2, 0, atol=1e-5)
        assert colours.min() >= 0 and colours.max() <= 1 and faces.max() < len(verts)
        occupancy = obj.occupancy(64, 2.0)
        assert occupancy.shape == (64, 64, 64) and occupancy.dtype == bool and occupancy.any()


def test_occupancy_uses_z_y_x_voxel_centres():
    """grid[k, j, i] is the voxel centred at (x_i, y_j, z_k); surface vertices touch occupied voxels."""
    obj = make_object("mug", sequence_rngs(0, "mug", 0)[0])
    n = 32
    grid = obj.occupancy(n, 2.0)
    k, j, i = np.argwhere(grid)[0]
    centre = (np.array([i, j, k]) + 0.5) * 2.0 / n - 1.0  # (x, y, z)
    assert any(p.contains(centre[None])[0] for p in obj.parts)
    verts = obj.mesh_arrays()[0]
    cells = np.clip(((verts + 1.0) * n / 2).astype(int), 0, n - 1)  # (V, 3) as (i, j, k)
    dilated = np.zeros_like(grid)
    for shift in np.ndindex(3, 3, 3):
        dilated |= np.roll(grid, np.array(shift) - 1, axis=(0, 1, 2))
    assert dilated[cells[:, 2], cells[:, 1], cells[:, 0]].mean() > 0.99


def test_different_seeds_give_different_objects():
    a = make_object("car", sequence_rngs(0, "car", 0)[0]).describe()
    b = make_object("car", sequence_rngs(1, "car", 0)[0]).describe()
    assert a != b
