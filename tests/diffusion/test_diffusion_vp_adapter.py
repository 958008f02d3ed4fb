"""The VP -> sigma-space adapter: pointwise exactness and Heun sampling of a DDPM-trained denoiser."""

import pytest
import torch

from holo3d.diffusion import (
    karras_sigmas,
    sample_heun,
    sigma_to_t,
    vp_denoiser_as_sigma_denoiser,
    vp_sigma_range,
    vp_sigmas,
)


def test_adapter_is_exact_sigma_denoiser(gaussian):
    """The optimal VP denoiser, adapted, is the optimal sigma-space denoiser at every sigma."""
    lo, hi = vp_sigma_range(gaussian.alpha_bars)
    sigma = torch.tensor([lo, 0.05, 0.5, 3.0, 40.0, hi], dtype=torch.float64)
    x = gaussian.mu + (0.25 + sigma**2).sqrt()[:, None, None, None, None] * torch.randn(
        6, 2, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    adapted = vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, gaussian.alpha_bars)
    expected = gaussian.sigma_denoiser(x, sigma)
    torch.testing.assert_close(adapted(x, sigma), expected, rtol=1e-9, atol=1e-9)


def test_adapter_passes_timestep_and_scaled_input(gaussian):
    seen = {}

    def fn(x_t, t, **cond):
        seen.update(x_t=x_t, t=t, cond=cond)
        return x_t

    ab = gaussian.alpha_bars
    sigma = vp_sigmas(ab)[[10, 500]].float() * torch.tensor([1.0, 1.001])
    x = torch.ones(2, 1, 4, 4)
    vp_denoiser_as_sigma_denoiser(fn, ab)(x, sigma, camera="c")
    torch.testing.assert_close(seen["t"], sigma_to_t(sigma, ab))
    assert seen["t"][0].item() == pytest.approx(10.0, abs=1e-3) and 500 < seen["t"][1].item() < 501
    torch.testing.assert_close(seen["x_t"][:, 0, 0, 0], (1 + sigma**2).rsqrt())
    assert seen["cond"] == {"camera": "c"}
    vp_denoiser_as_sigma_denoiser(fn, ab, round_t=True)(x, sigma)
    assert seen["t"].dtype == torch.int64 and seen["t"].tolist() == [10, 500]


def test_heun_with_vp_adapter_recovers_gaussian(gaussian):
    ab = gaussian.alpha_bars
    sigmas = karras_sigmas(40, *vp_sigma_range(ab))
    denoiser = vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, ab)
    x = sample_heun(denoiser, (8, 4, 32, 32), sigmas, generator=torch.Generator().manual_seed(0))
    gaussian.assert_moments(x)
    x = sample_heun(denoiser, (8, 4, 32, 32), karras_sigmas(18, *vp_sigma_range(ab)),
                    generator=torch.Generator().manual_seed(0))
    gaussian.assert_moments(x, gaussian.predicted_std(karras_sigmas(18, *vp_sigma_range(ab)), True),
                            rel_sd=0.02)
