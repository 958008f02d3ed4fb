"""Samplers against closed forms: Gaussian data N(mu, sd^2) with its exact optimal denoiser.

Deterministic samplers with this denoiser are linear, so besides "std ~ sd after enough steps" we can
check the exact std a given discretisation must produce (``GaussianData.predicted_std``).
"""

import math

import pytest
import torch

from holo3d.diffusion import (
    alpha_bars,
    karras_sigmas,
    linear_betas,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_heun,
    spaced_timesteps,
    vp_sigma_range,
    vp_denoiser_as_sigma_denoiser,
    vp_sigmas,
)

SHAPE = (8, 4, 32, 32)  # 32768 elements: relative s.e. of the std ~0.4%
EDM_SIGMAS = dict(sigma_min=0.002, sigma_max=80.0)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [SHAPE, (4, 4, 8, 16, 16)])
def test_ddpm_recovers_gaussian(gaussian, shape):
    x = sample_ddpm(gaussian.vp_denoiser, shape, gaussian.alpha_bars, generator=gen(), clip_x0=False)
    assert x.shape == shape and x.dtype == torch.float32
    gaussian.assert_moments(x)


def test_ddpm_with_clipping_recovers_narrow_gaussian(gaussian):
    """With sd = 0.2 the data stays inside [-1, 1], so the default x0 clipping must not bias it."""
    narrow = type(gaussian)(mu=0.0, sd=0.2, alpha_bars=gaussian.alpha_bars)
    x = sample_ddpm(narrow.vp_denoiser, SHAPE, narrow.alpha_bars, generator=gen(8))
    narrow.assert_moments(x)


def test_ddim_eta1_full_steps_matches_ddpm(gaussian):
    # in distribution (different seeds) ...
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, gaussian.alpha_bars, steps=1000, eta=1.0,
                    generator=gen(1), clip_x0=False)
    gaussian.assert_moments(x)
    y = sample_ddpm(gaussian.vp_denoiser, SHAPE, gaussian.alpha_bars, generator=gen(2), clip_x0=False)
    assert abs(x.mean() - y.mean()) < 0.01 and abs(x.std() / y.std() - 1) < 0.02
    # ... and, drawing the same noise in the same order, sample for sample (sigma_t^2 = beta_tilde)
    kw = dict(dtype=torch.float64, clip_x0=True)
    a = sample_ddpm(gaussian.vp_denoiser, (2, 1, 8, 8), gaussian.alpha_bars, generator=gen(3), **kw)
    b = sample_ddim(gaussian.vp_denoiser, (2, 1, 8, 8), gaussian.alpha_bars, steps=1000, eta=1.0,
                    generator=gen(3), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_ddim_eta0_is_euler_in_sigma_space(gaussian):
    """Deterministic DDIM is Euler's method on the EDM ODE at sigmas = vp_sigmas[tau] (EDM App. C.1)."""
    ab, shape = gaussian.alpha_bars, (2, 3, 8, 8)
    z = torch.randn(shape, generator=gen(4), dtype=torch.float64)
    a = sample_ddim(gaussian.vp_denoiser, shape, ab, steps=20, noise=z, clip_x0=False)
    sigmas = torch.cat([vp_sigmas(ab)[spaced_timesteps(1000, 20)], torch.zeros(1, dtype=torch.float64)])
    s0 = sigmas[0].item()  # x_T = z is x_sigma = z sqrt(1 + s0^2) in sigma-space
    b = sample_euler(vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, ab), shape, sigmas,
                     noise=z * math.sqrt(1 + s0**2) / s0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_ddim_eta0_moments(gaussian):
    ab = gaussian.alpha_bars
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, ab, steps=50, generator=gen(5), clip_x0=False)
    # 50 steps: the exact Euler-on-DDIM-sigmas std (about 0.47, first-order error) ...
    sigmas = torch.cat([vp_sigmas(ab)[spaced_timesteps(1000, 50)], torch.zeros(1, dtype=torch.float64)])
    start_std = math.sqrt(1 + sigmas[0].item() ** 2)  # x_T ~ N(0, 1) is x_sigma = x_T sqrt(1 + s^2)
    expected = gaussian.predicted_std(sigmas, heun=False, start_std=start_std)
    gaussian.assert_moments(x, expected, rel_sd=0.02)
    assert abs(expected / gaussian.sd - 1) < 0.08
    # ... which converges to sd with more steps
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, ab, steps=250, generator=gen(5), clip_x0=False)
    gaussian.assert_moments(x)


@pytest.mark.parametrize("sampler, heun", [(sample_euler, False), (sample_heun, True)])
@pytest.mark.parametrize("churn", [{}, dict(S_churn=40.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.003)])
def test_edm_samplers_match_exact_discretisation(gaussian, sampler, heun, churn):
    sigmas = karras_sigmas(18, **EDM_SIGMAS)
    x = sampler(gaussian.sigma_denoiser, SHAPE, sigmas, generator=gen(6), **churn)
    expected = gaussian.predicted_std(sigmas, heun=heun, **churn)
    gaussian.assert_moments(x, expected, rel_sd=0.02)


@pytest.mark.parametrize("sampler, steps, churn", [
    (sample_heun, 40, {}),
    (sample_heun, 128, dict(S_churn=40.0)),
    (sample_euler, 256, {}),
])
def test_edm_samplers_recover_gaussian(gaussian, sampler, steps, churn):
    x = sampler(gaussian.sigma_denoiser, SHAPE, karras_sigmas(steps, **EDM_SIGMAS), generator=gen(7),
                **churn)
    gaussian.assert_moments(x)


def test_convergence_orders(gaussian):
    """With fixed unit noise the output is deterministic: Euler's error halves, Heun's quarters."""
    def error(sampler, n):
        x = sampler(gaussian.sigma_denoiser, (1, 1), karras_sigmas(n, **EDM_SIGMAS),
                    noise=torch.ones(1, 1, dtype=torch.float64))
        # the exact flow scales x - mu by sqrt(sd^2 + sigma^2): from x = 80 (z = 1) at sigma = 80 to 0
        exact = gaussian.mu + (80.0 - gaussian.mu) * gaussian.sd / math.sqrt(gaussian.sd**2 + 80.0**2)
        return abs(x.item() - exact)

    euler_ratio = error(sample_euler, 32) / error(sample_euler, 64)
    heun_ratio = error(sample_heun, 32) / error(sample_heun, 64)
    assert 1.7 < euler_ratio < 2.3, euler_ratio
    assert 3.2 < heun_ratio < 5.0, heun_ratio


def test_bf16_model_dtype_keeps_float32_state(gaussian):
    """The denoiser sees bf16, yet the 1000-step chain tracks the float32 one from the same seed.

    A bf16 sampler state would round each of the 1000 small updates: measured here, that biases the
    sample mean by about -0.01 and spreads samples 0.04 away from their float32 counterparts.
    """
    def model(x_t, t):  # computes in float32 internally, like a network with fp32 accumulation
        return gaussian.vp_denoiser(x_t.float(), t).to(x_t.dtype)

    kw = dict(generator=gen(9), clip_x0=False)
    ref = sample_ddpm(model, (4, 4, 32, 32), gaussian.alpha_bars, **kw).double()
    kw = dict(generator=gen(9), clip_x0=False, dtype=torch.bfloat16)
    x = sample_ddpm(model, (4, 4, 32, 32), gaussian.alpha_bars, **kw)
    assert x.dtype == torch.bfloat16
    diff = x.double() - ref
    assert abs(diff.mean().item()) < 0.002 and diff.std().item() < 0.005
