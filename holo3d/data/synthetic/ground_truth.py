"""Ground-truth 3D files kept next to every sequence, for 3D metrics and debugging.

    <dir>/mesh.ply          the rendered mesh, pattern colours sampled at the vertices
    <dir>/occupancy_64.npy  (D, H, W) = (z, y, x) bool occupancy of [-extent/2, extent/2]^3
                            (see SyntheticObject.occupancy for the voxel-centre convention)
    <dir>/pointcloud.ply    surface points with colours (CO3D ships one per sequence)
    <dir>/object.json       the parts (kind, size, pose, pattern) the object was built from
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from pytorch3d.io import IO
from pytorch3d.ops import sample_points_from_meshes
from pytorch3d.structures import Pointclouds

from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.spec import SyntheticSpec

POINTCLOUD_POINTS = 4000


def occupancy_filename(resolution: int) -> str:
    return f"occupancy_{resolution}.npy"


def write_ground_truth(sequence: RenderedSequence, spec: SyntheticSpec, folder: str) -> int:
    """Writes the files above into ``folder``; returns the number of point-cloud points."""
    os.makedirs(folder, exist_ok=True)
    mesh = sequence.obj.vertex_coloured_mesh()
    IO().save_mesh(mesh, os.path.join(folder, "mesh.ply"), colors_as_uint8=True)
    occupancy = sequence.obj.occupancy(spec.occupancy_resolution, spec.volume_extent)
    np.save(os.path.join(folder, occupancy_filename(spec.occupancy_resolution)), occupancy)
    points = _surface_points(mesh, seed=spec.seed + sequence.index)
    IO().save_pointcloud(points, os.path.join(folder, "pointcloud.ply"))
    with open(os.path.join(folder, "object.json"), "w") as f:
        json.dump(sequence.obj.describe(), f)
    return POINTCLOUD_POINTS


def _surface_points(mesh, seed: int) -> Pointclouds:
    # sample_points_from_meshes draws from the global torch RNG; fork it to stay deterministic
    # without disturbing the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        points, normals, colours = sample_points_from_meshes(
            mesh, POINTCLOUD_POINTS, return_normals=True, return_textures=True
        )
    return Pointclouds(points=points, normals=normals, features=colours)
