"""Noise schedules as pure functions (float64), broadcasting helpers and reproducible noise.

Discrete (DDPM, Ho et al. 2020) schedules are indexed by the 0-based timestep ``t`` in [0, T-1]:
``alpha_bars[t]`` is the paper's alpha_bar_{t+1}. The continuous (EDM, Karras et al. 2022) view writes
the same process as x_sigma = x0 + sigma * n; a VP state x_t = sqrt(ab) x0 + sqrt(1 - ab) eps is
x_sigma * sqrt(ab) with sigma = sqrt((1 - ab) / ab) (EDM sec. 2, App. C.1), which is what lets one model
serve both kinds of sampler.

Every per-sample quantity (t, sigma, alpha_bar) is kept as a (B,) vector and only given trailing
singleton dims at the point of use (``append_dims`` / ``as_coef``), so the same code serves 4-D images
(B, C, H, W) and 5-D grids (B, C, D, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

# ----------------------------------------------------------------------------- broadcasting / noise


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims to ``t`` until it has ``ndim`` dims: (B,) -> (B, 1, ..., 1)."""
    missing = ndim - t.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(*t.shape, *((1,) * missing))  # (B, 1, ..., 1)


def as_coef(c: Union[Tensor, float], x: Tensor) -> Tensor:
    """A coefficient ready to multiply ``x`` (B, ...): on x's device, in x's dtype, broadcastable.

    Schedules are kept in float64; casting here (after the coefficient has been computed in double)
    keeps float32/bf16 samplers from silently promoting their state to float64.
    Returns a 0-d tensor for a scalar ``c``, else (B, 1, ..., 1).
    """
    c = torch.as_tensor(c, device=x.device).to(x.dtype)
    return append_dims(c, x.ndim) if c.ndim else c


def randn(
    shape: Sequence[int],
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Standard normal ``shape`` tensor from ``generator`` (or the global RNG), on ``device``.

    Drawn on the generator's device and then moved, so a CPU-seeded generator gives identical
    samples whichever device the sampler runs on; drawn in at least float32, since bf16/fp16
    draws would differ from float32 ones for the same seed.
    """
    dtype = dtype or torch.float32
    draw_device = generator.device if generator is not None else device
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    z = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=draw_dtype)
    return z.to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------- VP (DDPM) schedules


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020, sec. 4). Returns (T,) float64."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17); betas capped to avoid a singular last step.

    Returns (T,) float64.
    """
    u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def alpha_bars(betas: Tensor) -> Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) (DDPM eq. 4 notation). (T,) -> (T,) float64."""
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def alpha_bars_prev(alpha_bars: Tensor) -> Tensor:
    """alpha_bar_{t-1} for every t; before the first step alpha_bar = 1 (clean data). (T,) -> (T,)."""
    return torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])


def betas_from_alpha_bars(alpha_bars: Tensor) -> Tensor:
    """Invert ``alpha_bars``: beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}. (T,) -> (T,)."""
    return 1 - alpha_bars / alpha_bars_prev(alpha_bars)


def spaced_timesteps(num_train_steps: int, steps: int) -> Tensor:
    """``steps`` evenly spaced timesteps from T-1 down to 0, both included (DDIM's sub-sequence tau).

    Including T-1 matters: starting lower than the last training step would start from pure noise
    at a noise level the model believes is smaller. Returns (steps,) int64, strictly decreasing.
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"spaced_timesteps: steps must be in [1, {num_train_steps}], got {steps}")
    grid = torch.linspace(num_train_steps - 1, 0, steps, dtype=torch.float64)
    return torch.floor(grid + 0.5).long()


