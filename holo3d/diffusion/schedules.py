"""Noise schedules as pure functions, all computed in float64.

Discrete (DDPM, Ho et al. 2020) schedules are indexed by the 0-based timestep ``t`` in [0, T-1]:
``alpha_bars[t]`` is the paper's alpha_bar_{t+1}. The continuous (EDM, Karras et al. 2022) view writes
the same process as x_sigma = x0 + sigma * n; a VP state x_t = sqrt(ab) x0 + sqrt(1 - ab) eps is
x_sigma * sqrt(ab) with sigma = sqrt((1 - ab) / ab), which is what lets one model serve both.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import torch
from torch import Tensor


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
    one = alpha_bars.new_ones(1)
    return torch.cat([one, alpha_bars[:-1]])


def betas_from_alpha_bars(alpha_bars: Tensor) -> Tensor:
    """Invert ``alpha_bars``: beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}. (T,) -> (T,)."""
    return 1 - alpha_bars / alpha_bars_prev(alpha_bars)


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
    i = torch.arange(n, dtype=torch.float64)
    frac = i / max(n - 1, 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + frac * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def spaced_timesteps(num_train_steps: int, steps: int) -> Tensor:
    """``steps`` evenly spaced timesteps from T-1 down to 0, both included (DDIM's sub-sequence tau).

    Including T-1 matters: starting lower than the last training step would start from pure noise
    at a noise level the model believes is smaller. Returns (steps,) int64, strictly decreasing.
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"spaced_timesteps: steps must be in [1, {num_train_steps}], got {steps}")
    grid = torch.linspace(num_train_steps - 1, 0, steps, dtype=torch.float64)
    return torch.floor(grid + 0.5).long()


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
