"""Classifier-free guidance (Ho & Salimans 2022) in the x0 parameterisation.

For a fixed x_t, eps is an affine function of x0 (eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)), and so is
v, so extrapolating x0 predictions is exactly the paper's extrapolation of eps predictions (their
eq. 6, whose w is our guidance_scale - 1); in sigma space likewise, since D = x - sigma eps.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from .samplers import DenoiseFn


def classifier_free_guidance(x0_cond: Tensor, x0_uncond: Tensor, guidance_scale: float) -> Tensor:
    """x0_uncond + w (x0_cond - x0_uncond); w = 1 is the conditional model, w = 0 the unconditional.

    Shapes (B, ...) -> (B, ...).
    """
    return x0_uncond + guidance_scale * (x0_cond - x0_uncond)


def _stack_pair(key: str, c: Any, u: Any, batch: int) -> Any:
    """The conditional and unconditional values of one cond key, batched as (2B, ...)."""
    if isinstance(c, Tensor) and isinstance(u, Tensor):
        u = u.expand(batch, *u.shape[1:]) if u.shape[0] == 1 and batch > 1 else u
        if c.shape[0] != batch or u.shape[0] != batch:
            raise ValueError(f"guided_denoiser: cond[{key!r}] needs batch dim {batch} (or 1 for the "
                             f"unconditional value), got {tuple(c.shape)} and {tuple(u.shape)}")
        return torch.cat([c, u.to(c.dtype)])  # (2B, ...)
    if c is u or (not isinstance(c, Tensor) and not isinstance(u, Tensor) and c == u):
        return c  # a setting shared by both halves
    raise ValueError(f"guided_denoiser: cond[{key!r}] differs between the conditional and the "
                     f"unconditional call but is not a tensor; use batched=False")


def guided_denoiser(
    denoise_fn: DenoiseFn, guidance_scale: float, uncond: Mapping[str, Any], batched: bool = True
) -> DenoiseFn:
    """``denoise_fn`` with classifier-free guidance, as a ``denoise_fn(x, level, **cond) -> x0``.

    Args:
        denoise_fn: the conditional x0-denoiser ``denoise_fn(x (B, ...), level (B,), **cond)``.
        guidance_scale: w; 1 calls only the conditional model, 0 only the unconditional one.
        uncond: the cond values that make the call unconditional (e.g. a null embedding, a
            dropped-view mask); keys absent here keep the conditional value.
        batched: run cond and uncond as one (2B, ...) call (one network pass, better GPU use);
            False makes two calls, for cond values that cannot be concatenated.
    """

    def guided(x: Tensor, level: Tensor, **cond) -> Tensor:
        cond_u = {**cond, **uncond}
        if guidance_scale == 1:
            return denoise_fn(x, level, **cond)
        if guidance_scale == 0:
            return denoise_fn(x, level, **cond_u)
        if not batched:
            return classifier_free_guidance(denoise_fn(x, level, **cond), denoise_fn(x, level, **cond_u),
                                            guidance_scale)
        missing = sorted(set(uncond) - set(cond))
        if missing:
            raise ValueError(f"guided_denoiser: uncond keys {missing} are not among the cond keys "
                             f"{sorted(cond)}; give them a conditional value too, or use batched=False")
        both = {k: _stack_pair(k, cond[k], cond_u[k], x.shape[0]) for k in cond}
        x0 = denoise_fn(torch.cat([x, x]), torch.cat([level, level]), **both)  # (2B, ...)
        x0_cond, x0_uncond = x0.chunk(2)
        return classifier_free_guidance(x0_cond, x0_uncond, guidance_scale)

    return guided
