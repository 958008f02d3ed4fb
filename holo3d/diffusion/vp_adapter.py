"""Use a DDPM-trained (VP) x0-predictor with the sigma-space EDM samplers.

A VP state and a sigma-space state hold the same information: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
equals x_sigma * sqrt(ab) for x_sigma = x0 + sigma eps and sigma = sqrt((1 - ab) / ab) (EDM sec. 2 and
Appendix C.1). Because an x0 prediction needs no rescaling, only the input is scaled, and the
network is told the (fractional) timestep whose noise level is sigma.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ._sampling import DenoiseFn
from .broadcast import as_coef
from .schedules import sigma_to_t


def vp_denoiser_as_sigma_denoiser(
    denoise_fn_t: DenoiseFn, alpha_bars: Tensor, round_t: bool = False
) -> Callable[..., Tensor]:
    """Wrap ``denoise_fn_t(x_t, t, **cond) -> x0`` into ``denoiser(x_sigma, sigma, **cond) -> x0``.

    Args:
        denoise_fn_t: x0-predictor trained on x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, taking
            (B, ...) x_t and (B,) t.
        alpha_bars: (T,) its training schedule.
        round_t: pass the nearest integer timestep (int64) for networks that only accept integer
            t (e.g. embedding tables); by default t is fractional float, interpolated in log-sigma.
    Sigmas beyond the schedule's range map to t = 0 or T-1 while the input is still scaled by the
    exact 1 / sqrt(1 + sigma^2), so keep sampling sigmas inside ``vp_sigma_range(alpha_bars)``.
    """

    on_device = {}  # alpha_bars per device: avoids a host-to-device copy (and sync) every step

    def denoiser(x_sigma: Tensor, sigma: Tensor, **cond) -> Tensor:
        if sigma.device not in on_device:
            on_device[sigma.device] = alpha_bars.to(sigma.device, torch.float64)
        t = sigma_to_t(sigma, on_device[sigma.device])  # (B,)
        if round_t:
            t = t.round().long()
        x_t = x_sigma * as_coef((1 + sigma.double() ** 2).rsqrt(), x_sigma)  # sqrt(ab) x_sigma
        return denoise_fn_t(x_t, t, **cond)

    return denoiser
