import torch
from pytorch3d.implicitron.tools.config import get_default_args
from torch import nn

from holo3d.render.rays import full_image_rays
from holo3d.render.trajectories import turntable_cameras
from holo3d.render.fields import VoxelGridField
from holo3d.render.volume_renderer import VolumeRenderer, importance_depths
from holo3d.render.voxel_grid import voxel_centers

COLOUR = torch.tensor([0.2, 0.6, 0.9])


class _AnalyticField(nn.Module):
    """Channel 0 is occupancy (density = 100 x occupancy), channels 1:4 colour x occupancy."""

    def forward(self, features, directions):
        occupancy = features[..., :1].clamp_min(0)
        return 100.0 * occupancy, (features[..., 1:4] / occupancy.clamp_min(1e-6)).clamp(0, 1)


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


def _sphere_grid(resolution=32, radius=0.5):
    inside = (voxel_centers(resolution).norm(dim=-1) < radius).float()  # (D, H, W)
    colour = COLOUR[:, None, None, None].expand(3, *inside.shape)
    return torch.cat([inside[None], colour * inside])[None]  # (1, 4, D, H, W)


def _grid_renderer(channels, render_mlp_args=None, **kwargs):
    field = VoxelGridField(feature_channels=channels, render_mlp_args=render_mlp_args)
    return VolumeRenderer(field=field, **kwargs)


def _renderer(**kwargs):
    renderer = _grid_renderer(4, n_pts_coarse=48, n_pts_fine=16, **kwargs)
    renderer.field.mlp = _AnalyticField()
    return renderer.eval()


def test_renders_an_analytic_sphere_per_scene():
    renderer = _renderer(bg_color=(1.0, 1.0, 1.0))
    grid = torch.cat([_sphere_grid(), torch.zeros_like(_sphere_grid())])  # scene 1 is empty
    cameras = turntable_cameras(4, elevation_deg=30.0, distance=3.0, focal_length=2.0)
    size = (20, 24)
    out = renderer.render_image(cameras, size, n_scenes=2, grid=grid)  # S=2 scenes x V=2 views
    out["rgb"] = out.pop("features")
    assert out["rgb"].shape == (2, 2, 3, *size) and out["opacity"].shape == (2, 2, 1, *size)

    rays = full_image_rays(cameras[[0, 1]], size)
    d = rays.directions / rays.directions.norm(dim=-1, keepdim=True)
    # Distance of each ray from the sphere centre (the origin).
    miss = torch.linalg.cross(rays.origins, d).norm(dim=-1).reshape(2, *size)  # (V, H, W)
    opacity = out["opacity"][0, :, 0]
    inside, outside = miss < 0.4, miss > 0.6
    assert inside.sum() > 20 and outside.sum() > 100
    assert opacity[inside].min() > 0.99 and opacity[outside].max() < 1e-3
    rgb = out["rgb"][0].permute(0, 2, 3, 1)  # (V, H, W, 3)
    torch.testing.assert_close(rgb[inside], COLOUR.expand(int(inside.sum()), 3), atol=1e-2, rtol=0)
    torch.testing.assert_close(rgb[outside], torch.ones(int(outside.sum()), 3), atol=1e-3, rtol=0)
    # The central ray meets the sphere's front at camera z-depth 3 - radius.
    centre_depth = out["depth"][0, :, 0, 9:11, 11:13]
    torch.testing.assert_close(centre_depth, torch.full_like(centre_depth, 2.5), atol=0.05, rtol=0)
    # The empty scene renders as pure background.
    assert out["opacity"][1].max() < 1e-6
    torch.testing.assert_close(out["rgb"][1], torch.ones_like(out["rgb"][1]))


