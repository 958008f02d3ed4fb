"""Samplers against closed forms: Gaussian data N(mu, sd^2) with its exact optimal denoiser.

Deterministic samplers with this denoiser are linear, so besides "std ~ sd after enough steps" we can
check the exact std a given discretisation must produce (``GaussianData.predicted_std``). Also: the
contract every sampler shares (5-D data, callbacks, generators, cond, dtypes, a given start) and the
VP -> sigma adapter.
"""

import functools
import math

import pytest
import torch

from holo3d.diffusion import (
    alpha_bars,
    karras_sigmas,
    linear_betas,
    sample_ddim,
    sample_dpmpp_2m,
    sample_ddpm,
    sample_euler,
    sample_heun,
    sigma_to_t,
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
    x = sample_ddpm(gaussian.vp_denoiser, shape, gaussian.alpha_bars, generator=gen())
    assert x.shape == shape and x.dtype == torch.float32
    gaussian.assert_moments(x)


def test_ddim_eta1_full_steps_matches_ddpm(gaussian):
    # in distribution (different seeds) ...
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, gaussian.alpha_bars, steps=1000, eta=1.0,
                    generator=gen(1))
    gaussian.assert_moments(x)
    y = sample_ddpm(gaussian.vp_denoiser, SHAPE, gaussian.alpha_bars, generator=gen(2))
    assert abs(x.mean() - y.mean()) < 0.01 and abs(x.std() / y.std() - 1) < 0.02
    # ... and, drawing the same noise in the same order, sample for sample (sigma_t^2 = beta_tilde)
    kw = dict(dtype=torch.float64)
    a = sample_ddpm(gaussian.vp_denoiser, (2, 1, 8, 8), gaussian.alpha_bars, generator=gen(3), **kw)
    b = sample_ddim(gaussian.vp_denoiser, (2, 1, 8, 8), gaussian.alpha_bars, steps=1000, eta=1.0,
                    generator=gen(3), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_ddim_eta0_is_euler_in_sigma_space(gaussian):
    """Deterministic DDIM is Euler's method on the EDM ODE at sigmas = vp_sigmas[tau] (EDM App. C.1)."""
    ab, shape = gaussian.alpha_bars, (2, 3, 8, 8)
    z = torch.randn(shape, generator=gen(4), dtype=torch.float64)
    a = sample_ddim(gaussian.vp_denoiser, shape, ab, steps=20, noise=z)
    sigmas = torch.cat([vp_sigmas(ab)[spaced_timesteps(1000, 20)], torch.zeros(1, dtype=torch.float64)])
    s0 = sigmas[0].item()  # x_T = z is x_sigma = z sqrt(1 + s0^2) in sigma-space
    b = sample_euler(vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, ab), shape, sigmas,
                     noise=z * math.sqrt(1 + s0**2) / s0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_ddim_eta0_moments(gaussian):
    ab = gaussian.alpha_bars
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, ab, steps=50, generator=gen(5))
    # 50 steps: the exact Euler-on-DDIM-sigmas std (about 0.47, first-order error) ...
    sigmas = torch.cat([vp_sigmas(ab)[spaced_timesteps(1000, 50)], torch.zeros(1, dtype=torch.float64)])
    start_std = math.sqrt(1 + sigmas[0].item() ** 2)  # x_T ~ N(0, 1) is x_sigma = x_T sqrt(1 + s^2)
    expected = gaussian.predicted_std(sigmas, heun=False, start_std=start_std)
    gaussian.assert_moments(x, expected, rel_sd=0.02)
    assert abs(expected / gaussian.sd - 1) < 0.08
    # ... which converges to sd with more steps
    x = sample_ddim(gaussian.vp_denoiser, SHAPE, ab, steps=250, generator=gen(5))
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
    dpm_ratio = error(sample_dpmpp_2m, 32) / error(sample_dpmpp_2m, 64)
    assert 1.7 < euler_ratio < 2.3, euler_ratio
    assert 3.2 < heun_ratio < 5.0, heun_ratio
    assert 3.2 < dpm_ratio < 5.0, dpm_ratio  # second order too, at one call per step
    # DPM-Solver++(2M) beats Euler at the same (small) number of denoiser calls
    for n in (5, 10, 20):
        assert error(sample_dpmpp_2m, n) < 0.7 * error(sample_euler, n), n  # measured 0.25-0.6x


