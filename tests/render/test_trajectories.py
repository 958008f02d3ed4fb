import math

import pytest
import torch

from holo3d.render.trajectories import estimate_up_axis, turntable_cameras


def test_turntable_default_up_matches_pytorch3d_angles():
    cams = turntable_cameras(8, elevation_deg=20.0, distance=3.0, fov_deg=60.0, image_size=(32, 48))
    centres = cams.get_camera_center()  # (8, 3)
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((8,), 3.0))
    elevations = torch.rad2deg(torch.asin(centres[:, 1] / 3.0))
    torch.testing.assert_close(elevations, torch.full((8,), 20.0), atol=1e-3, rtol=0)
    azimuths = torch.rad2deg(torch.atan2(centres[:, 0], centres[:, 2])) % 360
    torch.testing.assert_close(azimuths, torch.arange(8) * 45.0, atol=1e-3, rtol=0)
    focal = 1 / math.tan(math.radians(30))
    torch.testing.assert_close(cams.focal_length, torch.full((8, 2), focal))


@pytest.mark.parametrize("up", [(0.0, 1.0, 0.0), (0.3, 0.8, -0.5), (0.0, 0.0, 1.0)])
def test_turntable_cameras_look_at_the_target_from_the_right_place(up):
    at = torch.tensor([0.1, -0.2, 0.3])
    cams = turntable_cameras(12, elevation_deg=25.0, distance=2.5, up=up, at=at)
    axis = torch.tensor(up) / torch.tensor(up).norm()
    offsets = cams.get_camera_center() - at  # (12, 3)
    torch.testing.assert_close(offsets.norm(dim=-1), torch.full((12,), 2.5))
    sin_elev = offsets @ axis / 2.5
    torch.testing.assert_close(sin_elev, torch.full((12,), math.sin(math.radians(25.0))))
    projected = cams.transform_points_ndc(at.expand(12, 1, 3))[:, 0]  # (12, 3)
    torch.testing.assert_close(projected[:, :2], torch.zeros(12, 2), atol=1e-5, rtol=0)
    image_up = cams.R[:, :, 1]  # camera +Y in world coordinates
    assert torch.all(image_up @ axis > 0.5)


@pytest.mark.parametrize("elevation", [15.0, -30.0])
def test_estimate_up_axis_recovers_a_tilted_orbit_axis(elevation):
    axis = torch.tensor([0.3, 0.8, -0.5])
    axis = axis / axis.norm()
    cams = turntable_cameras(30, elevation_deg=elevation, distance=4.0, up=axis)
    assert torch.dot(estimate_up_axis(cams), axis) > 0.9999
    arc = cams[list(range(10))]  # a 120-degree arc is still planar
    assert torch.dot(estimate_up_axis(arc), axis) > 0.9999


def test_estimate_up_axis_falls_back_to_mean_camera_up():
    axis = torch.tensor([0.0, 0.6, 0.8])
    cams = turntable_cameras(8, elevation_deg=10.0, up=axis)
    two = cams[[0, 3]]  # too few cameras for a plane
    estimate = estimate_up_axis(two)
    torch.testing.assert_close(estimate.norm(), torch.tensor(1.0))
    assert torch.dot(estimate, axis) > 0.95
