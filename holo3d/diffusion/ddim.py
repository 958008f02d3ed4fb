"""DDIM sampling (Song et al. 2021, eq. 12) over any evenly spaced sub-sequence of the T steps.

eta = 0 is the deterministic DDIM sampler; eta = 1 with all T steps reproduces ancestral DDPM
(sigma_t^2 then equals DDPM's beta_tilde and the update equals the posterior mean plus noise).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._sampling import Callback, DenoiseFn, call_denoiser, initial_state, level_vector
from .noise import randn
from .schedules import spaced_timesteps


def ddim_coefficients(ab_t: float, ab_prev: float, eta: float) -> Tuple[float, float]:
    """(sigma_t, c_eps) of Song et al. eq. 12/16 for one step t -> prev:

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
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    clip_x0: bool = True,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
) -> Tensor:
    """Sample with ``steps`` DDIM steps at timesteps evenly spaced from T-1 down to 0.

    Args:
        denoise_fn: ``denoise_fn(x_t (B, ...), t (B,) int64, **cond) -> x0 (B, ...)``.
        shape: (B, C, H, W) or (B, C, D, H, W).  alpha_bars: (T,).
        dtype: denoiser input / output dtype; the state stays in at least float32.
        eta: 0 deterministic, 1 DDPM-like stochasticity.
        clip_x0: clamp predicted x0 to [-1, 1]; eps is recomputed from the clipped x0.
        callback: ``callback(i, x_prev, x0_hat)`` after each step, i = 0..steps-1.
    Returns:
        x_0 sample, (B, ...).
    """
    x, out_dtype = initial_state(shape, noise, generator, device, dtype)  # x: >= float32 state
    ab = alpha_bars.to(torch.float64).cpu().tolist()
    timesteps = spaced_timesteps(len(ab), steps).tolist()
    for i, t in enumerate(timesteps):
        x0 = call_denoiser(denoise_fn, x, level_vector(t, x, integer=True), cond, out_dtype)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        ab_t = ab[t]
        ab_prev = ab[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
        eps = (x - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5
        sigma_t, c_eps = ddim_coefficients(ab_t, ab_prev, eta)
        x = ab_prev**0.5 * x0 + c_eps * eps  # Song et al. eq. 12
        if sigma_t > 0:
            x = x + sigma_t * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback(i, x, x0)
    return x.to(out_dtype)
