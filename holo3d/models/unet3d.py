"""3D U-Net denoiser for feature grids (the HoloDiffusion denoiser).

A guided-diffusion style U-Net for 5-D tensors ``(B, C, D, H, W)``: residual blocks conditioned on the
diffusion timestep by a scale-shift (FiLM) of the second GroupNorm, multi-head self-attention at the
configured downsample factors, strided-conv downsampling / nearest+conv upsampling, skip connections
from every encoder block to the decoder, and a zero-initialised output convolution so that a freshly
built network predicts zeros (a stable starting point for x0-prediction in [-1, 1]).
"""

from __future__ import annotations

from functools import partial
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from pytorch3d.implicitron.tools.config import enable_get_default_args
from torch import nn

# The rank-agnostic helpers moved to unet_blocks; they stay importable from here for existing callers.
from holo3d.models.unet_blocks import (  # noqa: F401
    EmbedSequential,
    LayoutBlocks,
    UNetLayout,
    group_norm,
    timestep_embedding,
    zero_module,
)


class ResBlock3D(nn.Module):
    """Residual block: GN-SiLU-conv, then GN with timestep scale-shift, SiLU, dropout, zero conv.

    forward(x (B, C_in, D, H, W), emb (B, E)) -> (B, C_out, D, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv3d(in_channels, out_channels, 3, padding=1)
        )
        # FiLM: one scale and one shift per output channel.
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(nn.Conv3d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None, None].to(h.dtype).chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock3D(nn.Module):
    """Multi-head self-attention over all D*H*W voxels, residual with a zero-initialised projection.

    forward(x (B, C, D, H, W)) -> (B, C, D, H, W)
    """

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv3d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor = None) -> torch.Tensor:
        d, h, w = x.shape[2:]
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(
            qkv, "b (three heads c) d h w -> three b heads (d h w) c", three=3, heads=self.num_heads
        )  # each (B, heads, L, C / heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads (d h w) c -> b (heads c) d h w", d=d, h=h, w=w)
        return x + self.proj_out(out)  # (B, C, D, H, W)


class Downsample3D(nn.Module):
    """Halves D, H and W with a stride-2 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor = None) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    """Doubles D, H and W: nearest-neighbour upsampling then a 3x3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet3D(UNetLayout):
    """Timestep-conditioned 3D U-Net (its layout is ``unet_blocks.UNetLayout``'s).

    Args:
        in_channels / out_channels: channels of the input and output grids.
        model_channels: width of the first level; level ``i`` has ``model_channels * channel_mult[i]``.
        channel_mult: width multipliers, one level each; every level but the last halves D, H, W.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: downsample factors (1, 2, 4, ...) at which self-attention is used,
            as in guided-diffusion: with a 16^3 input, factors 4 and 8 mean 4^3 and 2^3 grids.
        num_heads: attention heads (channels per head = width / num_heads).
        dropout: dropout inside residual blocks.
        use_checkpoint: gradient-checkpoint every block (saves activation memory, costs compute).
    forward(x (B, C_in, D, H, W), t (B,) float timesteps, emb (B, E) | None) -> (B, C_out, D, H, W)
    """

    def __init__(
        self,
        in_channels: int = 64,
        out_channels: int = 64,
        model_channels: int = 64,
        channel_mult: Tuple[int, ...] = (1, 1, 2, 4, 8),
        num_res_blocks: int = 2,
        attention_resolutions: Tuple[int, ...] = (4, 8),
        num_heads: int = 2,
        dropout: float = 0.0,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        emb_channels = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        blocks = LayoutBlocks(
            conv=nn.Conv3d,
            res_block=partial(ResBlock3D, emb_channels=emb_channels, dropout=dropout),
            attention=partial(AttentionBlock3D, num_heads=num_heads),
            downsample=Downsample3D,
            upsample=Upsample3D,
        )
        self._build_layout(
            blocks, in_channels, out_channels, model_channels, channel_mult, num_res_blocks,
            attention_ds=tuple(attention_resolutions), use_checkpoint=use_checkpoint,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, C_in, D, H, W); t: (B,) or () float timesteps; emb: (B, E) or (1, E) extra embedding
        (E = 4 * model_channels, e.g. a class label's) added to the timestep embedding, which FiLMs
        every residual block -> (B, C_out, D, H, W)."""
        self._check_input(x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        block_emb = self.time_embed(timestep_embedding(t, self.model_channels))  # (B, E)
        if emb is not None:
            if emb.ndim != 2 or emb.shape[0] not in (1, x.shape[0]) or emb.shape[1] != block_emb.shape[1]:
                raise ValueError(
                    f"UNet3D emb has shape {tuple(emb.shape)}; expected ({x.shape[0]}, {block_emb.shape[1]}) "
                    f"or (1, {block_emb.shape[1]}) (4 * model_channels)"
                )
            block_emb = block_emb + emb  # (B, E)
        return self._run_layout(x, block_emb)  # (B, C_out, D, H, W)


enable_get_default_args(UNet3D)
