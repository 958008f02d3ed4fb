import pytest
import torch

from holo3d.render.voxel_grid import sample_voxel_grid, voxel_centers


@pytest.mark.parametrize("extent", [2.0, 3.0])
def test_sampling_at_voxel_centres_returns_the_grid(extent):
    torch.manual_seed(0)
    grid = torch.randn(2, 5, 4, 6, 3)  # (S, C, D, H, W): non-cubic to catch axis swaps
    centres = voxel_centers((4, 6, 3), volume_extent=extent)  # (D, H, W, 3)
    points = centres.reshape(1, -1, 3).expand(2, -1, -1)  # (S, M, 3)
    sampled = sample_voxel_grid(grid, points, volume_extent=extent)  # (S, M, C)
    expected = grid.permute(0, 2, 3, 4, 1).reshape(2, -1, 5)  # (S, D*H*W, C)
    torch.testing.assert_close(sampled, expected, atol=1e-6, rtol=0)


def test_voxel_centres_axes_and_extent():
    centres = voxel_centers(4, volume_extent=2.0)
    assert centres.shape == (4, 4, 4, 3)
    torch.testing.assert_close(centres[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(centres[0, :, 0, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(centres[:, 0, 0, 2], torch.tensor([-0.75, -0.25, 0.25, 0.75]))


def test_x_indexes_w_y_indexes_h_z_indexes_d():
    d, h, w = 4, 6, 8
    index_grids = torch.meshgrid(
        torch.arange(d).float(), torch.arange(h).float(), torch.arange(w).float(), indexing="ij"
    )
    grid = torch.stack(index_grids)[None]  # (1, 3, D, H, W): channels = (d, h, w) indices
    # Half-way between voxel centres w=2 and w=3 along x, at the centres of h=1 and d=3.
    point = torch.tensor([[[-1.0 + 6.0 / w, -1.0 + 3.0 / h, -1.0 + 7.0 / d]]])
    sampled = sample_voxel_grid(grid, point)[0, 0]
    torch.testing.assert_close(sampled, torch.tensor([3.0, 1.0, 2.5]))


def test_points_outside_the_cube_read_zeros():
    grid = torch.ones(1, 2, 8, 8, 8)
    voxel = 2.0 / 8
    outside = torch.tensor(
        [[1.0 + voxel, 0.0, 0.0], [0.0, -1.0 - voxel, 0.0], [0.0, 0.0, 5.0], [-3.0, 2.0, 1.5]]
    )[None]
    assert torch.all(sample_voxel_grid(grid, outside) == 0)
    inside = torch.tensor([[[0.99, 0.0, 0.0]]])
    assert torch.all(sample_voxel_grid(grid, inside) > 0.5)
