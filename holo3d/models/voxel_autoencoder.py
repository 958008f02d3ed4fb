"""VoxelAutoencoder: occupancy grids <-> a small latent grid (the first stage of the 3D voxel latent
diffusion model), and the occupancy losses and IoU it is trained and judged with.

    encode: (B, 1, R, R, R) occupancy in {0, 1} -> z (B, latent_channels, r, r, r), e.g. 64^3 -> 16 x 8^3
    decode: z -> logits (B, 1, R_out, R_out, R_out); R_out = output_resolution (default R)

Encoder: a stem convolution, then one stride-2 Conv3d + BatchNorm3d + LeakyReLU stage per halving
(channels doubling from ``base_channels``), then a 3^3 convolution to the latent (no norm or
activation: the latent is unbounded; the diffusion model rescales it). The decoder mirrors it with
stride-2 transposed convolutions; ``output_resolution=128`` with a 64^3 input adds one more upsampling
stage, so that a model trained on 64^3 data emits the course protocol's 128^3 samples.

The decoder returns logits, not probabilities: apply ``torch.sigmoid`` outside. The loss is computed
from logits with ``binary_cross_entropy_with_logits``, which evaluates log(sigmoid(x)) as
-softplus(-x) in one step; taking the log of a sigmoid that has already rounded to 0 or 1 gives
-inf / NaN gradients for confident voxels (and PyTorch refuses plain BCE under fp16 autocast for
that reason).
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from pytorch3d.implicitron.tools.config import enable_get_default_args
from torch import nn

LOSS_KINDS = ("bce", "balanced", "focal")


def _stages(high: int, low: int, name: str) -> int:
    """log2(high / low), which must be a whole number >= 0."""
    ratio = high / low
    stages = round(math.log2(ratio)) if ratio >= 1 else -1
    if stages < 0 or 2**stages != ratio:
        raise ValueError(f"{name}={high} must be latent_resolution={low} times a power of two")
    return stages


def _conv_block(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm3d(channels), nn.LeakyReLU(0.2, inplace=True))


class VoxelAutoencoder(nn.Module):
    """3D convolutional autoencoder of occupancy grids (see the module docstring).

    Args:
        resolution: R, side of the input grids.
        latent_channels: channels of the latent grid.
        latent_resolution: r, side of the latent grid; R / r must be a power of two.
        base_channels: channels of the first stage; doubled at every halving.
        output_resolution: side of the decoded grid; None = R. 2R adds an upsampling stage.
    """

    def __init__(
        self,
        resolution: int = 64,
        latent_channels: int = 16,
        latent_resolution: int = 8,
        base_channels: int = 32,
        output_resolution: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.resolution, self.latent_resolution = resolution, latent_resolution
        self.latent_channels = latent_channels
        self.output_resolution = output_resolution or resolution
        n_down = _stages(resolution, latent_resolution, "resolution")
        n_up = _stages(self.output_resolution, latent_resolution, "output_resolution")
        widths = [base_channels * 2**i for i in range(n_down + 1)]  # encoder stage channels
        self.encoder = self._build_encoder(widths, latent_channels)
        # the decoder retraces the encoder's widths; stages past the input resolution halve again
        dec_widths = widths[::-1] + [max(widths[0] // 2**i, 8) for i in range(1, n_up - n_down + 1)]
        self.decoder = self._build_decoder(dec_widths[: n_up + 1], latent_channels)

    @staticmethod
    def _build_encoder(widths: List[int], latent_channels: int) -> nn.Sequential:
        layers = [_conv_block(nn.Conv3d(1, widths[0], 3, padding=1), widths[0])]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(_conv_block(nn.Conv3d(c_in, c_out, 4, stride=2, padding=1), c_out))
        layers.append(nn.Conv3d(widths[-1], latent_channels, 3, padding=1))
        return nn.Sequential(*layers)

    @staticmethod
    def _build_decoder(widths: List[int], latent_channels: int) -> nn.Sequential:
        layers = [_conv_block(nn.Conv3d(latent_channels, widths[0], 3, padding=1), widths[0])]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(_conv_block(nn.ConvTranspose3d(c_in, c_out, 4, stride=2, padding=1), c_out))
        layers.append(nn.Conv3d(widths[-1], 1, 1))
        return nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, R, R, R) occupancy -> (B, latent_channels, r, r, r) latent."""
        expected = (1, self.resolution, self.resolution, self.resolution)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"VoxelAutoencoder.encode: input shape {tuple(x.shape)}, expected (B, *{expected})")
        return self.encoder(x)  # (B, latent_channels, r, r, r)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_channels, r, r, r) -> (B, 1, R_out, R_out, R_out) occupancy logits."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, R, R, R) -> reconstruction logits (B, 1, R_out, R_out, R_out)."""
        return self.decode(self.encode(x))


enable_get_default_args(VoxelAutoencoder)


def occupancy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str = "bce",
    gamma: float = 2.0,
    alpha: Optional[float] = None,
) -> torch.Tensor:
    """Mean occupancy loss of logits against a {0, 1} target of the same shape (0-d tensor).

    kind:
        "bce": binary cross-entropy, every voxel weighted alike.
        "balanced": the mean BCE over occupied voxels and the mean over empty ones, averaged, so
            the few occupied voxels of a sparse grid weigh as much as all the empty ones.
        "focal": focal loss (Lin et al. 2017, eq. 5), alpha_t * (1 - p_t)^gamma * BCE, which
            down-weights voxels already predicted confidently; ``alpha`` (weight of occupied voxels,
            1 - alpha for empty ones) is off when None. gamma = 0 and alpha = None give "bce".
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"occupancy_loss kind={kind!r}: expected one of {LOSS_KINDS}")
    if logits.shape != target.shape:
        raise ValueError(f"occupancy_loss: logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}")
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if kind == "bce":
        return bce.mean()
    if kind == "balanced":
        occupied = target > 0.5
        parts = [bce[mask].mean() for mask in (occupied, ~occupied) if mask.any()]
        return torch.stack(parts).mean()
    p_t = torch.exp(-bce)  # probability given to the true class
    loss = (1 - p_t) ** gamma * bce
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


def iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B,) intersection over union of occupied voxels per grid (1 where both are empty).

    ``pred``: probabilities (``sigmoid(logits)``) or a bool grid, (B, ...); ``target``: {0, 1}, same shape.
    """
    # hand-written: torchmetrics' JaccardIndex pools all grids of a batch into one figure
    a = (pred > threshold if pred.dtype != torch.bool else pred).flatten(1)
    b = (target > 0.5).flatten(1)
    union = (a | b).sum(1)
    inter = (a & b).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))
