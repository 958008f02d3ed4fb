"""Classifier-free guidance (Ho & Salimans 2022) in the x0 parameterisation.

For a fixed x_t, eps is an affine function of x0 (eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)), so
extrapolating x0 predictions is exactly the paper's extrapolation of eps predictions.
"""

from __future__ import annotations

from torch import Tensor


def classifier_free_guidance(x0_cond: Tensor, x0_uncond: Tensor, guidance_scale: float) -> Tensor:
    """x0_uncond + w (x0_cond - x0_uncond); w = 1 is the conditional model, w = 0 the unconditional.

    Shapes (B, ...) -> (B, ...).
    """
    return x0_uncond + guidance_scale * (x0_cond - x0_uncond)
