"""UNet3D: shapes, the base config's size, timestep and extra-embedding conditioning, zero-initialised output."""

import pytest
import torch
from torch import nn

from holo3d.models.unet3d import UNet3D, timestep_embedding

TINY = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), num_heads=2)


def _randomise_zero_params(net: nn.Module) -> None:
    """Give the zero-initialised output layers random weights so the network output depends on t."""
    generator = torch.Generator().manual_seed(0)
    for p in net.parameters():
        if p.ndim > 1 and not p.detach().any():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def test_output_shape_and_zero_init():
    net = UNet3D(in_channels=8, out_channels=5, **TINY)
    x = torch.randn(2, 8, 8, 8, 8)
    out = net(x, torch.tensor([0.0, 999.0]))
    assert out.shape == (2, 5, 8, 8, 8)
    # The output conv is zero-initialised: a fresh network predicts exactly zero.
    assert torch.count_nonzero(out) == 0


def test_timestep_conditioning_changes_output():
    torch.manual_seed(0)
    net = UNet3D(in_channels=4, out_channels=4, **TINY)
    _randomise_zero_params(net)
    x = torch.randn(1, 4, 8, 8, 8).expand(2, -1, -1, -1, -1)
    out = net(x, torch.tensor([3.0, 700.0]))
    assert out.abs().mean() > 0
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_gradients_reach_every_parameter():
    net = UNet3D(in_channels=4, out_channels=4, **TINY)
    _randomise_zero_params(net)
    net(torch.randn(2, 4, 8, 8, 8), torch.tensor([1.0, 2.0])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_base_config_parameter_count():
    # The official HoloDiffusion model has 186.8M parameters in total: this U-Net (~165.2M) plus the
    # ResNet-34 feature extractor (~21.3M) and the render MLP.
    with torch.device("meta"):
        net = UNet3D(in_channels=64, out_channels=64)
    n_params = sum(p.numel() for p in net.parameters())
    assert 160e6 < n_params < 170e6, n_params


def test_channels_last_and_bf16_autocast():
    net = UNet3D(in_channels=4, out_channels=4, **TINY).to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 4, 8, 8, 8).to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, torch.tensor([10.0, 20.0]))
    assert out.shape == (2, 4, 8, 8, 8) and torch.isfinite(out.float()).all()


def test_checkpointing_matches():
    torch.manual_seed(0)
    net = UNet3D(in_channels=4, out_channels=4, **TINY)
    _randomise_zero_params(net)
    ckpt = UNet3D(in_channels=4, out_channels=4, use_checkpoint=True, **TINY)
    ckpt.load_state_dict(net.state_dict())
    x, t = torch.randn(1, 4, 8, 8, 8), torch.tensor([5.0])
    torch.testing.assert_close(ckpt(x, t), net(x, t))


def test_indivisible_grid_is_a_clear_error():
    net = UNet3D(in_channels=4, out_channels=4, **TINY)
    with pytest.raises(ValueError, match="UNet3D input size 5 x 5 x 5 must be divisible by downsample_factor 2"):
        net(torch.randn(1, 4, 5, 5, 5), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"UNet3D input has shape \(1, 4, 8, 8\); expected 5 dims"):
        net(torch.randn(1, 4, 8, 8), torch.tensor([1.0]))


def test_extra_embedding_is_added_to_the_time_embedding():
    torch.manual_seed(0)
    net = UNet3D(in_channels=4, out_channels=4, **TINY)
    _randomise_zero_params(net)
    x, t = torch.randn(2, 4, 8, 8, 8), torch.tensor([3.0, 700.0])
    extra = torch.randn(2, 4 * TINY["model_channels"])
    with torch.no_grad():
        plain, with_extra = net(x, t), net(x, t, emb=extra)
        # The same as running the layout on time embedding + extra by hand.
        by_hand = net._run_layout(x, net.time_embed(timestep_embedding(t, net.model_channels)) + extra)
        torch.testing.assert_close(net(x, t, emb=torch.zeros_like(extra)), plain)
        # A (1, E) embedding is broadcast over the batch.
        torch.testing.assert_close(net(x, t, emb=extra[:1]), net(x, t, emb=extra[:1].expand(2, -1)))
    assert not torch.allclose(plain, with_extra, atol=1e-4)
    torch.testing.assert_close(with_extra, by_hand)
    with pytest.raises(ValueError, match=r"emb has shape \(2, 8\); expected \(2, 64\)"):
        net(x, t, emb=torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"emb has shape \(3, 64\)"):
        net(x, t, emb=torch.randn(3, 64))


def test_timestep_embedding_distinct():
    emb = timestep_embedding(torch.tensor([0.0, 1.0, 500.0]), 32)
    assert emb.shape == (3, 32)
    assert not torch.allclose(emb[0], emb[1])
