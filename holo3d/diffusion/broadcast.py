"""Broadcasting per-sample scalars (noise levels, schedule coefficients) against data tensors.

The same diffusion code serves 4-D images (B, C, H, W) and 5-D grids (B, C, D, H, W): every per-sample
quantity is kept as a (B,) vector and only given trailing singleton dims at the point of use.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims to ``t`` until it has ``ndim`` dims.

    Args:
        t: (B,) (or any shape with at most ``ndim`` dims).
        ndim: target number of dims, usually ``x.ndim``.
    Returns:
        (B, 1, ..., 1) view of ``t`` with ``ndim`` dims.
    """
    missing = ndim - t.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(*t.shape, *((1,) * missing))  # (B, 1, ..., 1)


def as_coef(c: Union[Tensor, float], x: Tensor) -> Tensor:
    """A coefficient ready to multiply ``x``: on x's device, in x's dtype, broadcastable.

    Schedules are kept in float64; casting here (after the coefficient has been computed in double)
    keeps float32/bf16 samplers from silently promoting their state to float64.

    Args:
        c: python scalar, 0-d tensor, or (B,) per-sample tensor.
        x: (B, ...) data tensor.
    Returns:
        0-d tensor or (B, 1, ..., 1) tensor.
    """
    c = torch.as_tensor(c, device=x.device).to(x.dtype)
    return append_dims(c, x.ndim) if c.ndim else c
