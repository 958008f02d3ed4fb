"""Training objectives and the noise levels they are trained on.

HoloDiffusion trains its denoiser to predict x0 directly with an MSE (DDPM "simple" loss in the x0
parameterisation), at uniformly drawn timesteps. EDM (Karras et al. 2022) instead draws sigma
log-normally and weights the x0 error by lambda(sigma) = 1 / c_out^2, which with the preconditioning
makes the effective loss on the raw network a plain unit-weight MSE.
Losses are returned per sample, (B,), so callers can mask or re-weight before averaging.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .broadcast import as_coef
from .noise import randn


def _per_sample_mean(err: Tensor) -> Tensor:
    """(B, ...) -> (B,) mean over everything but the batch dim."""
    return err.reshape(err.shape[0], -1).mean(dim=1)  # (B, C*H*W or C*D*H*W) -> (B,)


def x0_mse_loss(x0_pred: Tensor, x0: Tensor) -> Tensor:
    """|| x0_pred - x0 ||^2 averaged per sample. (B, ...) x2 -> (B,)."""
    return _per_sample_mean((x0_pred - x0) ** 2)


def edm_loss_weight(sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (EDM Table 1), = 1 / c_out^2. Shape of sigma."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoised: Tensor, x0: Tensor, sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """EDM eq. 2 with Table 1 weighting: lambda(sigma) || D(x0 + sigma n; sigma) - x0 ||^2.

    Args:
        denoised: (B, ...) D(x0 + sigma n; sigma).  x0: (B, ...).  sigma: (B,).
    Returns:
        (B,) per-sample loss.
    """
    weight = as_coef(edm_loss_weight(sigma, sigma_data), x0)
    return _per_sample_mean(weight * (denoised - x0) ** 2)


def sample_log_normal_sigmas(
    batch_size: int,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """Training noise levels ln(sigma) ~ N(P_mean, P_std^2) (EDM Table 1). Returns (B,) float32."""
    z = randn((batch_size,), generator=generator, device=device)
    return (P_mean + P_std * z).exp()


def sample_timesteps(
    batch_size: int,
    num_steps: int,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """Training timesteps t ~ U{0, ..., T-1} (DDPM Algorithm 1). Returns (B,) int64."""
    draw_device = generator.device if generator is not None else device
    t = torch.randint(0, num_steps, (batch_size,), generator=generator, device=draw_device)
    return t.to(device)
