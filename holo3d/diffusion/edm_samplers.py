"""EDM samplers in sigma-space (Karras et al. 2022, Algorithm 2): Heun (2nd order) and Euler.

The state is x = x0 + sigma n and the probability-flow ODE is dx/dsigma = (x - D(x; sigma)) / sigma
(EDM eq. 3 with sigma(t) = t). Optional stochastic "churn" first raises the noise level of the state
from sigma_i to sigma_hat = (1 + gamma) sigma_i by adding fresh noise, then integrates back down.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from ._sampling import Callback, DenoiseFn, call_denoiser, initial_state, level_vector
from .noise import randn


def churn_gamma(sigma: float, num_steps: int, S_churn: float, S_tmin: float, S_tmax: float) -> float:
    """gamma_i of Algorithm 2: min(S_churn / N, sqrt(2) - 1) inside [S_tmin, S_tmax], else 0.

    The sqrt(2) - 1 cap keeps the added noise from exceeding the noise already in the state.
    """
    if S_churn <= 0 or not S_tmin <= sigma <= S_tmax:
        return 0.0
    return min(S_churn / num_steps, math.sqrt(2) - 1)


def _ode_slope(
    denoise_fn: DenoiseFn, x: Tensor, sigma: float, cond, model_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(d, x0): d = (x - D(x; sigma)) / sigma, the ODE slope dx/dsigma (Algorithm 2 lines 7/10)."""
    x0 = call_denoiser(denoise_fn, x, level_vector(sigma, x), cond, model_dtype)
    return (x - x0) / sigma, x0


def _sample_edm(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    second_order: bool,
    S_churn: float,
    S_tmin: float,
    S_tmax: float,
    S_noise: float,
    generator: Optional[torch.Generator],
    device: Optional[torch.device | str],
    dtype: Optional[torch.dtype],
    callback: Optional[Callback],
    cond: Optional[Mapping],
    noise: Optional[Tensor],
) -> Tensor:
    """Algorithm 2 of EDM; ``second_order=False`` drops the Heun correction (Euler)."""
    levels = sigmas.to(torch.float64).cpu().tolist()
    num_steps = len(levels) - 1
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    x = x * levels[0]
    for i in range(num_steps):
        sigma, sigma_next = levels[i], levels[i + 1]
        gamma = churn_gamma(sigma, num_steps, S_churn, S_tmin, S_tmax)
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # lines 5-6: raise the noise level to sigma_hat with fresh noise
            z = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + (sigma_hat**2 - sigma**2) ** 0.5 * S_noise * z
        d, x0 = _ode_slope(denoise_fn, x, sigma_hat, cond, out_dtype)
        x_next = x + (sigma_next - sigma_hat) * d  # line 8: Euler step
        if second_order and sigma_next > 0:  # lines 9-11: trapezoidal (Heun) correction
            d_next, _ = _ode_slope(denoise_fn, x_next, sigma_next, cond, out_dtype)
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)


@torch.no_grad()
def sample_heun(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = float("inf"),
    S_noise: float = 1.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """EDM Heun sampler with optional churn (Algorithm 2); 2N - 1 denoiser calls for N steps.

    Args:
        denoise_fn: ``denoise_fn(x (B, ...), sigma (B,) float, **cond) -> x0 (B, ...)``,
            for x = x0 + sigma n.
        shape: (B, C, H, W) or (B, C, D, H, W).
        sigmas: (N + 1,) decreasing noise levels ending in 0, e.g. ``karras_sigmas``.
        dtype: denoiser input / output dtype; the state stays in at least float32.
        S_churn, S_tmin, S_tmax, S_noise: EDM's stochasticity settings (S_churn = 0: deterministic).
        callback: ``callback(i, x_{i+1}, x0_hat)`` after each of the N steps.
        noise: optional (B, ...) standard normal; the start is noise * sigmas[0].
    Returns:
        sample at sigma = sigmas[-1], (B, ...).
    """
    return _sample_edm(
        denoise_fn, shape, sigmas, second_order=True, S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax,
        S_noise=S_noise, generator=generator, device=device, dtype=dtype, callback=callback,
        cond=cond, noise=noise,
    )


@torch.no_grad()
def sample_euler(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = float("inf"),
    S_noise: float = 1.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """EDM Algorithm 2 without the Heun correction: first order, N denoiser calls for N steps.

    Same arguments and return as ``sample_heun``.
    """
    return _sample_edm(
        denoise_fn, shape, sigmas, second_order=False, S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax,
        S_noise=S_noise, generator=generator, device=device, dtype=dtype, callback=callback,
        cond=cond, noise=noise,
    )
