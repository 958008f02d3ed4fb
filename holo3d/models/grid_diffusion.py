"""GridDiffusion: the VP (DDPM) process of a grid model, as an ``nn.Module`` leaf.

A thin holder of a ``holo3d.diffusion.VPDiffusion``: draws training timesteps, noises clean grids,
and runs any sampler of ``holo3d.diffusion.SAMPLERS`` by name with an x0-predicting
``denoise(x_t, t) -> x0``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from holo3d.diffusion import SAMPLERS, VPDiffusion, sample, sampler_spec

__all__ = ["GridDiffusion", "SAMPLERS"]


class GridDiffusion(nn.Module):
    """Linear-beta DDPM (Ho et al. 2020) over (B, F, D, H, W) grids.

    Args:
        num_steps / beta_start / beta_end: the linear beta schedule.
        prediction: the U-Net's parameterisation (x0, eps or v), used by ``to_x0``.
        clip_x0: x0 estimates are clamped to [-clip_x0, clip_x0] (grids live in [-1, 1]); None: off.
    """

    def __init__(
        self,
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction: str = "x0",
        clip_x0: Optional[float] = 1.0,
    ):
        super().__init__()
        # A plain attribute, not a buffer: rebuilt from the config (checkpoints need not carry it)
        # and kept in float64 whatever dtype the module is cast to.
        self.process = VPDiffusion(num_steps, "linear", beta_start, beta_end, prediction=prediction,
                                   clip_x0=clip_x0)

    @property
    def num_steps(self) -> int:
        return self.process.num_steps

    def schedule(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """The (T,) float64 alpha_bar schedule on ``device``."""
        return self.process.schedule(device)

    def sample_t(self, n: int, device: torch.device) -> torch.Tensor:
        """Training timesteps t ~ U{0, ..., T-1}, (n,) int64."""
        return self.process.sample_t(n, device)

    def noise(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x0) (DDPM eq. 4). x0: (B, ...), t: (B,) int64 -> (B, ...)."""
        return self.process.noise(x0, t)

    def to_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The (clipped) x0 estimate from the U-Net's output in its parameterisation. (B, ...)."""
        return self.process.to_x0(model_out, x_t, t)

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
        """Draws grids of ``shape`` with the sampler named ``sampler`` (a key of ``SAMPLERS``).

        ``denoise(x_t, t) -> x0`` predicts x0 (clamped here to ``clip_x0``). ``ddpm`` runs all T
        ancestral steps, or with fewer ``steps`` DDIM with eta=1 over that many spaced timesteps;
        ``ddim`` uses ``eta``; ``heun`` / ``euler`` / ``dpmpp_2m`` integrate in sigma space over
        Karras sigmas spanning the training schedule. Extra keyword arguments (e.g. ``S_churn``) go
        to the sampler; ``steps=None`` takes the sampler's default.
        """
        if sampler_spec(sampler).accepts("eta"):
            sampler_kwargs = {"eta": eta, **sampler_kwargs}
        x0_fn = lambda x_t, t, **cond: self.process.clip(denoise(x_t, t, **cond))  # noqa: E731
        return sample(sampler, x0_fn, shape, self.process.alpha_bars, steps=steps, generator=generator,
                      callback=callback, device=device, **sampler_kwargs)
