"""GridDiffusion: the DDPM schedule of a grid model and the glue to ``holo3d.diffusion``'s samplers.

Holds the (T,) float64 alpha_bar schedule, draws training timesteps, noises clean grids, and runs any of the
samplers with an x0-predicting ``denoise(x_t, t) -> x0``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from holo3d.diffusion import (
    alpha_bars,
    karras_sigmas,
    linear_betas,
    q_sample,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_heun,
    sample_timesteps,
    vp_denoiser_as_sigma_denoiser,
    vp_sigma_range,
)

SAMPLERS = ("ddpm", "ddim", "heun", "euler")
# Default step counts when the caller gives none: DDPM runs the whole chain; the others are
# few-step samplers.
_DEFAULT_STEPS = {"ddim": 50, "heun": 18, "euler": 50}


class GridDiffusion(nn.Module):
    """Linear-beta DDPM (Ho et al. 2020) over (B, F, D, H, W) grids."""

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        self.num_steps = num_steps
        # A plain attribute, not a buffer: rebuilt from the config (checkpoints need not carry it)
        # and kept in float64 whatever dtype the module is cast to; moved to a device on first use.
        self._alpha_bars = alpha_bars(linear_betas(num_steps, beta_start, beta_end))  # (T,) float64

    def schedule(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """The (T,) float64 alpha_bar schedule on ``device``."""
        if device is not None and self._alpha_bars.device != torch.device(device):
            self._alpha_bars = self._alpha_bars.to(device)
        return self._alpha_bars

    def sample_t(self, n: int, device: torch.device) -> torch.Tensor:
        """Training timesteps t ~ U{0, ..., T-1}, (n,) int64."""
        return sample_timesteps(n, self.num_steps, device=device)

    def noise(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x0) (DDPM eq. 4). x0: (B, ...), t: (B,) int64 -> (B, ...)."""
        return q_sample(x0, t, self.schedule(x0.device), torch.randn_like(x0))

    def sample(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        sampler: str = "ddpm",
        steps: Optional[int] = None,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
        callback=None,
        device: Optional[torch.device] = None,
        **sampler_kwargs,
    ) -> torch.Tensor:
        """Draws grids of ``shape`` with one of ``SAMPLERS``.

        ``ddpm`` runs all T ancestral steps; given fewer ``steps`` it runs DDIM with eta=1 over that
        many spaced timesteps (the strided ancestral sampler). ``heun`` / ``euler`` integrate in
        sigma space over Karras sigmas spanning the training schedule, through the VP adapter.
        Extra keyword arguments (e.g. ``S_churn``) go to the sampler.
        """
        ab = self.schedule(device)
        common = dict(generator=generator, device=device, callback=callback, **sampler_kwargs)
        if sampler == "ddpm":
            if steps is None or steps == self.num_steps:
                return sample_ddpm(denoise, shape, ab, **common)
            return sample_ddim(denoise, shape, ab, steps=steps, eta=1.0, **common)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
        steps = steps or _DEFAULT_STEPS[sampler]
        if sampler == "ddim":
            return sample_ddim(denoise, shape, ab, steps=steps, eta=eta, **common)
        sigmas = karras_sigmas(steps, *vp_sigma_range(ab))
        sigma_denoise = vp_denoiser_as_sigma_denoiser(denoise, ab)
        edm_sampler = sample_heun if sampler == "heun" else sample_euler
        return edm_sampler(sigma_denoise, shape, sigmas, **common)
