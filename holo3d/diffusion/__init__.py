"""holo3d.diffusion: the diffusion math only (torch / numpy), shared by every model.

Files, one concept each:
    broadcast          append_dims / as_coef: per-sample (B,) scalars against 4-D or 5-D data
    noise              generator-reproducible Gaussian draws
    schedules          beta / alpha_bar / sigma schedules, Karras sigmas, sigma <-> timestep maps
    forward_process    q_sample, x0 / eps / v conversions, the DDPM posterior
    preconditioning    EDM c_skip, c_out, c_in, c_noise and the preconditioned denoiser
    losses             x0 MSE, EDM-weighted loss, training timestep / sigma draws
    guidance           classifier-free guidance on x0 predictions
    ddpm, ddim         VP samplers over integer timesteps
    edm_samplers       sigma-space Euler / Heun with churn (EDM Algorithm 2)
    vp_adapter         run a DDPM-trained x0-predictor with the sigma-space samplers

Every sampler calls ``denoise_fn(x, t_or_sigma, **cond) -> x0`` with x (B, ...) and a (B,) timestep
(int64, VP samplers) or sigma (float, EDM samplers), and accepts ``callback(i, x, x0)``,
``generator``, ``device``, ``dtype``, ``cond`` and ``noise`` (a fixed starting draw).

Precision and devices: ``dtype`` is what the denoiser receives and the sample is returned in; the
sampler's own state stays in at least float32 (bf16 rounding over a 1000-step chain biases the
sample). Noise is drawn on the generator's device, so a CPU generator reproduces the same samples on
any device, while a generator on the sampling device avoids a host draw and copy every step (about
20x faster for a 1000-step DDPM of a (4, 64, 16, 16, 16) grid on an H200).
"""

from .broadcast import append_dims, as_coef
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .edm_samplers import churn_gamma, sample_euler, sample_heun
from .forward_process import (
    eps_from_v,
    eps_from_x0,
    posterior_coefficients,
    q_posterior,
    q_sample,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from .guidance import classifier_free_guidance
from .losses import edm_loss, edm_loss_weight, sample_log_normal_sigmas, sample_timesteps, x0_mse_loss
from .noise import randn
from .preconditioning import edm_denoise, edm_preconditioning
from .schedules import (
    alpha_bar_from_sigma,
    alpha_bars,
    alpha_bars_prev,
    betas_from_alpha_bars,
    cosine_betas,
    karras_sigmas,
    linear_betas,
    sigma_to_t,
    spaced_timesteps,
    t_to_sigma,
    vp_sigma_range,
    vp_sigmas,
)
from .vp_adapter import vp_denoiser_as_sigma_denoiser

__all__ = [
    "append_dims", "as_coef", "randn",
    "linear_betas", "cosine_betas", "alpha_bars", "alpha_bars_prev", "betas_from_alpha_bars",
    "vp_sigmas", "alpha_bar_from_sigma", "vp_sigma_range", "karras_sigmas", "spaced_timesteps",
    "sigma_to_t", "t_to_sigma",
    "q_sample", "eps_from_x0", "x0_from_eps", "v_from_x0_eps", "v_from_x0", "x0_from_v", "eps_from_v",
    "posterior_coefficients", "q_posterior",
    "edm_preconditioning", "edm_denoise",
    "x0_mse_loss", "edm_loss_weight", "edm_loss", "sample_log_normal_sigmas", "sample_timesteps",
    "classifier_free_guidance",
    "sample_ddpm", "sample_ddim", "sample_euler", "sample_heun", "churn_gamma",
    "vp_denoiser_as_sigma_denoiser",
]
