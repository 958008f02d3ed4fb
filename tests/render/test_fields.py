"""Pluggable fields: frustum volumes sample what the camera sees, optimisable fields fit, C channels render."""

import torch
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

from holo3d.render.fields import FrustumVolumeField, OptimisableGridField, VoxelGridField
from holo3d.render.rays import full_image_rays
from holo3d.render.trajectories import turntable_cameras
from holo3d.render.volume_renderer import VolumeRenderer


def _identity_frustum_field(channels=3):
    """A FrustumVolumeField whose MLPs pass the fused feature through (density = softplus(f0))."""
    field = FrustumVolumeField(feature_channels=channels, out_channels=channels, hidden_dim=channels,
                               near=1.0, far=3.0)
    with torch.no_grad():
        for mlp, n_out in ((field.density_mlp, 1), (field.feature_mlp, channels)):
            mlp[0].weight.copy_(torch.eye(channels))
            mlp[0].bias.zero_()
            mlp[2].weight.copy_(torch.eye(channels)[:n_out])
            mlp[2].bias.zero_()
    return field


def test_frustum_volume_is_sampled_where_the_camera_sees_the_point():
    """Channels hold (image column, image row, depth) ramps: a point reads back the pixel it projects
    to (PyTorch3D's screen coordinates) and its depth between near and far."""
    z, h, w = 9, 8, 8
    ramp = lambda n: (torch.arange(n) + 0.5) / n * 2 - 1  # noqa: E731  (cell centres, align_corners=False)
    volume = torch.stack([ramp(w).expand(z, h, w), ramp(h)[:, None].expand(z, h, w),
                          ramp(z)[:, None, None].expand(z, h, w)])  # (3, Z, H, W)
    field = _identity_frustum_field()
    with torch.no_grad():
        field.feature_mlp[0].bias.fill_(10.0)  # keep the ReLU linear: features = f + 10
    R, T = look_at_view_transform(dist=2.0, elev=10.0, azim=30.0)
    camera = PerspectiveCameras(focal_length=2.0, R=R, T=T)
    points = torch.tensor([[0.0, 0.0, 0.0], [0.15, -0.1, 0.2], [-0.2, 0.12, -0.1]])  # (3, 3)
    _, feats = field(points[None, :, None], torch.zeros(1, 3, 1, 3), volumes=volume[None, None], view_cameras=camera)
    got = feats[0, :, 0] - 10.0  # (3, 3)
    screen = camera.transform_points_screen(points[None], image_size=((h, w),))[0]  # (3, 3): column, row
    depth = camera.get_world_to_view_transform().transform_points(points[None])[0, :, 2]
    expected = torch.stack([2 * screen[:, 0] / w - 1, 2 * screen[:, 1] / h - 1, depth - 2.0], dim=-1)
    # Inside the ramps' linear range the trilinear read-back is exact.
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    behind = torch.tensor([[[[0.0, 0.0, 0.0]]]])
    far_camera = PerspectiveCameras(focal_length=2.0, R=R, T=T + torch.tensor([0.0, 0.0, 5.0]))  # beyond far
    _, feats = field(behind, torch.zeros(1, 1, 1, 3), volumes=volume[None, None], view_cameras=far_camera)
    torch.testing.assert_close(feats[0, 0, 0], torch.full((3,), 10.0))  # no view sees it: zero features


def test_frustum_field_averages_only_views_that_see_the_point():
    field = _identity_frustum_field(channels=1)
    R, T = look_at_view_transform(dist=2.0, elev=0.0, azim=torch.tensor([0.0, 180.0]))
    cameras = PerspectiveCameras(focal_length=torch.tensor([[2.0], [20.0]]), R=R, T=T)
    volumes = torch.stack([torch.full((1, 4, 4, 4), 2.0), torch.full((1, 4, 4, 4), 4.0)])[None]  # (1, 2, 1, 4, 4, 4)
    seen_by_both = torch.zeros(1, 1, 1, 3)
    _, feats = field(seen_by_both, torch.zeros(1, 1, 1, 3), volumes=volumes, view_cameras=cameras)
    torch.testing.assert_close(feats[0, 0, 0, 0], torch.tensor(3.0))
    # Off to the side: inside the wide first frustum only (the second camera's focal 20 is narrow).
    seen_by_first = torch.tensor([[[[0.3, 0.3, 0.0]]]])
    _, feats = field(seen_by_first, torch.zeros(1, 1, 1, 3), volumes=volumes, view_cameras=cameras)
    torch.testing.assert_close(feats[0, 0, 0, 0], torch.tensor(2.0))


def test_renderer_composites_any_number_of_channels_over_a_padded_background():
    field = VoxelGridField(feature_channels=4, render_mlp_args={"out_channels": 16, "color_activation": "none",
                                                                  "hidden_dim": 16})
    renderer = VolumeRenderer(field=field, bg_color=(1.0, 1.0, 1.0), n_pts_coarse=8, n_pts_fine=4).eval()
    assert renderer.bg_color.tolist() == [1.0] * 3 + [0.0] * 13
    out = renderer.render_image(turntable_cameras(2, distance=3.0), (6, 5), n_scenes=1,
                                grid=torch.randn(1, 4, 4, 4, 4))
    assert out["features"].shape == (1, 2, 16, 6, 5)


def test_optimisable_field_fits_a_colour_through_the_renderer():
    torch.manual_seed(0)
    field = OptimisableGridField(resolution=8, grid_features=6, out_channels=3, hidden_dim=16)
    renderer = VolumeRenderer(field=field, n_pts_coarse=16, n_pts_fine=0, bg_color=(0.0, 0.0, 0.0))
    rays = full_image_rays(turntable_cameras(2, distance=2.5), (8, 8))
    origins, directions = rays.origins.reshape(1, -1, 3), rays.directions.reshape(1, -1, 3)
    target = torch.tensor([0.9, 0.2, 0.1])
    optimizer = torch.optim.Adam(renderer.parameters(), lr=3e-2)
    losses = []
    for _ in range(60):
        out = renderer(origins, directions, stratified=True)
        loss = (out["features_fine"] - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    assert sum(p.numel() for p in field.grid.parameters()) < 6 * 8**3  # VM-factorised: fewer than dense