def test_render_image_is_independent_of_chunk_size():
    torch.manual_seed(0)
    renderer = _grid_renderer(8, {"hidden_dim": 16}, n_pts_coarse=16, n_pts_fine=8).eval()
    grid = torch.randn(2, 8, 6, 6, 6)
    cameras = turntable_cameras(6, distance=2.8)
    big = renderer.render_image(cameras, (10, 12), chunk_size=2**18, n_scenes=2, grid=grid)
    small = renderer.render_image(cameras, (10, 12), chunk_size=101, n_scenes=2, grid=grid)
    assert big["features"].shape == (2, 3, 3, 10, 12)
    for key in big:
        torch.testing.assert_close(big[key], small[key], atol=1e-5, rtol=1e-5)


def test_render_image_skips_rays_that_miss_the_cube_without_changing_a_pixel():
    torch.manual_seed(0)
    renderer = _grid_renderer(8, {"hidden_dim": 16}, n_pts_coarse=16, n_pts_fine=8,
                              bg_color=(0.3, 0.5, 0.7)).eval()
    grid = torch.randn(2, 8, 6, 6, 6)
    cameras = turntable_cameras(4, distance=3.5)  # the cube covers part of each frame
    size = (12, 14)
    out = renderer.render_image(cameras, size, n_scenes=2, grid=grid)
    rays = full_image_rays(cameras, size)
    origins, directions = rays.origins.reshape(2, -1, 3), rays.directions.reshape(2, -1, 3)
    every_ray = renderer(origins, directions, stratified=False, grid=grid)  # (2, V*H*W, ch) marched
    opacity = out["opacity"].permute(0, 1, 3, 4, 2).reshape(2, -1, 1)
    features = out["features"].permute(0, 1, 3, 4, 2).reshape(2, -1, 3)
    missed = opacity[..., 0] == 0
    assert 0.1 < missed.float().mean() < 0.9  # some rays skipped, some marched
    torch.testing.assert_close(opacity, every_ray["opacity"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(features, every_ray["features_fine"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["depth"].permute(0, 1, 3, 4, 2).reshape(2, -1, 1), every_ray["depth"],
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(features[missed], torch.tensor([0.3, 0.5, 0.7]).expand(int(missed.sum()), 3))


def test_training_forward_shapes_gradients_and_reproducible_jitter():
    torch.manual_seed(0)
    renderer = _grid_renderer(8, {"hidden_dim": 16}, n_pts_coarse=12, n_pts_fine=6).train()
    grid = torch.randn(2, 8, 4, 4, 4, requires_grad=True)
    rays = full_image_rays(turntable_cameras(2, distance=2.5), (5, 5))
    out = renderer(rays.origins, rays.directions, generator=_seeded(3), grid=grid)
    assert out["features_coarse"].shape == out["features_fine"].shape == (2, 25, 3)
    assert out["depth"].shape == out["opacity"].shape == (2, 25, 1)
    (out["features_coarse"].sum() + out["features_fine"].sum()).backward()
    assert grid.grad.abs().sum() > 0
    assert all(p.grad is not None for p in renderer.parameters())
    again = renderer(rays.origins, rays.directions, generator=_seeded(3), grid=grid)
    other = renderer(rays.origins, rays.directions, generator=_seeded(4), grid=grid)
    torch.testing.assert_close(out["features_fine"], again["features_fine"])
    assert not torch.allclose(out["features_fine"], other["features_fine"])


def test_coarse_only_and_default_args():
    args = get_default_args(VolumeRenderer)
    assert args.n_pts_coarse == 64 and args.n_pts_fine == 16 and args.field is None
    renderer = _grid_renderer(4, {"hidden_dim": 8}, n_pts_fine=0)
    rays = full_image_rays(turntable_cameras(1), (3, 3))
    out = renderer.eval()(rays.origins, rays.directions, grid=torch.randn(1, 4, 4, 4, 4))
    torch.testing.assert_close(out["features_coarse"], out["features_fine"])


def test_importance_depths_follow_the_weights():
    edges = torch.linspace(0.0, 1.0, 11).expand(3, 11)  # (R, K + 1)
    weights = torch.zeros(3, 10)
    weights[:, 7] = 1.0  # all mass in [0.7, 0.8]
    det = importance_depths(edges, weights, 32, jitter=False)
    rnd = importance_depths(edges, weights, 32, jitter=True, generator=_seeded(0))
    for depths in (det, rnd):
        assert ((depths >= 0.7) & (depths <= 0.8)).float().mean() > 0.95
        assert depths.min() >= 0 and depths.max() <= 1
    torch.testing.assert_close(det, torch.sort(det, dim=-1).values)


def test_empty_space_skipping_marches_fewer_rays_and_keeps_every_pixel():
    grid = _sphere_grid(radius=0.35)  # density exactly 0 away from the sphere
    cameras = turntable_cameras(3, elevation_deg=20.0, distance=3.0, focal_length=1.2)
    size = (24, 24)
    full = _renderer(bg_color=(0.3, 0.5, 0.7))
    skipping = _renderer(bg_color=(0.3, 0.5, 0.7), skip_empty_density=1e-3, occupancy_resolution=32)
    skipping.load_state_dict(full.state_dict())
    out_full = full.render_image(cameras, size, grid=grid.expand(1, -1, -1, -1, -1))
    out_skip = skipping.render_image(cameras, size, grid=grid)
    for key in out_full:
        torch.testing.assert_close(out_skip[key], out_full[key], atol=1e-5, rtol=1e-5)
    rays = full_image_rays(cameras, size)
    origins, directions = rays.origins.reshape(1, -1, 3), rays.directions.reshape(1, -1, 3)
    from holo3d.render.rays import near_far_from_box

    near, far = near_far_from_box(origins, directions, 2.0)
    in_cube = far > near
    marched = skipping._rays_meeting_density(origins, directions, near, far, in_cube, {"grid": grid})
    opaque = out_full["opacity"].permute(0, 1, 3, 4, 2).reshape(1, -1) > 1e-4
    assert bool((marched >= opaque).all())  # every ray that sees the sphere is marched
    assert marched.float().mean() < 0.6 * in_cube.float().mean()  # most rays in the cube are not
    occupied = skipping.occupied_cells(1, torch.device("cpu"), grid=grid)  # (1, 1, 32, 32, 32)
    assert occupied.shape == (1, 1, 32, 32, 32) and 0.01 < occupied.mean() < 0.2


def test_skipping_settings_are_checked():
    import pytest

    with pytest.raises(ValueError, match="skip_empty_density=-1"):
        _renderer(skip_empty_density=-1.0)
    with pytest.raises(ValueError, match="occupancy_resolution=1"):
        _renderer(skip_empty_density=1e-3, occupancy_resolution=1)


def test_skipping_on_the_voxel_lattice_is_exact_for_an_occupancy_field():
    from holo3d.render.fields import OccupancyField

    torch.manual_seed(0)
    side = 16
    blobs = torch.nn.functional.avg_pool3d(torch.rand(2, 1, side, side, side), 5, stride=1, padding=2)
    occupancy = (blobs > 0.56).float() * torch.rand(2, 1, side, side, side)  # sparse, with soft values
    grid = OccupancyField.prepare(occupancy)
    cameras = turntable_cameras(4, elevation_deg=25.0, distance=2.7, focal_length=1.5)
    renderers = [VolumeRenderer(field=OccupancyField(), n_pts_coarse=3 * side, n_pts_fine=side,
                                bg_color=(1.0, 1.0, 1.0), skip_empty_density=density, occupancy_resolution=side)
                 for density in (0.0, 1e-6)]
    full, skipped = (r.render_image(cameras, (20, 20), n_scenes=2, grid=grid) for r in renderers)
    for key in full:
        torch.testing.assert_close(skipped[key], full[key], atol=0, rtol=0)
    assert 0.02 < float(renderers[1].occupied_cells(2, torch.device("cpu"), grid=grid).mean()) < 0.8
