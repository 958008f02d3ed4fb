"""3D U-Net denoiser for feature grids (the HoloDiffusion denoiser).

A guided-diffusion style U-Net for 5-D tensors ``(B, C, D, H, W)``: residual blocks conditioned on the
diffusion timestep by a scale-shift (FiLM) of the second GroupNorm, multi-head self-attention at the
configured downsample factors, strided-conv downsampling / nearest+conv upsampling, skip connections
from every encoder block to the decoder, and a zero-initialised output convolution so that a freshly
built network predicts zeros (a stable starting point for x0-prediction in [-1, 1]).
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from pytorch3d.implicitron.tools.config import enable_get_default_args
from torch import nn
from torch.utils.checkpoint import checkpoint


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps (Transformer / DDPM style).

    Args:
        t: (B,) timesteps, possibly fractional.
    Returns:
        (B, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb  # (B, dim)


def zero_module(module: nn.Module) -> nn.Module:
    """Zeroes a module's parameters; used on residual outputs so every block starts as identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    # Fall back to fewer groups for the tiny test networks whose widths are not multiples of 32.
    return nn.GroupNorm(math.gcd(groups, channels), channels)


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


class EmbedSequential(nn.Sequential):
    """A sequence of blocks that all take (x, emb); optionally gradient-checkpointed as a whole."""

    use_checkpoint: bool = False

    def _run(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._run, x, emb, use_reentrant=False)
        return self._run(x, emb)


class UNet3D(nn.Module):
    """Timestep-conditioned 3D U-Net.

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
    forward(x (B, C_in, D, H, W), t (B,) float timesteps) -> (B, C_out, D, H, W)
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
        self.model_channels = model_channels
        self.num_levels = len(channel_mult)
        emb_channels = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.input_conv = nn.Conv3d(in_channels, model_channels, 3, padding=1)
        block_args = dict(
            emb_channels=emb_channels,
            dropout=dropout,
            num_heads=num_heads,
            attention_resolutions=tuple(attention_resolutions),
        )
        self.down_blocks, skip_channels = self._build_encoder(
            channel_mult, num_res_blocks, **block_args
        )
        ch = skip_channels[-1]
        self.middle_block = EmbedSequential(
            ResBlock3D(ch, ch, emb_channels, dropout),
            AttentionBlock3D(ch, num_heads),
            ResBlock3D(ch, ch, emb_channels, dropout),
        )
        self.up_blocks, ch = self._build_decoder(
            channel_mult, num_res_blocks, skip_channels, **block_args
        )
        self.out = nn.Sequential(
            group_norm(ch), nn.SiLU(), zero_module(nn.Conv3d(ch, out_channels, 3, padding=1))
        )
        for block in self.modules():
            if isinstance(block, EmbedSequential):
                block.use_checkpoint = use_checkpoint

    @property
    def downsample_factor(self) -> int:
        """The spatial sizes of the input must be divisible by this."""
        return 2 ** (self.num_levels - 1)

    def _level_blocks(self, in_ch, out_ch, ds, emb_channels, dropout, num_heads, attention_resolutions):
        layers: List[nn.Module] = [ResBlock3D(in_ch, out_ch, emb_channels, dropout)]
        if ds in attention_resolutions:
            layers.append(AttentionBlock3D(out_ch, num_heads))
        return layers

    def _build_encoder(self, channel_mult: Sequence[int], num_res_blocks: int, **block_args):
        """Returns the encoder blocks and the channel count of every skip connection they emit."""
        blocks = nn.ModuleList()
        skip_channels = [self.model_channels]  # the input conv's output is the first skip
        ch, ds = self.model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out_ch = self.model_channels * mult
                blocks.append(EmbedSequential(*self._level_blocks(ch, out_ch, ds, **block_args)))
                ch = out_ch
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                blocks.append(EmbedSequential(Downsample3D(ch)))
                skip_channels.append(ch)
                ds *= 2
        return blocks, skip_channels

    def _build_decoder(
        self, channel_mult: Sequence[int], num_res_blocks: int, skip_channels: List[int], **block_args
    ):
        """Decoder blocks: each consumes one skip connection (concatenated on channels)."""
        blocks = nn.ModuleList()
        skips = list(skip_channels)
        ch, ds = skips[-1], 2 ** (len(channel_mult) - 1)
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                out_ch = self.model_channels * mult
                layers = self._level_blocks(ch + skips.pop(), out_ch, ds, **block_args)
                ch = out_ch
                if level and i == num_res_blocks:
                    layers.append(Upsample3D(ch))
                    ds //= 2
                blocks.append(EmbedSequential(*layers))
        return blocks, ch

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, D, H, W); t: (B,) float timesteps -> (B, C_out, D, H, W)."""
        factor = self.downsample_factor
        if any(size % factor for size in x.shape[2:]):
            raise ValueError(
                f"UNet3D input spatial size {tuple(x.shape[2:])} must be divisible by {factor} "
                f"(2 ** (len(channel_mult) - 1))"
            )
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.model_channels))  # (B, E)
        h = self.input_conv(x)
        skips = [h]
        for block in self.down_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.up_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)  # (B, C_out, D, H, W)


enable_get_default_args(UNet3D)
