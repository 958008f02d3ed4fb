import pytest
import torch
from pytorch3d.implicitron.tools.config import get_default_args

from holo3d.render.render_mlp import RenderMLP


@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_shapes_ranges_and_direction_broadcast(activation):
    torch.manual_seed(0)
    mlp = RenderMLP(in_features=8, hidden_dim=32, n_layers=4, density_activation=activation)
    features = torch.randn(2, 5, 7, 8) * 5  # (S, R, P, C)
    directions = torch.randn(2, 5, 1, 3)  # one direction per ray
    density, rgb = mlp(features, directions)
    assert density.shape == (2, 5, 7, 1) and rgb.shape == (2, 5, 7, 3)
    assert density.min() >= 0
    assert rgb.min() >= 0 and rgb.max() <= 1
    # Same result with the direction repeated per point, and with a rescaled direction.
    density2, rgb2 = mlp(features, 3.0 * directions.expand(-1, -1, 7, -1))
    torch.testing.assert_close(density, density2)
    torch.testing.assert_close(rgb, rgb2)


def test_colour_depends_on_direction_density_does_not():
    torch.manual_seed(0)
    mlp = RenderMLP(in_features=4, hidden_dim=16)
    features = torch.randn(10, 4)
    d1, c1 = mlp(features, torch.tensor([1.0, 0.0, 0.0]).expand(10, 3))
    d2, c2 = mlp(features, torch.tensor([0.0, 0.0, 1.0]).expand(10, 3))
    torch.testing.assert_close(d1, d2)
    assert not torch.allclose(c1, c2)


def test_skip_layer_and_gradients():
    mlp = RenderMLP(in_features=6, hidden_dim=16, n_layers=3, skip_layers=(1, 2))
    assert mlp.trunk[1].in_features == 16 + 6 and mlp.trunk[2].in_features == 16 + 6
    features = torch.randn(4, 6, requires_grad=True)
    density, rgb = mlp(features, torch.randn(4, 3))
    (density.sum() + rgb.sum()).backward()
    assert features.grad is not None and all(p.grad is not None for p in mlp.parameters())


def test_bad_activation_and_default_args():
    with pytest.raises(ValueError, match="density_activation"):
        RenderMLP(in_features=4, density_activation="tanh")
    args = get_default_args(RenderMLP)
    assert args.hidden_dim == 256 and list(args.skip_layers) == [2]
    RenderMLP(in_features=4, **args)
