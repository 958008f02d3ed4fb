"""EDM preconditioning identities, loss weighting, training noise draws, guidance."""

import math

import pytest
import torch

from holo3d.diffusion import (
    classifier_free_guidance,
    edm_denoise,
    edm_loss,
    edm_loss_weight,
    edm_preconditioning,
    sample_log_normal_sigmas,
    sample_timesteps,
    x0_mse_loss,
)

SIGMAS = torch.exp(torch.linspace(math.log(0.002), math.log(80.0), 50, dtype=torch.float64))


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_preconditioning_identities(sigma_data):
    c_skip, c_out, c_in, c_noise = edm_preconditioning(SIGMAS, sigma_data)
    sd2, s2 = sigma_data**2, SIGMAS**2
    one = torch.ones_like(SIGMAS)
    torch.testing.assert_close(c_in**2 * (s2 + sd2), one)  # unit-variance network input
    torch.testing.assert_close(c_skip + c_out**2 / sd2, one)
    torch.testing.assert_close(c_noise, SIGMAS.log() / 4)
    # the raw network's target (y - c_skip (y + n)) / c_out has unit variance (EDM eq. 8 / App. B.6)
    target_var = ((1 - c_skip) ** 2 * sd2 + c_skip**2 * s2) / c_out**2
    torch.testing.assert_close(target_var, one)
    # lambda(sigma) c_out^2 = 1: uniform effective weight on the raw network's loss
    torch.testing.assert_close(edm_loss_weight(SIGMAS, sigma_data) * c_out**2, one)


def test_effective_target_unit_variance_monte_carlo():
    g = torch.Generator().manual_seed(0)
    sigma_data = 0.5
    y = sigma_data * torch.randn(6, 40000, generator=g, dtype=torch.float64)
    n = torch.randn(6, 40000, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = (c[:, None] for c in edm_preconditioning(sigma, sigma_data))
    x = y + sigma[:, None] * n
    target = (y - c_skip * x) / c_out
    torch.testing.assert_close(target.var(1), torch.ones(6, dtype=torch.float64), rtol=0.03, atol=0)
    torch.testing.assert_close((c_in * x).var(1), torch.ones(6, dtype=torch.float64), rtol=0.03, atol=0)


def test_edm_denoise_zero_network_is_optimal_for_matching_gaussian():
    """For y ~ N(0, sigma_data^2) the optimal D is c_skip x, i.e. the ideal raw network outputs 0."""
    calls = {}

    def raw_fn(x_in, c_noise, label=None):
        calls.update(x_in=x_in, c_noise=c_noise, label=label)
        return torch.zeros_like(x_in)

    sigma_data, sigma = 0.5, torch.tensor([0.1, 2.0])
    x = torch.randn(2, 3, 4, 4, 4)
    d = edm_denoise(raw_fn, x, sigma, sigma_data, label="car")
    optimal = sigma_data**2 / (sigma_data**2 + sigma**2)
    torch.testing.assert_close(d, optimal[:, None, None, None, None] * x)
    torch.testing.assert_close(calls["x_in"], x / (sigma**2 + 0.25).sqrt()[:, None, None, None, None])
    torch.testing.assert_close(calls["c_noise"], sigma.log() / 4)
    assert calls["label"] == "car"


def test_losses_are_per_sample():
    x0 = torch.zeros(3, 2, 4, 4)
    pred = x0 + torch.tensor([0.0, 1.0, 2.0])[:, None, None, None]
    torch.testing.assert_close(x0_mse_loss(pred, x0), torch.tensor([0.0, 1.0, 4.0]))
    sigma = torch.tensor([0.5, 0.5, 2.0])
    expected = torch.tensor([0.0, 1.0, 4.0]) * (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(edm_loss(pred, x0, sigma, 0.5), expected)


def test_training_noise_draws():
    g = torch.Generator().manual_seed(0)
    sigma = sample_log_normal_sigmas(20000, -1.2, 1.2, generator=g)
    assert sigma.shape == (20000,) and torch.all(sigma > 0)
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.05)
    assert sigma.log().std().item() == pytest.approx(1.2, rel=0.03)
    again = sample_log_normal_sigmas(20000, -1.2, 1.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sigma, again)
    t = sample_timesteps(20000, 1000, generator=g)
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= 999
    assert t.double().mean().item() == pytest.approx(499.5, abs=10)


def test_classifier_free_guidance():
    c, u = torch.full((2, 3), 2.0), torch.full((2, 3), 1.0)
    assert torch.equal(classifier_free_guidance(c, u, 1.0), c)
    assert torch.equal(classifier_free_guidance(c, u, 0.0), u)
    assert torch.equal(classifier_free_guidance(c, u, 3.0), torch.full((2, 3), 4.0))
