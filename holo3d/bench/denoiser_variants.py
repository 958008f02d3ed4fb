"""Faster ways to run the same U-Net, swapped into the model for the duration of a measurement.

    eager            the model as built
    channels_last_3d weights and inputs in NDHWC layout (cuDNN's preferred layout for 3D convs)
    compile          ``torch.compile(unet, mode=...)``
    cuda_graph       the whole U-Net forward captured once per input shape/dtype and replayed

Every variant is an ``nn.Module`` with the U-Net's ``forward(x, t)`` that replaces ``model.unet``
inside ``use_variant``, so ``model.denoise`` and ``model.sample`` run it unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List

import torch
from torch import nn

from holo3d.bench.settings import BenchSettings
from holo3d.models.cuda_graph_unet import CudaGraphed


def variants_for(settings: BenchSettings, device: torch.device) -> List[str]:
    """The variants a run measures: eager always, the others when their flag is given."""
    names = ["eager"]
    if settings.channels_last:
        names.append("channels_last_3d")
    if settings.compile:
        names.append("compile")
    if settings.cuda_graph and device.type == "cuda":
        names.append("cuda_graph")
    return names


class ChannelsLast3d(nn.Module):
    """Runs the wrapped U-Net on channels_last_3d inputs (its weights are converted by the caller)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x.contiguous(memory_format=torch.channels_last_3d), t)


def _wrap(unet: nn.Module, variant: str, settings: BenchSettings) -> nn.Module:
    if variant == "eager":
        return unet
    if variant == "channels_last_3d":
        unet.to(memory_format=torch.channels_last_3d)
        return ChannelsLast3d(unet)
    if variant == "compile":
        return torch.compile(unet, mode=settings.compile_mode, dynamic=False)
    if variant == "cuda_graph":
        return CudaGraphed(unet)
    raise ValueError(f"unknown U-Net variant {variant!r}")


@contextlib.contextmanager
def use_variant(model: nn.Module, variant: str, settings: BenchSettings) -> Iterator[nn.Module]:
    """``model.unet`` replaced by the variant for the block; the original (contiguous) restored."""
    original = model.unet
    model.unet = _wrap(original, variant, settings)
    try:
        yield model.unet
    finally:
        model.unet = original
        if variant == "channels_last_3d":
            original.to(memory_format=torch.contiguous_format)