def posterior_coefficients(alpha_bars: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Coefficients of q(x_{t-1} | x_t, x0) = N(c_x0 x0 + c_xt x_t, beta_tilde I) (DDPM eqs. 6-7).

    c_x0 = sqrt(ab_prev) beta / (1 - ab), c_xt = sqrt(alpha) (1 - ab_prev) / (1 - ab),
    beta_tilde = (1 - ab_prev) / (1 - ab) beta; at t = 0, ab_prev = 1 so the posterior is x0 exactly.
    Returns (c_x0, c_xt, beta_tilde), each (T,) in alpha_bars' dtype.
    """
    ab_prev = alpha_bars_prev(alpha_bars)
    betas = betas_from_alpha_bars(alpha_bars)
    c_x0 = ab_prev.sqrt() * betas / (1 - alpha_bars)
    c_xt = (1 - betas).sqrt() * (1 - ab_prev) / (1 - alpha_bars)
    beta_tilde = (1 - ab_prev) / (1 - alpha_bars) * betas
    return c_x0, c_xt, beta_tilde


# ----------------------------------------------------------------------------- sigma (EDM) view


def vp_sigmas(alpha_bars: Tensor) -> Tensor:
    """EDM noise level of each VP step: sigma = sqrt((1 - ab) / ab). (T,) -> (T,), increasing."""
    return ((1 - alpha_bars) / alpha_bars).sqrt()


def alpha_bar_from_sigma(sigma: Union[Tensor, float]) -> Union[Tensor, float]:
    """Inverse of ``vp_sigmas``: ab = 1 / (1 + sigma^2). Any shape."""
    return 1 / (1 + sigma**2)


def vp_sigma_range(alpha_bars: Tensor) -> Tuple[float, float]:
    """(sigma_min, sigma_max) spanned by a VP schedule, e.g. to build ``karras_sigmas`` for it."""
    sigmas = vp_sigmas(alpha_bars)
    return float(sigmas[0]), float(sigmas[-1])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM time steps (Karras et al. 2022, eq. 5) from sigma_max down to sigma_min, then 0.

    Returns:
        (n + 1,) float64, decreasing, last entry 0 (the sampler's final step lands on the data).
    """
    if n < 1:
        raise ValueError(f"karras_sigmas: need at least one step, got n={n}")
    frac = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + frac * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@dataclass(frozen=True)
class EDMSchedule:
    """A continuous sigma-space schedule: what sigma-space samplers need of an EDM-trained model.

    Passed as ``schedule`` to ``holo3d.diffusion.sample`` it says "the denoiser takes sigma", as a
    (T,) alpha_bar tensor says "the denoiser takes a VP timestep".
    """

    sigma_min: float = 0.002  # EDM Table 1
    sigma_max: float = 80.0
    rho: float = 7.0  # eq. 5: larger rho spends more steps at low noise

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"EDMSchedule: need 0 < sigma_min < sigma_max, got {self.sigma_min}, "
                             f"{self.sigma_max}")

    def sigmas(self, steps: int) -> Tensor:
        """Karras sigmas of this schedule, (steps + 1,) float64 ending in 0."""
        return karras_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)


def sigma_to_t(sigma: Tensor, alpha_bars: Tensor) -> Tensor:
    """Fractional DDPM timestep for a continuous sigma, interpolating linearly in log-sigma.

    Sigmas outside the schedule's range clamp to t = 0 or t = T-1.
    Args:
        sigma: any shape, >= 0.  alpha_bars: (T,).
    Returns:
        t of sigma's shape, float in [0, T-1] (sigma's dtype if floating).
    """
    log_sigmas = vp_sigmas(alpha_bars.to(sigma.device, torch.float64)).log()  # (T,) increasing
    q = sigma.to(torch.float64).clamp(min=1e-30).log()
    q = q.clamp(log_sigmas[0], log_sigmas[-1])
    low = (torch.searchsorted(log_sigmas, q, right=True) - 1).clamp(0, len(log_sigmas) - 2)
    w = (q - log_sigmas[low]) / (log_sigmas[low + 1] - log_sigmas[low])
    out_dtype = sigma.dtype if sigma.is_floating_point() else torch.float32
    return (low + w).to(out_dtype)


def t_to_sigma(t: Tensor, alpha_bars: Tensor) -> Tensor:
    """Continuous sigma at a (fractional) DDPM timestep; the inverse of ``sigma_to_t``.

    Args:
        t: any shape, in [0, T-1].  alpha_bars: (T,).
    Returns:
        sigma of t's shape (t's dtype if floating, else float32).
    """
    log_sigmas = vp_sigmas(alpha_bars.to(t.device, torch.float64)).log()  # (T,)
    t64 = t.to(torch.float64).clamp(0, len(log_sigmas) - 1)
    low = t64.floor().long().clamp(max=len(log_sigmas) - 2)
    w = t64 - low
    log_sigma = (1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]
    out_dtype = t.dtype if t.is_floating_point() else torch.float32
    return log_sigma.exp().to(out_dtype)


def alpha_bar_at(t: Tensor, alpha_bars: Tensor) -> Tensor:
    """alpha_bar for integer timesteps (indexed) or fractional ones (log-sigma interpolated).

    Fractional t is what the VP adapter hands a network when a sigma-space sampler drives it.
    Args:
        t: (B,) int64 or float.  alpha_bars: (T,).
    Returns:
        (B,) float64 on t's device.
    """
    if t.is_floating_point():
        return alpha_bar_from_sigma(t_to_sigma(t.to(torch.float64), alpha_bars))
    return alpha_bars.to(t.device, torch.float64)[t]
