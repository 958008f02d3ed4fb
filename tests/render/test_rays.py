import pytest
import torch
from pytorch3d.renderer import PerspectiveCameras
from pytorch3d.transforms import quaternion_to_matrix

from holo3d.render.rays import (
    full_image_rays,
    near_far_from_box,
    sample_images_at_rays,
    sample_training_rays,
)


def _cameras(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    R = quaternion_to_matrix(quats / quats.norm(dim=-1, keepdim=True))
    T = torch.tensor([0.0, 0.0, 4.0]) + 0.3 * torch.randn(n, 3, generator=g)
    focal = 1.5 + torch.rand(n, 2, generator=g)  # anisotropic focal lengths
    principal = 0.2 * torch.randn(n, 2, generator=g)
    return PerspectiveCameras(focal_length=focal, principal_point=principal, R=R, T=T)


def _pixel_centres_screen(h, w):
    ii, jj = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.stack([jj + 0.5, ii + 0.5], dim=-1).reshape(-1, 2)  # (H*W, 2) x right, y down


@pytest.mark.parametrize("image_size", [(6, 10), (10, 6), (7, 7)])
def test_full_image_rays_reproject_to_their_pixels(image_size):
    cameras = _cameras()
    rays = full_image_rays(cameras, image_size)
    n_pix = image_size[0] * image_size[1]
    assert rays.origins.shape == rays.directions.shape == (3, n_pix, 3)
    centres = cameras.get_camera_center()[:, None].expand(-1, n_pix, -1)
    torch.testing.assert_close(rays.origins, centres)
    points = rays.origins + 2.5 * rays.directions  # (B, R, 3)
    screen = cameras.transform_points_screen(points, image_size=image_size)
    expected = _pixel_centres_screen(*image_size).expand(3, -1, -1)
    torch.testing.assert_close(screen[..., :2], expected, atol=1e-3, rtol=0)
    ndc = cameras.transform_points_ndc(points)
    torch.testing.assert_close(ndc[..., :2], rays.xys_ndc, atol=1e-4, rtol=0)
    # Unnormalised directions: a ray length is the camera z-depth.
    z_cam = cameras.get_world_to_view_transform().transform_points(points)[..., 2]
    torch.testing.assert_close(z_cam, torch.full_like(z_cam, 2.5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("image_size", [(6, 10), (10, 6)])
def test_gathering_at_full_image_rays_returns_the_image(image_size):
    images = torch.rand(3, 4, *image_size)
    rays = full_image_rays(_cameras(), image_size)
    gathered = sample_images_at_rays(images, rays.xys_grid)  # (B, H*W, C)
    torch.testing.assert_close(gathered, images.flatten(2).transpose(1, 2))


def test_mask_sampling_picks_only_masked_pixels():
    h, w = 12, 16
    mask = torch.zeros(3, 1, h, w)
    mask[0, :, 2:5, 3:9] = 1.0  # 18 pixels
    mask[1, :, 7:, 10:] = 0.5  # 30 pixels
    mask[2, :, 0, 0] = 1.0  # a single pixel: more rays than pixels -> with replacement
    g = torch.Generator().manual_seed(0)
    rays = sample_training_rays(_cameras(), 16, (h, w), sampling_mask=mask, generator=g)
    assert rays.origins.shape == (3, 16, 3) and rays.xys_ndc.shape == (3, 16, 2)
    under = sample_images_at_rays(mask, rays.xys_grid)[..., 0]  # (B, R)
    assert torch.all(under > 0)


def test_sampling_without_replacement_and_uniform_fallback():
    h, w = 8, 8
    cameras = _cameras(2)
    mask = torch.zeros(2, 1, h, w)
    mask[0, :, :4] = 1.0  # 32 pixels
    # row 1 is all zeros -> uniform over the image
    g = torch.Generator().manual_seed(1)
    rays = sample_training_rays(cameras, 20, (h, w), sampling_mask=mask, generator=g)
    under = sample_images_at_rays(mask, rays.xys_grid)[..., 0]
    assert torch.all(under[0] == 1)
    assert torch.unique(rays.xys_ndc[0], dim=0).shape[0] == 20  # no pixel drawn twice
    assert torch.unique(rays.xys_ndc[1], dim=0).shape[0] == 20
    full = sample_training_rays(cameras, 64, (h, w), generator=g)  # no mask: every pixel once
    assert torch.unique(full.xys_ndc[0], dim=0).shape[0] == 64


def test_mask_is_resized_to_the_image_size():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16, :] = 1.0  # top half
    rays = sample_training_rays(_cameras(1), 10, (8, 8), sampling_mask=mask)
    assert torch.all(rays.xys_grid[..., 1] < 0)  # grid y < 0 is the top half


def test_near_far_closed_forms():
    origins = torch.tensor(
        [[0.0, 0.0, -5.0], [0.0, 0.0, -5.0], [-3.0, -3.0, -3.0], [0.0, 5.0, -5.0], [0.0, 0.0, 5.0],
         [0.2, 0.1, 0.0]]
    )
    directions = torch.tensor(
        [[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0],
         [0.0, 0.0, 0.5]]
    )
    near, far = near_far_from_box(origins, directions, volume_extent=2.0)
    torch.testing.assert_close(near[:3], torch.tensor([4.0, 2.0, 2.0]))
    torch.testing.assert_close(far[:3], torch.tensor([6.0, 3.0, 4.0]))
    assert near[3] == far[3] and near[4] == far[4]  # miss, and box behind the camera
    torch.testing.assert_close(near[5:], torch.tensor([0.0]))  # camera inside the cube
    torch.testing.assert_close(far[5:], torch.tensor([2.0]))
    near3, far3 = near_far_from_box(origins[:1], directions[:1], volume_extent=3.0)
    torch.testing.assert_close(torch.stack([near3, far3]), torch.tensor([[3.5], [6.5]]))


def test_near_far_points_lie_on_the_cube():
    rays = full_image_rays(_cameras(), (16, 16))
    near, far = near_far_from_box(rays.origins, rays.directions, volume_extent=2.0)
    hit = far > near
    assert hit.float().mean() > 0.2
    for t in (near, far):
        points = rays.origins + t[..., None] * rays.directions
        torch.testing.assert_close(
            points.abs().amax(-1)[hit], torch.ones(int(hit.sum())), atol=1e-4, rtol=0
        )