def test_bf16_model_dtype_keeps_float32_state(gaussian):
    """The denoiser sees bf16, yet the 1000-step chain tracks the float32 one from the same seed.

    A bf16 sampler state would round each of the 1000 small updates: measured here, that biases the
    sample mean by about -0.01 and spreads samples 0.04 away from their float32 counterparts.
    """
    def model(x_t, t):  # computes in float32 internally, like a network with fp32 accumulation
        return gaussian.vp_denoiser(x_t.float(), t).to(x_t.dtype)

    kw = dict(generator=gen(9))
    ref = sample_ddpm(model, (4, 4, 32, 32), gaussian.alpha_bars, **kw).double()
    kw = dict(generator=gen(9), dtype=torch.bfloat16)
    x = sample_ddpm(model, (4, 4, 32, 32), gaussian.alpha_bars, **kw)
    assert x.dtype == torch.bfloat16
    diff = x.double() - ref
    assert abs(diff.mean().item()) < 0.002 and diff.std().item() < 0.005


@pytest.mark.parametrize("steps", [10, 25])
def test_dpmpp_2m_beats_euler_in_std(gaussian, steps):
    """Few steps on the closed form: DPM-Solver++(2M)'s std is nearer sd than Euler's (same calls)."""
    sigmas = karras_sigmas(steps, **EDM_SIGMAS)
    err = {f.__name__: abs(f(gaussian.sigma_denoiser, SHAPE, sigmas, generator=gen(3)).std().item()
                           / gaussian.sd - 1) for f in (sample_euler, sample_dpmpp_2m)}
    assert err["sample_dpmpp_2m"] < 0.7 * err["sample_euler"], err


def test_dpmpp_2m_recovers_gaussian(gaussian):
    x = sample_dpmpp_2m(gaussian.sigma_denoiser, SHAPE, karras_sigmas(64, **EDM_SIGMAS), generator=gen(7))
    gaussian.assert_moments(x)


# ----------------------------------------------------------------------------- the shared contract

AB_SHORT = alpha_bars(linear_betas(20, 1e-3, 0.2))  # a short schedule keeps API tests instant
SHAPE_5D = (2, 3, 4, 5, 6)  # (B, C, D, H, W)
SIGMAS_SHORT = karras_sigmas(6, 0.01, 10.0)

# name -> (sampler with its schedule bound, number of steps = callback calls)
CONTRACT = {
    "ddpm": (functools.partial(sample_ddpm, alpha_bars=AB_SHORT), 20),
    "ddim": (functools.partial(sample_ddim, alpha_bars=AB_SHORT, steps=7), 7),
    "ddim_eta1": (functools.partial(sample_ddim, alpha_bars=AB_SHORT, steps=7, eta=1.0), 7),
    "euler": (functools.partial(sample_euler, sigmas=SIGMAS_SHORT), 6),
    "heun": (functools.partial(sample_heun, sigmas=SIGMAS_SHORT), 6),
    "heun_churn": (functools.partial(sample_heun, sigmas=SIGMAS_SHORT, S_churn=5.0), 6),
    "dpmpp_2m": (functools.partial(sample_dpmpp_2m, sigmas=SIGMAS_SHORT), 6),
}


