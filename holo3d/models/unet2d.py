"""2D U-Net image denoiser (the GeNVS and ViewFusion denoiser).

The 2D counterpart of ``unet3d.UNet3D`` for image diffusion: residual blocks conditioned on a noise
embedding (optionally plus an extra condition vector) by a scale-shift (FiLM) of their second
GroupNorm, multi-head self-attention at the configured feature-map resolutions, strided-conv
downsampling / nearest+conv upsampling, skip connections from every encoder block to the decoder,
and a zero-initialised output convolution.

What the network conditions on is up to its parent: the continuous SR3 noise level gamma in [0, 1]
(ViewFusion), EDM's c_noise = ln(sigma) / 4 (GeNVS) or an integer DDPM timestep. Two featurisations:
- ``positional``: the sinusoidal DDPM / Transformer features (``unet3d.timestep_embedding``). Their
  frequencies span 1 .. 1e-4 per unit, so they suit inputs spread over a wide range (timesteps in
  [0, 1000)); a parent feeding gamma in [0, 1] may scale it up (e.g. by 1000) first.
- ``fourier``: random Fourier features with frequencies ~ N(0, 16^2), as EDM's NCSN++ uses for
  c_noise, whose useful range is about [-2, 2].

Shapes: B batch, C channels, H W image, E embedding width (4 * model_channels).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from pytorch3d.implicitron.tools.config import enable_get_default_args
from torch import nn

from holo3d.models.unet_blocks import LayoutBlocks, UNetLayout, group_norm, timestep_embedding, zero_module

NOISE_EMBEDDINGS = ("positional", "fourier")


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar: [cos(2 pi f x), sin(2 pi f x)] with fixed f ~ N(0, scale^2).

    The frequencies are a persistent buffer, so a checkpoint restores the same featurisation.
    forward(x (B,)) -> (B, dim)
    """

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"FourierFeatures dim must be even, got {dim}")
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = 2 * math.pi * x.float()[:, None] * self.freqs.float()[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


class PositionalFeatures(nn.Module):
    """Sinusoidal features of a scalar (DDPM / SR3 style). forward(x (B,)) -> (B, dim)"""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(x, self.dim)  # (B, dim)


class ResBlock2D(nn.Module):
    """Residual block: GN-SiLU-conv, then GN conditioned on the embedding, SiLU, dropout, zero conv.

    With ``use_scale_shift_norm`` the embedding gives a per-channel scale and shift applied after the
    second GroupNorm (FiLM); otherwise it gives a per-channel bias added before it (DDPM).
    forward(x (B, C_in, H, W), emb (B, E)) -> (B, C_out, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        dropout: float,
        use_scale_shift_norm: bool,
    ):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_norm = group_norm(out_channels)
        # The last conv is zeroed so every block starts as its skip path (identity or 1x1 conv):
        # deep stacks then start well conditioned.
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)  # (B, C_out, H, W)
        emb_out = self.emb_layers(emb)[:, :, None, None].to(h.dtype)  # (B, C_out or 2 C_out, 1, 1)
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + emb_out)
        return self.skip(x) + self.out_layers(h)  # (B, C_out, H, W)


class AttentionBlock2D(nn.Module):
    """Multi-head self-attention over all H*W pixels, residual with a zero-initialised projection.

    forward(x (B, C, H, W)) -> (B, C, H, W)
    """

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"UNet2D attention width {channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, w = x.shape[2:]
        qkv = self.qkv(self.norm(x))  # (B, 3 C, H, W)
        q, k, v = rearrange(
            qkv, "b (three heads c) h w -> three b heads (h w) c", three=3, heads=self.num_heads
        )  # each (B, heads, H*W, C / heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads (h w) c -> b (heads c) h w", h=h, w=w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample2D(nn.Module):
    """Halves H and W with a stride-2 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    """Doubles H and W: nearest-neighbour upsampling then a 3x3 convolution (no checkerboard)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet2D(UNetLayout):
    """Noise-level (and optionally vector-) conditioned 2D U-Net (its layout is ``unet_blocks.UNetLayout``'s).

    Args:
        in_channels / out_channels: channels of the input and output images.
        model_channels: width of the first level; level ``i`` has ``model_channels * channel_mult[i]``.
        channel_mult: width multipliers, one level each; every level but the last halves H and W.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: feature-map sides at which self-attention is used; level ``i`` has side
            ``image_size / 2**i`` (64 px with (1, 2, 3, 5): 64, 32, 16, 8). The middle always attends.
        dropout: dropout inside residual blocks.
        num_heads: attention heads (channels per head = width / num_heads).
        cond_dim: width of the extra condition vector added to the noise embedding; 0 disables it.
        use_scale_shift_norm: FiLM (scale and shift after GroupNorm) instead of an additive bias.
        noise_embedding: "positional" (sinusoidal, SR3 / DDPM) or "fourier" (random, EDM / NCSN++).
        image_size: the side the network is built for; only places attention (other sizes divisible
            by ``downsample_factor`` run too).
        use_checkpoint: gradient-checkpoint every block (saves activation memory, costs compute).
    forward(x (B, C_in, H, W), noise_level (B,), cond (B, cond_dim) | None) -> (B, C_out, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        model_channels: int = 64,
        channel_mult: Tuple[int, ...] = (1, 2, 3, 5),
        num_res_blocks: int = 3,
        attention_resolutions: Tuple[int, ...] = (16,),
        dropout: float = 0.0,
        num_heads: int = 4,
        cond_dim: int = 0,
        use_scale_shift_norm: bool = True,
        noise_embedding: str = "positional",
        image_size: int = 64,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self._check_args(channel_mult, attention_resolutions, noise_embedding, image_size, model_channels)
        self.cond_dim = cond_dim
        emb_channels = 4 * model_channels
        features = PositionalFeatures if noise_embedding == "positional" else FourierFeatures
        self.noise_embed = nn.Sequential(
            features(model_channels),
            nn.Linear(model_channels, emb_channels),
            nn.SiLU(),
            nn.Linear(emb_channels, emb_channels),
        )
        self.cond_embed = None
        if cond_dim > 0:
            self.cond_embed = nn.Sequential(
                nn.Linear(cond_dim, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
            )
        blocks = LayoutBlocks(
            conv=nn.Conv2d,
            res_block=partial(
                ResBlock2D, emb_channels=emb_channels, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm
            ),
            attention=partial(AttentionBlock2D, num_heads=num_heads),
            downsample=Downsample2D,
            upsample=Upsample2D,
        )
        self._build_layout(
            blocks, in_channels, out_channels, model_channels, channel_mult, num_res_blocks,
            attention_ds={image_size // r for r in attention_resolutions},  # attended downsample factors
            use_checkpoint=use_checkpoint,
        )

    @staticmethod
    def _check_args(channel_mult, attention_resolutions, noise_embedding, image_size, model_channels):
        """Fails at construction, naming the key, on settings the network cannot honour."""
        if not channel_mult:
            raise ValueError("UNet2D channel_mult must list at least one level")
        if noise_embedding not in NOISE_EMBEDDINGS:
            raise ValueError(
                f"UNet2D noise_embedding={noise_embedding!r}; expected one of {NOISE_EMBEDDINGS}"
            )
        if model_channels % 2:
            raise ValueError(f"UNet2D model_channels={model_channels} must be even (sin/cos feature pairs)")
        sides = [image_size / 2**level for level in range(len(channel_mult))]
        unused = [r for r in attention_resolutions if r not in sides]
        if unused:
            raise ValueError(
                f"UNet2D attention_resolutions {unused} match no level: image_size={image_size} with "
                f"{len(channel_mult)} levels gives feature-map sides {sides}"
            )

    def _embed(
        self, x: torch.Tensor, noise_level: torch.Tensor, cond: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Checks the conditioning inputs and returns the block embedding (B, E)."""
        batch = x.shape[0]
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(batch)
        if noise_level.shape != (batch,):
            raise ValueError(f"UNet2D noise_level has shape {tuple(noise_level.shape)}; expected ({batch},)")
        emb = self.noise_embed(noise_level)  # (B, E)
        if self.cond_embed is None:
            if cond is not None:
                raise ValueError("UNet2D got cond but was built with cond_dim=0")
            return emb
        if cond is None or cond.shape != (batch, self.cond_dim):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"UNet2D cond has shape {got}; expected ({batch}, {self.cond_dim}) (cond_dim)")
        return emb + self.cond_embed(cond.to(emb.dtype))  # (B, E)

    def forward(
        self, x: torch.Tensor, noise_level: torch.Tensor, cond: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x: (B, C_in, H, W); noise_level: (B,) float; cond: (B, cond_dim) or None -> (B, C_out, H, W)."""
        self._check_input(x)
        emb = self._embed(x, noise_level, cond)  # (B, E)
        return self._run_layout(x, emb)  # (B, C_out, H, W)


enable_get_default_args(UNet2D)
