"""Trajectory parity with diffusers' schedulers on the same analytic denoiser and schedule (test-only).

diffusers keeps its schedules in float32, so both sides use its float32 alpha_bars (in float64 here)
and final samples agree to ~1e-5 rather than to float64 precision. Skipped without diffusers.
"""

import math

import pytest
import torch

from holo3d.diffusion import karras_sigmas, sample, sample_ddim, sigma_to_t, vp_sigma_range

diffusers = pytest.importorskip("diffusers")
# diffusers' own numpy-2 deprecation noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 3, 8, 8)
VP_CONFIG = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                 prediction_type="sample")  # the model predicts x0


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def same_schedule(gaussian, sched):
    """The Gaussian oracle on the scheduler's own (float32) alpha_bars."""
    return type(gaussian)(mu=gaussian.mu, sd=gaussian.sd, alpha_bars=sched.alphas_cumprod.double())


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(gaussian, eta):
    sched = diffusers.DDIMScheduler(**VP_CONFIG, clip_sample=False, set_alpha_to_one=True,
                                    timestep_spacing="trailing")
    sched.set_timesteps(20)
    gaussian = same_schedule(gaussian, sched)
    tau = sched.timesteps.tolist()  # 999, 949, ..., 49: DDIM's sub-sequence, then alpha_bar = 1
    g = gen(0)
    z = torch.randn(SHAPE, generator=g)
    step_noise = [torch.randn(SHAPE, generator=g) for _ in tau[:-1]] + [torch.zeros(SHAPE)]
    x = z.clone()
    for t, n in zip(tau, step_noise):
        x0 = gaussian.vp_denoiser(x, torch.full((SHAPE[0],), t))
        x = sched.step(x0, t, x, eta=eta, variance_noise=n).prev_sample
    ours = sample_ddim(gaussian.vp_denoiser, SHAPE, gaussian.alpha_bars, timesteps=tau, eta=eta, generator=gen(0))
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_euler_matches_diffusers(gaussian):
    """The registry's "euler" on a VP model (Karras sigmas + adapter) against EulerDiscreteScheduler."""
    steps = 15
    sched = diffusers.EulerDiscreteScheduler(**VP_CONFIG, use_karras_sigmas=True)
    sched.set_timesteps(steps)
    gaussian = same_schedule(gaussian, sched)
    ab = gaussian.alpha_bars
    torch.testing.assert_close(sched.sigmas.double(), karras_sigmas(steps, *vp_sigma_range(ab)), rtol=1e-5, atol=0)
    z = torch.randn(SHAPE, generator=gen(1))
    x = z * sched.init_noise_sigma
    for i, t in enumerate(sched.timesteps):
        x_t = sched.scale_model_input(x, t)  # x_sigma / sqrt(1 + sigma^2): the VP input
        x0 = gaussian.vp_denoiser(x_t, sigma_to_t(sched.sigmas[i].expand(SHAPE[0]).double(), ab))
        x = sched.step(x0, t, x).prev_sample
    ours = sample("euler", gaussian.vp_denoiser, SHAPE, ab, steps=steps, noise=z)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [8, 25])
def test_dpmpp_2m_matches_diffusers(gaussian, steps):
    """The registry's "dpmpp_2m" against DPMSolverMultistepScheduler (dpmsolver++, order 2)."""
    sched = diffusers.DPMSolverMultistepScheduler(**VP_CONFIG, use_karras_sigmas=True, algorithm_type="dpmsolver++",
                                                  solver_order=2)
    sched.set_timesteps(steps)
    gaussian = same_schedule(gaussian, sched)
    ab = gaussian.alpha_bars
    sigmas = sched.sigmas.double()
    torch.testing.assert_close(sigmas, karras_sigmas(steps, *vp_sigma_range(ab)), rtol=1e-5, atol=0)
    z = torch.randn(SHAPE, generator=gen(2))
    s0 = sigmas[0].item()
    x = z * s0 / math.sqrt(1 + s0**2)  # VP state of our start x_sigma = z sigma_max
    for i, t in enumerate(sched.timesteps):
        # the ideal model at the scheduler's exact noise level (its integer t is rounded)
        x0 = gaussian.vp_denoiser(x, sigma_to_t(sigmas[i].expand(SHAPE[0]), ab))
        x = sched.step(x0, t, x).prev_sample
    ours = sample("dpmpp_2m", gaussian.vp_denoiser, SHAPE, ab, steps=steps, noise=z)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
