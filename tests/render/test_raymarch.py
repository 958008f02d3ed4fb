import math

import torch

from holo3d.render.raymarch import emission_absorption


def test_constant_density_slab_opacity():
    sigma, length, n = 0.7, 2.0, 50
    depths = torch.arange(n) * (length / n) + 1.0  # samples covering [1, 3)
    densities = torch.full((n,), sigma)
    colors = torch.full((n, 3), 0.5)
    out = emission_absorption(densities, colors, depths, bg_color=0.0, last_delta=None)
    expected = 1 - math.exp(-sigma * length)
    torch.testing.assert_close(out["opacity"], torch.tensor([expected]))
    torch.testing.assert_close(out["rgb"], torch.full((3,), 0.5 * expected))
    # Directions of length 2: the same depth range spans twice the world distance.
    out2 = emission_absorption(
        densities, colors, depths, last_delta=None, ray_scale=torch.tensor([2.0])
    )
    torch.testing.assert_close(out2["opacity"], torch.tensor([1 - math.exp(-2 * sigma * length)]))


def test_two_slabs_over_background():
    s1, l1, s2, l2, n = 0.5, 1.0, 2.0, 0.5, 20
    c1, c2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    bg = torch.tensor([0.2, 0.2, 1.0])
    depths = torch.cat([torch.arange(n) * (l1 / n), l1 + torch.arange(n) * (l2 / n)])
    densities = torch.cat([torch.full((n,), s1), torch.full((n,), s2)])
    colors = torch.cat([c1.expand(n, 3), c2.expand(n, 3)])
    out = emission_absorption(densities, colors, depths, bg_color=bg, last_delta=l2 / n)
    e1, e2 = math.exp(-s1 * l1), math.exp(-s2 * l2)
    expected = (1 - e1) * c1 + e1 * (1 - e2) * c2 + e1 * e2 * bg
    torch.testing.assert_close(out["rgb"], expected)
    torch.testing.assert_close(out["opacity"], torch.tensor([1 - e1 * e2]))


def test_opaque_wall_depth_and_weights():
    depths = torch.linspace(1.0, 5.0, 81)  # (P,)
    densities = torch.where(depths >= 3.0, 1e4, 0.0)
    colors = torch.rand(81, 3)
    out = emission_absorption(densities[None], colors[None], depths[None], bg_color=(1.0, 1.0, 1.0))
    wall = int(torch.nonzero(depths >= 3.0)[0])
    torch.testing.assert_close(out["depth"], depths[wall].reshape(1, 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["opacity"], torch.ones(1, 1))
    torch.testing.assert_close(out["rgb"], colors[wall][None], atol=1e-4, rtol=0)
    assert out["weights"].shape == (1, 81)


def test_large_last_delta_absorbs_remaining_light_without_cancellation():
    n, d, sigma = 10, 0.1, 0.1
    depths = torch.arange(n) * d
    out = emission_absorption(torch.full((n,), sigma), torch.rand(n, 3), depths)  # last_delta=1e10
    torch.testing.assert_close(out["opacity"], torch.ones(1))
    t_before = torch.exp(-sigma * d * torch.arange(n))
    expected = t_before * (1 - math.exp(-sigma * d))
    expected[-1] = t_before[-1]  # the last sample takes everything that reaches it
    torch.testing.assert_close(out["weights"], expected)
    empty = emission_absorption(
        torch.zeros(2, n), torch.rand(2, n, 3), depths.expand(2, n), bg_color=0.3
    )
    torch.testing.assert_close(empty["opacity"], torch.zeros(2, 1))
    torch.testing.assert_close(empty["rgb"], torch.full((2, 3), 0.3))
