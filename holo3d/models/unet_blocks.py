"""The layout shared by the 2D and 3D U-Nets: dimension-agnostic pieces and one encoder/decoder.

``UNet2D`` (unet2d.py) and ``UNet3D`` (unet3d.py) are the same guided-diffusion style network over
different spatial ranks: an input convolution, an encoder of residual blocks (with self-attention at
chosen downsample factors) and strided downsamplings, a middle block (res, attention, res), a decoder
that consumes one skip connection per block and upsamples at the end of every level but the first,
and a zero-initialised output convolution. ``UNetLayout`` builds and runs that layout once, given the
rank-specific block classes in a ``LayoutBlocks``; each subclass keeps only its embedding of the
conditioning (noise level, timestep, extra vectors) and its constructor arguments.

Parameter creation order is part of the contract: initialisation draws random numbers in creation
order, so a fixed seed gives the same weights only while the blocks are built in this order.

Shapes: B batch, C channels, S... the spatial sizes ((H, W) or (D, H, W)), E embedding width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Collection, List, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
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


@dataclass(frozen=True)
class LayoutBlocks:
    """The rank-specific blocks a U-Net is made of (all but ``conv`` take and return (x, emb)).

    Fields:
        conv: the convolution class (nn.Conv2d / nn.Conv3d) of the input and output convolutions.
        res_block: ``res_block(in_channels, out_channels)``, the embedding width, dropout etc. bound.
        attention: ``attention(channels)`` -> residual self-attention, the head count bound.
        downsample / upsample: ``downsample(channels)`` halves, ``upsample(channels)`` doubles every
            spatial size.
    """

    conv: Type[nn.Module]
    res_block: Callable[[int, int], nn.Module]
    attention: Callable[[int], nn.Module]
    downsample: Callable[[int], nn.Module]
    upsample: Callable[[int], nn.Module]


class UNetLayout(nn.Module):
    """Base of UNet2D and UNet3D: builds (``_build_layout``) and runs (``_run_layout``) the network
    between the conditioning embedding and the output. Subclasses build their embedding modules
    first, then call ``_build_layout``, so state-dict keys and creation order are: embedding modules,
    input_conv, down_blocks, middle_block, up_blocks, out.
    """

    model_channels: int
    num_levels: int

    def _build_layout(
        self,
        blocks: LayoutBlocks,
        in_channels: int,
        out_channels: int,
        model_channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attention_ds: Collection[int],
        use_checkpoint: bool,
    ) -> None:
        """Creates input_conv .. out. ``attention_ds``: downsample factors (1, 2, 4, ...) that attend."""
        self.model_channels = model_channels
        self.num_levels = len(channel_mult)
        self.input_conv = blocks.conv(in_channels, model_channels, 3, padding=1)
        self.down_blocks, skip_channels = self._build_encoder(blocks, channel_mult, num_res_blocks, attention_ds)
        ch = skip_channels[-1]
        self.middle_block = EmbedSequential(
            blocks.res_block(ch, ch), blocks.attention(ch), blocks.res_block(ch, ch)
        )
        self.up_blocks, ch = self._build_decoder(blocks, channel_mult, num_res_blocks, skip_channels, attention_ds)
        # Zero-initialised output conv: the fresh network is the zero function, the standard start for a
        # diffusion denoiser (an eps- or x0-prediction of zero is the mean target, so early losses and
        # gradients are small and well behaved; EDM's preconditioning then starts as D(x) = c_skip x).
        self.out = nn.Sequential(
            group_norm(ch), nn.SiLU(), zero_module(blocks.conv(ch, out_channels, 3, padding=1))
        )
        for block in self.modules():
            if isinstance(block, EmbedSequential):
                block.use_checkpoint = use_checkpoint

    @property
    def downsample_factor(self) -> int:
        """The spatial sizes of the input must be divisible by this."""
        return 2 ** (self.num_levels - 1)

    @staticmethod
    def _level_blocks(blocks: LayoutBlocks, in_ch: int, out_ch: int, ds: int, attention_ds) -> List[nn.Module]:
        """One resolution step: a residual block, plus attention where ``ds`` is an attended factor."""
        layers = [blocks.res_block(in_ch, out_ch)]
        if ds in attention_ds:
            layers.append(blocks.attention(out_ch))
        return layers

    def _build_encoder(
        self, blocks: LayoutBlocks, channel_mult: Sequence[int], num_res_blocks: int, attention_ds
    ) -> Tuple[nn.ModuleList, List[int]]:
        """Returns the encoder blocks and the channel count of every skip connection they emit."""
        encoder = nn.ModuleList()
        skip_channels = [self.model_channels]  # the input conv's output is the first skip
        ch, ds = self.model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out_ch = self.model_channels * mult
                encoder.append(EmbedSequential(*self._level_blocks(blocks, ch, out_ch, ds, attention_ds)))
                ch = out_ch
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                encoder.append(EmbedSequential(blocks.downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        return encoder, skip_channels

    def _build_decoder(
        self,
        blocks: LayoutBlocks,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        skip_channels: List[int],
        attention_ds,
    ) -> Tuple[nn.ModuleList, int]:
        """Decoder blocks, each consuming one skip connection (concatenated on channels), and the
        channel count of the last one."""
        decoder = nn.ModuleList()
        skips = list(skip_channels)
        ch, ds = skips[-1], 2 ** (len(channel_mult) - 1)
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                out_ch = self.model_channels * mult
                layers = self._level_blocks(blocks, ch + skips.pop(), out_ch, ds, attention_ds)
                ch = out_ch
                if level and i == num_res_blocks:
                    layers.append(blocks.upsample(ch))
                    ds //= 2
                decoder.append(EmbedSequential(*layers))
        return decoder, ch

    def _check_input(self, x: torch.Tensor) -> None:
        """Fails, naming the network and the sizes, on inputs of the wrong rank or indivisible sizes."""
        name, rank = type(self).__name__, len(self.input_conv.kernel_size)
        if x.ndim != rank + 2:
            raise ValueError(f"{name} input has shape {tuple(x.shape)}; expected {rank + 2} dims (B, C, S...)")
        factor = self.downsample_factor
        if any(size % factor for size in x.shape[2:]):
            sizes = " x ".join(str(size) for size in x.shape[2:])
            raise ValueError(
                f"{name} input size {sizes} must be divisible by downsample_factor {factor} "
                f"(2 ** (len(channel_mult) - 1))"
            )

    def _run_layout(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, S...) checked by ``_check_input``; emb: (B, E) block embedding -> (B, C_out, S...)."""
        h = self.input_conv(x)  # (B, model_channels, S...)
        skips = [h]
        for block in self.down_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.up_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)  # (B, C_out, S...)
