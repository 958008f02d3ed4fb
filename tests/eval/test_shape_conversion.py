"""Occupancy -> surface points, density -> occupancy, mesh -> points: known geometry and bad input."""

import math

import numpy as np
import pytest
import torch

from holo3d.eval.shape_conversion import (
    check_occupancy,
    density_to_occupancy,
    density_to_opacity,
    mesh_to_points,
    occupancy_to_points,
    world_to_unit_cube,
)


def _box_grid(count=1, res=4, low=1, high=3):
    occ = torch.zeros(count, res, res, res, dtype=torch.bool)
    occ[:, low:high, low:high, low:high] = True
    return occ


def test_face_points_lie_uniformly_on_the_box_surface():
    points = occupancy_to_points(_box_grid(), 3000, seed=0)[0]  # box [0.25, 0.75]^3 in the unit cube
    assert points.shape == (3000, 3)
    assert points.min() >= 0.25 - 1e-6 and points.max() <= 0.75 + 1e-6
    on_face = (points - 0.25).abs() < 1e-6, (points - 0.75).abs() < 1e-6  # (P, 3) each
    assert (on_face[0] | on_face[1]).any(dim=1).all()  # every point on one of the six faces
    per_face = torch.stack([on_face[0].sum(0), on_face[1].sum(0)]).flatten().double()  # six faces
    assert per_face.sum() == pytest.approx(3000, abs=30)  # (edge points may count twice)
    assert (per_face / per_face.sum() - 1 / 6).abs().max() < 0.03  # equal areas, equal shares


def test_axes_are_xyz_of_a_zyx_grid():
    occ = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    occ[0, 0, 0, 6] = True  # z=0, y=0, x=6
    points = occupancy_to_points(occ, 50, mode="centres")[0]
    assert torch.allclose(points, torch.tensor([6.5, 0.5, 0.5]) / 8)


def test_points_depend_on_seed_and_shape_index_only():
    occ = torch.zeros(3, 8, 8, 8, dtype=torch.bool)
    occ[:, 2:6, 1:7, 3:5] = True
    a = occupancy_to_points(occ, 64, seed=3, chunk=1)
    b = occupancy_to_points(occ.numpy(), 64, seed=3, chunk=3)  # numpy input, other chunking
    assert torch.equal(a, b)
    assert not torch.equal(a, occupancy_to_points(occ, 64, seed=4))
    assert not torch.equal(a[0], a[1])  # draws are per shape index


def test_bad_occupancy_is_named():
    values = np.zeros((3, 4, 4, 4), dtype=np.float32)
    values[:, 1, 1, 1] = 1
    values[2, 0, 0, 0] = 0.7
    with pytest.raises(ValueError, match=r"samples\.npy: shape 2 holds the non-binary value 0\.7.*threshold"):
        check_occupancy(values, "samples.npy")
    assert check_occupancy(values, "samples.npy", threshold=0.5) == (4, [])
    values[1, 2, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN values in shape\(s\) \[1\]"):
        check_occupancy(values, "samples.npy", threshold=0.5)
    with pytest.raises(ValueError, match=r"\(N, R, R, R\).*\(2, 4, 4, 5\)"):
        check_occupancy(np.zeros((2, 4, 4, 5)), "x")
    empty = np.zeros((2, 4, 4, 4), dtype=bool)
    empty[0, 1, 1, 1] = True
    assert check_occupancy(empty, "x") == (4, [1])
    with pytest.raises(ValueError, match=r"shapes \[1\] are empty"):
        occupancy_to_points(empty, 8)


def test_density_to_occupancy_is_one_voxel_step_opacity():
    voxel = 0.05
    at_half = math.log(2) / voxel  # 1 - exp(-sigma * voxel) = 0.5 exactly
    density = torch.tensor([0.0, -3.0, at_half * 0.99, at_half * 1.01, 1e6])
    opacity = density_to_opacity(density, voxel)
    assert torch.allclose(opacity, 1 - torch.exp(-density.clamp_min(0) * voxel))
    assert density_to_occupancy(density, voxel).tolist() == [False, False, False, True, True]
    assert density_to_occupancy(density, voxel, threshold=0.01).tolist() == [False, False, True, True, True]
    with pytest.raises(ValueError, match=r"NaN.*\(2,\)"):
        density_to_occupancy(torch.tensor([1.0, 2.0, float("nan")]), voxel)
    with pytest.raises(ValueError, match="threshold"):
        density_to_occupancy(density, voxel, threshold=1.0)


def test_mesh_points_are_seeded_and_in_the_unit_cube():
    from pytorch3d.utils import ico_sphere

    mesh = ico_sphere(2)  # radius 1 around the origin
    state = torch.random.get_rng_state()
    a = mesh_to_points(mesh, 500, seed=1, extent=4.0)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    assert torch.equal(a, mesh_to_points(mesh, 500, seed=1, extent=4.0))
    radius = (a[0] - 0.5).norm(dim=-1)  # world radius 1 of a cube of side 4 -> 0.25
    assert a.shape == (1, 500, 3) and radius.max() <= 0.25 + 1e-5 and radius.min() > 0.24
    assert torch.allclose(world_to_unit_cube(torch.tensor([-2.0, 0.0, 2.0]), 4.0), torch.tensor([0.0, 0.5, 1.0]))
