"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), written for an x0-predicting denoiser.

Each step predicts x0 at (x_t, t) and draws x_{t-1} from the posterior q(x_{t-1} | x_t, x0_hat)
(DDPM eqs. 6-7) with the variance beta_tilde, the choice HoloDiffusion samples with.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from ._sampling import Callback, DenoiseFn, call_denoiser, initial_state, level_vector
from .forward_process import posterior_coefficients
from .noise import randn


@torch.no_grad()
def sample_ddpm(
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    alpha_bars: Tensor,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    clip_x0: bool = True,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """Sample with all T steps of the DDPM reverse chain.

    Args:
        denoise_fn: ``denoise_fn(x_t (B, ...), t (B,) int64, **cond) -> x0 (B, ...)``.
        shape: (B, C, H, W) or (B, C, D, H, W).
        alpha_bars: (T,) schedule the denoiser was trained with.
        dtype: what the denoiser receives and the sample is returned in (the chain's own state
            is kept in at least float32).
        clip_x0: clamp predicted x0 to [-1, 1] (data range) before the posterior step.
        callback: ``callback(i, x_{t-1}, x0_hat)`` after each of the T steps, i = 0..T-1.
        noise: optional (B, ...) standard-normal x_T instead of a draw from ``generator``.
    Returns:
        x_0 sample, (B, ...).
    """
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    c_x0, c_xt, beta_tilde = (c.tolist() for c in posterior_coefficients(alpha_bars.cpu()))
    num_steps = len(c_x0)
    for i, t in enumerate(range(num_steps - 1, -1, -1)):
        x0 = call_denoiser(denoise_fn, x, level_vector(t, x, integer=True), cond, out_dtype)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        x = c_x0[t] * x0 + c_xt[t] * x  # posterior mean, DDPM eq. 7
        if t > 0:  # beta_tilde = 0 at t = 0: the last step returns the mean (= x0_hat)
            z = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + beta_tilde[t] ** 0.5 * z
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)
