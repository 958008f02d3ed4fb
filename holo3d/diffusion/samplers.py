"""The samplers: DDPM and DDIM over VP timesteps; Euler, Heun and DPM-Solver++(2M) over sigmas.

Every sampler calls ``denoise_fn(x, t_or_sigma, **cond) -> x0`` with x (B, ...) and a (B,) level:
an int64 timestep for the VP samplers, a float sigma for the sigma-space ones (x = x0 + sigma n). They
share the keywords ``generator``, ``device``, ``dtype``, ``callback(i, x, x0)`` (after each step),
``cond`` (passed to the denoiser) and ``noise`` (a fixed standard-normal start). Models normally reach
them by name through ``holo3d.diffusion.sample`` (registry.py), which also maps VP models onto the
sigma-space samplers.

Precision: ``dtype`` is what the denoiser receives and the sample is returned in; the sampler's own
state stays in at least float32. A 1000-step chain adds many small increments to x, and in bf16
(8-bit mantissa) their rounding drifts the sample mean by about 0.01 on unit-scale data.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .schedules import posterior_coefficients, randn, spaced_timesteps

#: ``denoise_fn(x (B, ...), t_or_sigma (B,), **cond) -> x0 (B, ...)``
DenoiseFn = Callable[..., Tensor]
#: ``callback(step_index, x (B, ...), x0 (B, ...))``, called once per sampler step.
Callback = Callable[[int, Tensor, Tensor], None]

# ----------------------------------------------------------------------------- shared pieces


def initial_state(shape, noise, generator, device, dtype) -> Tuple[Tensor, torch.dtype]:
    """Standard-normal start (the caller's ``noise`` or a fresh draw) and the output dtype.

    Returns:
        x: (B, ...) in the state dtype (output dtype promoted to >= float32); the output dtype.
    """
    if noise is not None and tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    out_dtype = dtype or (noise.dtype if noise is not None else torch.float32)
    state_dtype = torch.promote_types(out_dtype, torch.float32)
    if noise is not None:
        return noise.to(device=device or noise.device, dtype=state_dtype), out_dtype
    return randn(shape, generator=generator, device=device, dtype=state_dtype), out_dtype


def level_vector(value: float, x: Tensor, integer: bool = False) -> Tensor:
    """One timestep / sigma per sample, (B,): int64 timesteps, or float sigmas in x's state dtype."""
    if integer:
        return torch.full((x.shape[0],), int(value), device=x.device, dtype=torch.long)
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)


def call_denoiser(fn: DenoiseFn, x: Tensor, level: Tensor, cond: Optional[Mapping], model_dtype) -> Tensor:
    """x0 = fn(x in model_dtype, level, **cond), returned in x's (state) dtype. (B, ...)."""
    return fn(x.to(model_dtype), level, **(cond or {})).to(x.dtype)


def _noise_like(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ----------------------------------------------------------------------------- VP samplers


@torch.no_grad()
def sample_ddpm(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    alpha_bars: Tensor,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """Ancestral DDPM over all T steps (Ho et al. 2020, Algorithm 2) for an x0-denoiser.

    Each step predicts x0 at (x_t, t) and draws x_{t-1} from q(x_{t-1} | x_t, x0_hat) (DDPM eqs. 6-7)
    with the variance beta_tilde, the choice HoloDiffusion samples with.
    Args:
        shape: (B, C, H, W) or (B, C, D, H, W).  alpha_bars: (T,) the training schedule.
    Returns:
        x_0 sample, (B, ...); ``callback(i, x_{t-1}, x0_hat)`` runs after each of the T steps.
    """
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    c_x0, c_xt, beta_tilde = (c.tolist() for c in posterior_coefficients(alpha_bars.cpu()))
    for i, t in enumerate(range(len(c_x0) - 1, -1, -1)):
        x0 = call_denoiser(denoise_fn, x, level_vector(t, x, integer=True), cond, out_dtype)
        x = c_x0[t] * x0 + c_xt[t] * x  # posterior mean, DDPM eq. 7
        if t > 0:  # beta_tilde = 0 at t = 0: the last step returns the mean (= x0_hat)
            x = x + beta_tilde[t] ** 0.5 * _noise_like(x, generator)
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)


def ddim_coefficients(ab_t: float, ab_prev: float, eta: float) -> Tuple[float, float]:
    """(sigma_t, c_eps) of Song et al. 2021 eq. 12/16 for one step t -> prev:

    sigma_t = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev), and the "direction
    pointing to x_t" coefficient c_eps = sqrt(1 - ab_prev - sigma_t^2).
    """
    sigma_t = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) ** 0.5
    c_eps = max(1 - ab_prev - sigma_t**2, 0.0) ** 0.5
    return sigma_t, c_eps


