"""The forward process, parameterisations and losses: VP (DDPM) and EDM.

VP: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (DDPM eq. 4). Any one of x0, eps and
v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022, sec. 4) determines the other two given x_t, so
a network may predict whichever trains best (``VPDiffusion.prediction``) and the samplers still
receive x0 through ``VPDiffusion.denoiser``.

EDM (Karras et al. 2022): x = x0 + sigma n, and the denoiser D(x; sigma) = c_skip x + c_out
F(c_in x, c_noise) (eq. 7, Table 1) is built so that the raw network F sees unit-variance inputs and
regresses a unit-variance target at every sigma.

Conventions: ``t`` is a (B,) int64 0-based timestep, ``alpha_bars`` the (T,) schedule and
``alpha_bar`` a per-sample (B,) value. Data tensors are (B, C, H, W) or (B, C, D, H, W). Losses are per
sample, (B,), so callers can mask or re-weight before averaging.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .registry import DenoiseFn, sample
from .schedules import (
    EDMSchedule,
    alpha_bar_at,
    alpha_bars,
    as_coef,
    cosine_betas,
    linear_betas,
    posterior_coefficients,
    randn,
)

PREDICTIONS = ("x0", "eps", "v")
BETA_SCHEDULES = ("linear", "cosine")

# ----------------------------------------------------------------------------- VP forward process


def q_sample(x0: Tensor, t: Tensor, alpha_bars: Tensor, noise: Tensor) -> Tensor:
    """Sample q(x_t | x0) = N(sqrt(ab_t) x0, (1 - ab_t) I) (DDPM eq. 4).

    Args:
        x0: (B, ...) clean data.  t: (B,) int64.  alpha_bars: (T,).  noise: (B, ...) standard normal.
    Returns:
        x_t: (B, ...).
    """
    ab = alpha_bars.to(t.device)[t]  # (B,)
    return as_coef(ab.sqrt(), x0) * x0 + as_coef((1 - ab).sqrt(), x0) * noise


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: Tensor) -> Tensor:
    """eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab). Shapes (B, ...), alpha_bar (B,)."""
    return (x_t - as_coef(alpha_bar.sqrt(), x_t) * x0) / as_coef((1 - alpha_bar).sqrt(), x_t)


def x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) (DDPM eq. 4 solved for x0)."""
    return (x_t - as_coef((1 - alpha_bar).sqrt(), x_t) * eps) / as_coef(alpha_bar.sqrt(), x_t)


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022, sec. 4): the v-prediction target."""
    return as_coef(alpha_bar.sqrt(), x0) * eps - as_coef((1 - alpha_bar).sqrt(), x0) * x0


def v_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: Tensor) -> Tensor:
    """v implied by an x0 prediction at x_t: v = (sqrt(ab) x_t - x0) / sqrt(1 - ab)."""
    return (as_coef(alpha_bar.sqrt(), x_t) * x_t - x0) / as_coef((1 - alpha_bar).sqrt(), x_t)


def x0_from_v(x_t: Tensor, v: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = sqrt(ab) x_t - sqrt(1 - ab) v (rotation of (x0, eps) by the angle atan(sqrt((1-ab)/ab)))."""
    return as_coef(alpha_bar.sqrt(), x_t) * x_t - as_coef((1 - alpha_bar).sqrt(), x_t) * v


def eps_from_v(x_t: Tensor, v: Tensor, alpha_bar: Tensor) -> Tensor:
    """eps = sqrt(1 - ab) x_t + sqrt(ab) v."""
    return as_coef((1 - alpha_bar).sqrt(), x_t) * x_t + as_coef(alpha_bar.sqrt(), x_t) * v


