"""Small pieces shared by all samplers (private: the public API is the samplers themselves).

Precision: samplers hand the denoiser x in the requested ``dtype`` (e.g. bf16) but keep their own
state in at least float32. A 1000-step chain adds many small increments to x, and in bf16 (8-bit
mantissa) their rounding drifts the sample mean by about 0.01 on unit-scale data.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .noise import randn

#: ``denoise_fn(x (B, ...), t_or_sigma (B,), **cond) -> x0 (B, ...)``
DenoiseFn = Callable[..., Tensor]
#: ``callback(step_index, x (B, ...), x0 (B, ...))``, called once per sampler step.
Callback = Callable[[int, Tensor, Tensor], None]


def initial_state(
    shape: Sequence[int],
    noise: Optional[Tensor],
    generator: Optional[torch.Generator],
    device: Optional[torch.device | str],
    dtype: Optional[torch.dtype],
) -> Tuple[Tensor, torch.dtype]:
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


def call_denoiser(
    fn: DenoiseFn, x: Tensor, level: Tensor, cond: Optional[Mapping], model_dtype: torch.dtype
) -> Tensor:
    """x0 = fn(x in model_dtype, level, **cond), returned in x's (state) dtype. (B, ...)."""
    return fn(x.to(model_dtype), level, **(cond or {})).to(x.dtype)
