"""Small pieces shared by all samplers (private: the public API is the samplers themselves)."""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from .noise import randn

#: ``denoise_fn(x (B, ...), t_or_sigma (B,), **cond) -> x0 (B, ...)``
DenoiseFn = Callable[..., Tensor]
#: ``callback(step_index, x (B, ...), x0 (B, ...))``, called once per sampler step.
Callback = Callable[[int, Tensor, Tensor], None]


def initial_noise(
    shape: Sequence[int],
    noise: Optional[Tensor],
    generator: Optional[torch.Generator],
    device: Optional[torch.device | str],
    dtype: Optional[torch.dtype],
) -> Tensor:
    """Standard-normal starting noise: the caller's ``noise`` if given, else a fresh draw. (B, ...)."""
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
        return noise.to(device=device or noise.device, dtype=dtype or noise.dtype)
    return randn(shape, generator=generator, device=device, dtype=dtype)


def level_vector(value: float, x: Tensor, integer: bool = False) -> Tensor:
    """One timestep / sigma per sample, (B,): int64 timesteps, or float sigmas in >= float32."""
    if integer:
        return torch.full((x.shape[0],), int(value), device=x.device, dtype=torch.long)
    # Keep noise levels at least float32 even when sampling in bf16: log(sigma) embeddings need it.
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=dtype)


def call_denoiser(fn: DenoiseFn, x: Tensor, level: Tensor, cond: Optional[Mapping]) -> Tensor:
    """x0 = fn(x, level, **cond), cast back to x's dtype (a model under autocast may return fp32)."""
    return fn(x, level, **(cond or {})).to(x.dtype)
