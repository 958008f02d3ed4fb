"""The forward (noising) process and the conversions between model parameterisations.

With x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (DDPM eq. 4), any one of x0, eps and
v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022, sec. 4) determines the other two given x_t,
so a network may predict whichever trains best and the samplers still receive x0.

Conventions: ``t`` is a (B,) int64 0-based timestep, ``alpha_bars`` the (T,) schedule, and
``alpha_bar`` a per-sample (B,) value (``alpha_bars[t]``, or 1 / (1 + sigma^2) for continuous sigma).
Data tensors are (B, C, H, W) or (B, C, D, H, W). Keep ``alpha_bars`` on the data's device (e.g. a
registered buffer) in training loops; otherwise each call copies it there.
"""

from __future__ import annotations

from typing import Tuple

from torch import Tensor

from .broadcast import as_coef
from .schedules import alpha_bars_prev, betas_from_alpha_bars


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
    """v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022): the v-prediction training target."""
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


def posterior_coefficients(alpha_bars: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Coefficients of q(x_{t-1} | x_t, x0) = N(c_x0 x0 + c_xt x_t, beta_tilde I) (DDPM eqs. 6-7).

    c_x0 = sqrt(ab_prev) beta / (1 - ab), c_xt = sqrt(alpha) (1 - ab_prev) / (1 - ab),
    beta_tilde = (1 - ab_prev) / (1 - ab) beta; at t = 0, ab_prev = 1 so the posterior is x0 exactly.
    Returns:
        (c_x0, c_xt, beta_tilde), each (T,) in alpha_bars' dtype.
    """
    ab_prev = alpha_bars_prev(alpha_bars)
    betas = betas_from_alpha_bars(alpha_bars)
    c_x0 = ab_prev.sqrt() * betas / (1 - alpha_bars)
    c_xt = (1 - betas).sqrt() * (1 - ab_prev) / (1 - alpha_bars)
    beta_tilde = (1 - ab_prev) / (1 - alpha_bars) * betas
    return c_x0, c_xt, beta_tilde


def q_posterior(x0: Tensor, x_t: Tensor, t: Tensor, alpha_bars: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0) (DDPM eqs. 6-7).

    Args:
        x0, x_t: (B, ...).  t: (B,) int64.  alpha_bars: (T,).
    Returns:
        mean (B, ...) and variance (B, 1, ..., 1).
    """
    c_x0, c_xt, beta_tilde = (c.to(t.device)[t] for c in posterior_coefficients(alpha_bars))
    mean = as_coef(c_x0, x_t) * x0 + as_coef(c_xt, x_t) * x_t
    return mean, as_coef(beta_tilde, x_t)