def shrink(x, level, **cond):
    """A stand-in denoiser: a fixed contraction (only shapes and plumbing matter here)."""
    assert level.shape == (x.shape[0],)
    return 0.5 * x


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_5d_callback_and_reproducibility(name):
    sampler, num_steps = CONTRACT[name]
    calls = []

    def callback(i, x, x0):
        assert x.shape == x0.shape == SHAPE_5D
        calls.append(i)

    a = sampler(shrink, SHAPE_5D, generator=gen(0), callback=callback)
    assert a.shape == SHAPE_5D and torch.isfinite(a).all()
    assert calls == list(range(num_steps))
    b = sampler(shrink, SHAPE_5D, generator=gen(0))
    c = sampler(shrink, SHAPE_5D, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_cond_dtype_and_level_types(name):
    sampler, _ = CONTRACT[name]
    seen = []

    def fn(x, level, camera=None):
        seen.append((level.dtype, camera, x.dtype))
        return torch.zeros_like(x)

    x = sampler(fn, (2, 1, 4, 4), cond={"camera": "cam"}, dtype=torch.float64)
    assert x.dtype == torch.float64
    integer_levels = name.startswith("dd")
    assert all(cam == "cam" and dt == torch.float64 for _, cam, dt in seen)
    assert all((lt == torch.int64) == integer_levels for lt, _, _ in seen)


def test_denoiser_call_counts():
    counter = {"n": 0}

    def fn(x, sigma):
        counter["n"] += 1
        return 0.5 * x

    sigmas = karras_sigmas(10, 0.01, 10.0)
    for sampler, expected in [(sample_euler, 10), (sample_dpmpp_2m, 10), (sample_heun, 2 * 10 - 1)]:
        counter["n"] = 0
        sampler(fn, (1, 1, 2, 2), sigmas)
        assert counter["n"] == expected  # Heun: no correction on the final step to sigma = 0


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "dpmpp_2m"])
def test_samplers_do_not_clip(name):
    """Clipping belongs to the parameterisation (VPDiffusion / EDMDiffusion), not to the sampler."""
    sampler, _ = CONTRACT[name]
    out = sampler(lambda x, level: torch.full_like(x, 3.0), (2, 1, 4, 4))
    torch.testing.assert_close(out, torch.full_like(out, 3.0))  # the last step lands on x0


def test_given_noise_explicit_timesteps_and_shape_check():
    z = torch.randn(2, 1, 4, 4)
    a = sample_ddim(shrink, z.shape, AB_SHORT, steps=5, noise=z)
    assert torch.equal(a, sample_ddim(shrink, z.shape, AB_SHORT, steps=5, noise=z.clone()))
    tau = spaced_timesteps(20, 5).tolist()
    assert torch.equal(a, sample_ddim(shrink, z.shape, AB_SHORT, timesteps=tau, noise=z))
    with pytest.raises(ValueError):
        sample_euler(shrink, (2, 1, 4, 5), karras_sigmas(3, 0.1, 1.0), noise=z)


# ----------------------------------------------------------------------------- VP -> sigma adapter


def test_adapter_is_exact_sigma_denoiser(gaussian):
    """The optimal VP denoiser, adapted, is the optimal sigma-space denoiser at every sigma."""
    lo, hi = vp_sigma_range(gaussian.alpha_bars)
    sigma = torch.tensor([lo, 0.05, 0.5, 3.0, 40.0, hi], dtype=torch.float64)
    x = gaussian.mu + (0.25 + sigma**2).sqrt()[:, None, None, None, None] * torch.randn(
        6, 2, 3, 3, 3, generator=gen(0), dtype=torch.float64)
    adapted = vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, gaussian.alpha_bars)
    torch.testing.assert_close(adapted(x, sigma), gaussian.sigma_denoiser(x, sigma), rtol=1e-9, atol=1e-9)


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


def test_heun_with_vp_adapter_matches_exact_discretisation(gaussian):
    ab = gaussian.alpha_bars
    denoiser = vp_denoiser_as_sigma_denoiser(gaussian.vp_denoiser, ab)
    sigmas = karras_sigmas(18, *vp_sigma_range(ab))
    x = sample_heun(denoiser, SHAPE, sigmas, generator=gen(0))
    gaussian.assert_moments(x, gaussian.predicted_std(sigmas, True), rel_sd=0.02)
