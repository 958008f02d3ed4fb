"""PCA colouring of feature grids, depth colouring and panel layout."""

import pytest
import torch

from holo3d.viz.grid_visualization import (
    depth_to_image,
    feature_grid_pca_image,
    pca_components,
    side_by_side,
)


def test_pca_image_shape_and_range():
    grid = torch.randn(16, 8, 10, 12)  # (C, D, H, W)
    image = feature_grid_pca_image(grid, n_slices=4, gap=2)
    assert image.shape == (3, 10, 4 * 12 + 3 * 2)
    assert image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert image.std() > 0.1  # random features give a colourful picture, not a flat one


def test_pca_colour_follows_the_axis_the_channels_vary_along():
    # Every channel is a (different) linear function of x, constant along y and z.
    x = torch.linspace(-1, 1, 12)
    weights = torch.randn(8)
    grid = (weights[:, None] * x[None, :])[:, None, None, :].expand(8, 6, 5, 12).contiguous()
    image = feature_grid_pca_image(grid, n_slices=1)  # (3, 5, 12)
    assert torch.allclose(image, image[:, :1, :].expand_as(image), atol=1e-4)  # constant along H
    first = image[0, 0]
    steps = first[1:] - first[:-1]
    assert (steps > 0).all() or (steps < 0).all()  # monotone along W
    assert first.max() - first.min() > 0.9  # spans the colour range


def test_pca_is_deterministic_in_sign_and_handles_few_channels():
    feats = torch.randn(500, 5)
    assert torch.allclose(pca_components(feats), pca_components(feats.clone()))
    assert pca_components(torch.randn(100, 2)).shape == (100, 3)
    image = feature_grid_pca_image(torch.randn(2, 4, 6, 6), n_slices=8)  # more slices than D
    assert image.shape == (3, 6, 4 * 6 + 3 * 2)
    assert torch.allclose(image[2, :, :6], torch.full((6, 6), 0.5))  # missing component: grey


def test_pca_rejects_wrong_rank():
    with pytest.raises(ValueError):
        feature_grid_pca_image(torch.randn(4, 4, 4))


def test_depth_to_image_orders_near_far_and_masks_background():
    depth = torch.linspace(1, 2, 16).reshape(1, 4, 4)
    mask = torch.ones(1, 4, 4)
    mask[..., 0, 0] = 0
    image = depth_to_image(depth, mask=mask)
    assert image.shape == (3, 4, 4) and image.min() >= 0 and image.max() <= 1
    assert torch.allclose(image[:, 0, 0], torch.ones(3))  # background
    assert image[:, -1, -1].sum() > image[:, 0, 1].sum()  # far is brighter than near


def test_side_by_side_converts_and_resizes():
    a = torch.rand(3, 8, 8)
    mask = torch.rand(1, 4, 6)  # single channel, smaller: scaled to height 8 -> width 12
    out = side_by_side([a, mask], gap=1)
    assert out.shape == (3, 8, 8 + 1 + 12)
    assert torch.equal(out[:, :, :8], a)
    assert torch.allclose(out[:, :, 8], torch.ones(3, 8))