def q_posterior(x0: Tensor, x_t: Tensor, t: Tensor, alpha_bars: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean (B, ...) and variance (B, 1, ..., 1) of q(x_{t-1} | x_t, x0) (DDPM eqs. 6-7)."""
    c_x0, c_xt, beta_tilde = (c.to(t.device)[t] for c in posterior_coefficients(alpha_bars))
    mean = as_coef(c_x0, x_t) * x0 + as_coef(c_xt, x_t) * x_t
    return mean, as_coef(beta_tilde, x_t)


# ----------------------------------------------------------------------------- losses and draws


def _per_sample_mean(err: Tensor) -> Tensor:
    """(B, ...) -> (B,) mean over everything but the batch dim."""
    return err.reshape(err.shape[0], -1).mean(dim=1)  # (B, C*H*W or C*D*H*W)


def x0_mse_loss(x0_pred: Tensor, x0: Tensor) -> Tensor:
    """|| x0_pred - x0 ||^2 averaged per sample (DDPM's "simple" loss in x0 form). (B, ...) -> (B,)."""
    return _per_sample_mean((x0_pred - x0) ** 2)


def sample_timesteps(
    batch_size: int,
    num_steps: int,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """Training timesteps t ~ U{0, ..., T-1} (DDPM Algorithm 1). Returns (B,) int64."""
    draw_device = generator.device if generator is not None else device
    t = torch.randint(0, num_steps, (batch_size,), generator=generator, device=draw_device)
    return t.to(device)


def edm_loss_weight(sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (EDM Table 1), = 1 / c_out^2. Shape of sigma."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoised: Tensor, x0: Tensor, sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """EDM eq. 2 with the Table 1 weighting: lambda(sigma) || D(x0 + sigma n; sigma) - x0 ||^2.

    With the preconditioning, lambda c_out^2 = 1: a unit-weight MSE on the raw network (eq. 8).
    Args: denoised, x0 (B, ...); sigma (B,). Returns (B,).
    """
    weight = as_coef(edm_loss_weight(sigma, sigma_data), x0)
    return _per_sample_mean(weight * (denoised - x0) ** 2)


def sample_log_normal_sigmas(
    batch_size: int,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """Training noise levels ln(sigma) ~ N(P_mean, P_std^2) (EDM Table 1). Returns (B,) float32."""
    z = randn((batch_size,), generator=generator, device=device)
    return (P_mean + P_std * z).exp()


# ----------------------------------------------------------------------------- EDM preconditioning


def edm_preconditioning(sigma: Tensor, sigma_data: float = 0.5) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) for each sigma (EDM Table 1, "Ours").

    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4, with sd = sigma_data. Shapes of sigma.
    """
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_denoise(
    raw_fn: Callable[..., Tensor], x: Tensor, sigma: Tensor, sigma_data: float = 0.5, **cond
) -> Tensor:
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) (EDM eq. 7).

    Args:
        raw_fn: the network F(x_in (B, ...), c_noise (B,), **cond) -> (B, ...).
        x: (B, ...) noisy input x0 + sigma n.  sigma: (B,).
    Returns:
        x0 estimate (B, ...).
    """
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data)
    f = raw_fn(as_coef(c_in, x) * x, c_noise, **cond)
    return as_coef(c_skip, x) * x + as_coef(c_out, x) * f


# ----------------------------------------------------------------------------- the two processes


def _clip(x0: Tensor, clip_x0: Optional[float]) -> Tensor:
    """x0 clamped to [-clip_x0, clip_x0], or unchanged for None (latents have no fixed range)."""
    return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)


class VPDiffusion:
    """A DDPM (VP) process: its (T,) alpha_bar schedule, the network's parameterisation and x0 clip.

    Args:
        num_steps: T.  beta_schedule: one of ``BETA_SCHEDULES`` (beta_start / beta_end: linear only).
        prediction: what the network outputs, one of ``PREDICTIONS``.
        clip_x0: clamp x0 estimates to [-clip_x0, clip_x0] (data in a known range, e.g. 1.0 for
            grids in [-1, 1]); None for latents.
    """

    def __init__(
        self,
        num_steps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction: str = "x0",
        clip_x0: Optional[float] = None,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"VPDiffusion: prediction={prediction!r}, expected one of {PREDICTIONS}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"VPDiffusion: beta_schedule={beta_schedule!r}, expected one of "
                             f"{BETA_SCHEDULES}")
        if num_steps < 1:
            raise ValueError(f"VPDiffusion: num_steps={num_steps} must be >= 1")
        if beta_schedule == "linear":
            betas = linear_betas(num_steps, beta_start, beta_end)
        else:
            betas = cosine_betas(num_steps)
        self.num_steps, self.prediction, self.clip_x0 = num_steps, prediction, clip_x0
        self.alpha_bars = alpha_bars(betas)  # (T,) float64 on the CPU
        self._on_device: Dict[torch.device, Tensor] = {}

    def schedule(self, device: Optional[torch.device | str] = None) -> Tensor:
        """The (T,) float64 alpha_bars on ``device``, cached per device (no copy every step)."""
        if device is None:
            return self.alpha_bars
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = self.alpha_bars.to(device)
        return self._on_device[device]

    def sample_t(self, n: int, device=None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Training timesteps t ~ U{0, ..., T-1}, (n,) int64."""
        return sample_timesteps(n, self.num_steps, generator=generator, device=device)

    def noise(self, x0: Tensor, t: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """x_t ~ q(x_t | x0) (DDPM eq. 4); ``noise`` (B, ...) defaults to a global-RNG draw."""
        noise = torch.randn_like(x0) if noise is None else noise
        return q_sample(x0, t, self.schedule(x0.device), noise)

    def clip(self, x0: Tensor) -> Tensor:
        """x0 clamped to [-clip_x0, clip_x0] (unchanged when clip_x0 is None)."""
        return _clip(x0, self.clip_x0)

    def to_x0(self, model_out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """x0 estimate (clipped if set) from the network's output in this parameterisation.

        t: (B,) int64, or float for the fractional timesteps of sigma-space samplers. The clip stops
        gradients outside the range: train on ``loss`` (the parameterisation's own target) instead.
        """
        if self.prediction == "x0":
            return self.clip(model_out)
        ab = alpha_bar_at(t, self.schedule(t.device))  # (B,) float64
        convert = x0_from_eps if self.prediction == "eps" else x0_from_v
        return self.clip(convert(x_t, model_out, ab))

    def training_target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """What the network regresses at (x_t = q_sample(x0, t, eps), t): x0, eps or v. (B, ...)."""
        if self.prediction == "x0":
            return x0
        if self.prediction == "eps":
            return eps
        return v_from_x0_eps(x0, eps, self.schedule(t.device)[t])

    def loss(self, model_out: Tensor, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Per-sample MSE of the network output against ``training_target`` (DDPM eq. 14). (B,)."""
        return _per_sample_mean((model_out - self.training_target(x0, eps, t)) ** 2)

    def denoiser(self, model_fn: Callable[..., Tensor]) -> DenoiseFn:
        """``model_fn(x_t, t, **cond) -> output`` as the samplers' ``denoise_fn(x_t, t, **cond) -> x0``."""
        return lambda x_t, t, **cond: self.to_x0(model_fn(x_t, t, **cond), x_t, t)

    def sample(self, sampler: str, model_fn: Callable[..., Tensor], shape, steps=None, **kwargs) -> Tensor:
        """``holo3d.diffusion.sample`` with this schedule and ``model_fn`` through ``denoiser``."""
        return sample(sampler, self.denoiser(model_fn), shape, self.alpha_bars, steps=steps, **kwargs)


class EDMDiffusion:
    """An EDM process (Karras et al. 2022, Table 1): preconditioning, training sigmas, loss, schedule.

    Args:
        sigma_data: data std the preconditioning assumes (0.5 for images in [-1, 1]).
        sigma_min / sigma_max / rho: the sampling schedule (eq. 5).
        P_mean / P_std: training ln(sigma) ~ N(P_mean, P_std^2).
        clip_x0: clamp D's output to [-clip_x0, clip_x0]; None for latents.
    """

    def __init__(
        self,
        sigma_data: float = 0.5,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        P_mean: float = -1.2,
        P_std: float = 1.2,
        clip_x0: Optional[float] = None,
    ):
        if sigma_data <= 0:
            raise ValueError(f"EDMDiffusion: sigma_data={sigma_data} must be > 0")
        self.sigma_data, self.P_mean, self.P_std, self.clip_x0 = sigma_data, P_mean, P_std, clip_x0
        self.sigma_schedule = EDMSchedule(sigma_min, sigma_max, rho)

    def sample_sigma(self, n: int, device=None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Training noise levels, log-normal (EDM Table 1). (n,) float32."""
        return sample_log_normal_sigmas(n, self.P_mean, self.P_std, generator=generator, device=device)

    def noise(self, x0: Tensor, sigma: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """x = x0 + sigma n (EDM eq. 2's noised input). x0 (B, ...), sigma (B,) -> (B, ...)."""
        noise = torch.randn_like(x0) if noise is None else noise
        return x0 + as_coef(sigma, x0) * noise

    def denoiser(self, raw_fn: Callable[..., Tensor]) -> DenoiseFn:
        """The raw network F(c_in x, c_noise, **cond) as ``denoise_fn(x, sigma, **cond) -> x0`` (eq. 7).

        The clip (if set) is for sampling; train on ``edm_denoise`` so that no gradient is cut.
        """

        def denoise_fn(x: Tensor, sigma: Tensor, **cond) -> Tensor:
            return _clip(edm_denoise(raw_fn, x, sigma, self.sigma_data, **cond), self.clip_x0)

        return denoise_fn

    def loss(self, denoised: Tensor, x0: Tensor, sigma: Tensor) -> Tensor:
        """lambda(sigma)-weighted x0 MSE per sample (EDM eq. 2 / Table 1). (B,)."""
        return edm_loss(denoised, x0, sigma, self.sigma_data)

    def sample(self, sampler: str, raw_fn: Callable[..., Tensor], shape, steps=None, **kwargs) -> Tensor:
        """``holo3d.diffusion.sample`` with this schedule and ``raw_fn`` through ``denoiser``."""
        return sample(sampler, self.denoiser(raw_fn), shape, self.sigma_schedule, steps=steps, **kwargs)
