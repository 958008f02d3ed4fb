"""holo3d.diffusion: the diffusion math only (torch / numpy), shared by every model.

Files, one concept each:
    schedules   append_dims / as_coef broadcasting, generator-reproducible ``randn``; beta / alpha_bar
                schedules, the DDPM posterior coefficients, Karras sigmas, ``EDMSchedule``, sigma <-> t
    process     q_sample, x0 / eps / v conversions, the DDPM posterior, losses and training draws,
                EDM preconditioning; ``VPDiffusion`` (prediction in x0 / eps / v, optional x0 clip)
                and ``EDMDiffusion`` (c_skip, c_out, c_in, c_noise; lambda(sigma); log-normal sigmas)
    guidance    classifier-free guidance, and a wrapper that batches cond / uncond in one call
    samplers    DDPM, DDIM (eta), Euler and Heun with churn (EDM Alg. 2), DPM-Solver++(2M)
    registry    ``SAMPLERS`` (the one list of sampler names) and ``sample(name, denoise_fn, shape,
                schedule, steps=None, ...)``, the entry point models call by name; the VP -> sigma
                adapter that lets a DDPM-trained model use the sigma-space samplers

Every sampler calls ``denoise_fn(x, t_or_sigma, **cond) -> x0`` with x (B, ...) and a (B,) timestep
(int64, VP samplers) or sigma (float, sigma-space samplers), and accepts ``callback(i, x, x0)``,
``generator``, ``device``, ``dtype``, ``cond`` and ``noise`` (a fixed starting draw). Networks that
predict eps or v, or need EDM preconditioning, become such a denoiser through
``VPDiffusion.denoiser`` / ``EDMDiffusion.denoiser``; x0 clipping lives there too (off by default,
as latents have no fixed range).

Shapes: B batch, C channels, H W image, D H W grid; data is (B, C, H, W) or (B, C, D, H, W).

Precision and devices: ``dtype`` is what the denoiser receives and the sample is returned in; the
sampler's own state stays in at least float32 (bf16 rounding over a 1000-step chain biases the
sample). Noise is drawn on the generator's device, so a CPU generator reproduces the same samples on
any device, while a generator on the sampling device avoids a host draw and copy every step (about
20x faster for a 1000-step DDPM of a (4, 64, 16, 16, 16) grid on an H200).
"""

from .guidance import classifier_free_guidance, guided_denoiser
from .process import (
    BETA_SCHEDULES,
    PREDICTIONS,
    EDMDiffusion,
    VPDiffusion,
    edm_denoise,
    edm_loss,
    edm_loss_weight,
    edm_preconditioning,
    eps_from_v,
    eps_from_x0,
    q_posterior,
    q_sample,
    sample_log_normal_sigmas,
    sample_timesteps,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
    x0_mse_loss,
)
from .registry import SAMPLERS, SamplerSpec, sample, sampler_spec, vp_denoiser_as_sigma_denoiser
from .samplers import churn_gamma, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_euler, sample_heun
from .schedules import (
    EDMSchedule,
    alpha_bar_at,
    alpha_bar_from_sigma,
    alpha_bars,
    alpha_bars_prev,
    append_dims,
    as_coef,
    betas_from_alpha_bars,
    cosine_betas,
    karras_sigmas,
    linear_betas,
    posterior_coefficients,
    randn,
    sigma_to_t,
    spaced_timesteps,
    t_to_sigma,
    vp_sigma_range,
    vp_sigmas,
)

__all__ = [
    # schedules
    "append_dims", "as_coef", "randn",
    "linear_betas", "cosine_betas", "alpha_bars", "alpha_bars_prev", "betas_from_alpha_bars",
    "posterior_coefficients", "spaced_timesteps",
    "vp_sigmas", "alpha_bar_from_sigma", "vp_sigma_range", "karras_sigmas", "EDMSchedule",
    "sigma_to_t", "t_to_sigma", "alpha_bar_at",
    # process
    "q_sample", "eps_from_x0", "x0_from_eps", "v_from_x0_eps", "v_from_x0", "x0_from_v", "eps_from_v",
    "q_posterior", "x0_mse_loss", "sample_timesteps",
    "edm_preconditioning", "edm_denoise", "edm_loss_weight", "edm_loss", "sample_log_normal_sigmas",
    "PREDICTIONS", "BETA_SCHEDULES", "VPDiffusion", "EDMDiffusion",
    # guidance
    "classifier_free_guidance", "guided_denoiser",
    # samplers and their registry
    "sample_ddpm", "sample_ddim", "sample_euler", "sample_heun", "sample_dpmpp_2m", "churn_gamma",
    "vp_denoiser_as_sigma_denoiser", "SAMPLERS", "SamplerSpec", "sampler_spec", "sample",
]
