"""Mesh export: a known density field gives the expected surface, coloured from the field, as a PLY."""

import pytest
import torch
from pytorch3d.io import IO
from torch import nn

from holo3d.models.protocol import FieldModel
from holo3d.render.fields import VoxelGridField
from holo3d.render.voxel_grid import voxel_centers
from holo3d.sample.mesh_export import extract_mesh, otsu_threshold, save_mesh_ply


class _StubField(nn.Module):
    """Density 20 x channel 0, colour = channels 1..3: a field whose surface we know."""

    def forward(self, features, directions):
        return 20.0 * features[..., :1].clamp_min(0), features[..., 1:4].clamp(0, 1)


class _StubModel(nn.Module, FieldModel):
    """A FieldModel whose samples are (4, D, H, W) grids decoded by _StubField."""

    scene_extent = 2.0

    def __init__(self):
        super().__init__()
        self.field = VoxelGridField(feature_channels=4, volume_extent=2.0)
        self.field.mlp = _StubField()

    def query_field(self, sample, points, directions):
        return self.field.query(sample, points, directions)


def _ball_grid(radius=0.5, resolution=24):
    """(4, R, R, R): channel 0 is 1 inside a ball (smoothly falling off), channels 1..3 are red."""
    centres = voxel_centers(resolution, 2.0)  # (R, R, R, 3)
    inside = torch.sigmoid((radius - centres.norm(dim=-1)) * 40.0)
    red = torch.stack([torch.ones_like(inside), torch.zeros_like(inside), torch.zeros_like(inside)])
    return torch.cat([inside[None], red])


def test_otsu_splits_a_bimodal_density():
    values = torch.cat([torch.rand(1000) * 0.1, 50 + torch.rand(200) * 10])
    level = otsu_threshold(values)
    assert 0.1 < level < 50


def test_ball_mesh_radius_colours_and_ply_round_trip(tmp_path):
    mesh, level = extract_mesh(_StubModel(), _ball_grid(), resolution=32, threshold=10.0)
    assert level == 10.0
    radii = mesh.verts_packed().norm(dim=-1)
    assert radii.mean().item() == pytest.approx(0.5, abs=0.05)
    path = save_mesh_ply(mesh, tmp_path / "ball.ply")
    assert [p.name for p in tmp_path.iterdir()] == ["ball.ply"]
    loaded = IO().load_mesh(path)
    assert loaded.verts_packed().shape == mesh.verts_packed().shape and loaded.faces_packed().shape[0] > 0
    colours = loaded.textures.verts_features_packed()  # (V, 3) in [0, 1]
    torch.testing.assert_close(colours.mean(0), torch.tensor([1.0, 0.0, 0.0]), atol=0.02, rtol=0)


def test_automatic_level_and_empty_field():
    mesh, level = extract_mesh(_StubModel(), _ball_grid(), resolution=24)  # Otsu level
    assert mesh is not None and 0 < level < 20
    empty, _ = extract_mesh(_StubModel(), torch.zeros(4, 8, 8, 8), resolution=16)
    assert empty is None  # constant field: no surface, reported rather than an empty file
