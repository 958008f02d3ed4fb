"""EDM preconditioning (Karras et al. 2022, eq. 7 and Table 1, "Ours" column).

The denoiser D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) is built so that the raw network F sees
unit-variance inputs and regresses a unit-variance target at every sigma, whatever the noise level.
"""

from __future__ import annotations

from typing import Callable, Tuple

from torch import Tensor

from .broadcast import as_coef


def edm_preconditioning(
    sigma: Tensor, sigma_data: float = 0.5
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) for each sigma (EDM Table 1).

    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4, with sd = sigma_data.
    Args:
        sigma: (B,) (any shape works; the outputs take its shape).
    """
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_denoise(
    raw_fn: Callable[..., Tensor], x: Tensor, sigma: Tensor, sigma_data: float = 0.5, **cond
) -> Tensor:
    """Apply the preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) (EDM eq. 7).

    Args:
        raw_fn: the network F(x_in (B, ...), c_noise (B,), **cond) -> (B, ...).
        x: (B, ...) noisy input x0 + sigma n.  sigma: (B,).
    Returns:
        x0 estimate (B, ...).
    """
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data)
    f = raw_fn(as_coef(c_in, x) * x, c_noise, **cond)
    return as_coef(c_skip, x) * x + as_coef(c_out, x) * f