@torch.no_grad()
def sample_ddim(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    alpha_bars: Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    timesteps: Optional[Sequence[int]] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) over a decreasing sub-sequence tau of the T timesteps.

    eta = 0 is deterministic; eta = 1 with all T steps reproduces ancestral DDPM (sigma_t^2 then
    equals beta_tilde). tau is ``timesteps`` if given, else ``steps`` timesteps evenly spaced from T-1
    to 0; after its last entry the chain lands on alpha_bar = 1 (clean data).
    Returns the x_0 sample (B, ...); ``callback(i, x_prev, x0_hat)`` after each step.
    """
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    ab = alpha_bars.to(torch.float64).cpu().tolist()
    tau = list(timesteps) if timesteps is not None else spaced_timesteps(len(ab), steps).tolist()
    for i, t in enumerate(tau):
        x0 = call_denoiser(denoise_fn, x, level_vector(t, x, integer=True), cond, out_dtype)
        ab_t = ab[t]
        ab_prev = ab[tau[i + 1]] if i + 1 < len(tau) else 1.0
        eps = (x - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5
        sigma_t, c_eps = ddim_coefficients(ab_t, ab_prev, eta)
        x = ab_prev**0.5 * x0 + c_eps * eps  # Song et al. eq. 12
        if sigma_t > 0:
            x = x + sigma_t * _noise_like(x, generator)
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)


# ----------------------------------------------------------------------------- sigma-space samplers


def churn_gamma(sigma: float, num_steps: int, S_churn: float, S_tmin: float, S_tmax: float) -> float:
    """gamma_i of EDM Algorithm 2: min(S_churn / N, sqrt(2) - 1) inside [S_tmin, S_tmax], else 0.

    The sqrt(2) - 1 cap keeps the added noise from exceeding the noise already in the state.
    """
    if S_churn <= 0 or not S_tmin <= sigma <= S_tmax:
        return 0.0
    return min(S_churn / num_steps, math.sqrt(2) - 1)


def _ode_slope(denoise_fn, x: Tensor, sigma: float, cond, model_dtype) -> Tuple[Tensor, Tensor]:
    """(d, x0): d = (x - D(x; sigma)) / sigma, the ODE slope dx/dsigma (EDM eq. 3; Alg. 2 lines 7/10)."""
    x0 = call_denoiser(denoise_fn, x, level_vector(sigma, x), cond, model_dtype)
    return (x - x0) / sigma, x0


def _sample_edm(denoise_fn, shape, sigmas, *, second_order, S_churn, S_tmin, S_tmax, S_noise,
                generator, device, dtype, callback, cond, noise) -> Tensor:
    """EDM Algorithm 2 (Heun with churn); ``second_order=False`` drops the correction (Euler)."""
    levels = sigmas.to(torch.float64).cpu().tolist()
    num_steps = len(levels) - 1
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    x = x * levels[0]
    for i in range(num_steps):
        sigma, sigma_next = levels[i], levels[i + 1]
        gamma = churn_gamma(sigma, num_steps, S_churn, S_tmin, S_tmax)
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # lines 5-6: raise the noise level to sigma_hat with fresh noise
            x = x + (sigma_hat**2 - sigma**2) ** 0.5 * S_noise * _noise_like(x, generator)
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
    """EDM Heun sampler with optional churn (Karras et al. 2022, Algorithm 2); 2N - 1 calls for N steps.

    Args:
        denoise_fn: ``denoise_fn(x, sigma (B,) float, **cond) -> x0`` for x = x0 + sigma n.
        sigmas: (N + 1,) decreasing noise levels ending in 0, e.g. ``karras_sigmas``.
        S_churn, S_tmin, S_tmax, S_noise: EDM's stochasticity settings (S_churn = 0: deterministic).
        noise: optional (B, ...) standard normal; the start is noise * sigmas[0].
    Returns:
        sample at sigma = sigmas[-1], (B, ...); ``callback(i, x_{i+1}, x0_hat)`` after each step.
    """
    return _sample_edm(denoise_fn, shape, sigmas, second_order=True, S_churn=S_churn, S_tmin=S_tmin,
                       S_tmax=S_tmax, S_noise=S_noise, generator=generator, device=device, dtype=dtype,
                       callback=callback, cond=cond, noise=noise)


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
    return _sample_edm(denoise_fn, shape, sigmas, second_order=False, S_churn=S_churn, S_tmin=S_tmin,
                       S_tmax=S_tmax, S_noise=S_noise, generator=generator, device=device, dtype=dtype,
                       callback=callback, cond=cond, noise=noise)


@torch.no_grad()
def sample_dpmpp_2m(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), written in sigma space; N calls for N steps.

    With alpha = 1 and lambda = -log(sigma), the exact solution of the probability-flow ODE over one
    step of h = lambda_{i+1} - lambda_i, with x0 held at D, is (their first-order solver, = DDIM)
        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D.
    The multistep second-order method uses D = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h_i,
    a linear extrapolation of x0 in lambda from the previous step's estimate (no extra call). The
    first step has no history and the last (to sigma = 0, h infinite) returns D_i: both first order.
    Args and return as ``sample_euler`` (without churn).
    """
    levels = sigmas.to(torch.float64).cpu().tolist()
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    x = x * levels[0]
    x0_prev, h_prev = None, None
    for i in range(len(levels) - 1):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0 = call_denoiser(denoise_fn, x, level_vector(sigma, x), cond, out_dtype)
        if sigma_next == 0:
            x, h = x0, None
        else:
            h = math.log(sigma / sigma_next)
            d = x0
            if x0_prev is not None:
                half_inv_r = h / (2 * h_prev)  # 1 / (2r)
                d = (1 + half_inv_r) * x0 - half_inv_r * x0_prev
            x = (sigma_next / sigma) * x - math.expm1(-h) * d
        x0_prev, h_prev = x0, h
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)
