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
from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

from holo3d.bench.settings import BenchSettings


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


class CudaGraphed(nn.Module):
    """Replays a CUDA graph of ``unet(x, t)`` captured on first use of each (shape, dtype, autocast).

    Inference only (no autograd). Inputs are copied into static buffers, the graph replays, and the
    output is cloned: callers may keep it while the next call overwrites the static output.
    """

    def __init__(self, unet: nn.Module, warmup: int = 3):
        super().__init__()
        self.unet = unet
        self.warmup = warmup
        self._graphs: Dict[Tuple, Tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _key(self, x: torch.Tensor, t: torch.Tensor) -> Tuple:
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        return (tuple(x.shape), x.dtype, tuple(t.shape), t.dtype, autocast, dtype)

    def _capture(self, x: torch.Tensor, t: torch.Tensor):
        static_x, static_t = x.clone(), t.clone()
        # Warm-up on a side stream (cuDNN/cuBLAS workspaces, lazy init) before capture, as the
        # CUDA-graph docs require; autocast's weight cache is off so casts are captured too.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), _no_autocast_cache():
            for _ in range(self.warmup):
                self.unet(static_x, static_t)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), _no_autocast_cache():
            static_out = self.unet(static_x, static_t)
        return graph, static_x, static_t, static_out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        key = self._key(x, t)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, t)
        graph, static_x, static_t, static_out = self._graphs[key]
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        return static_out.clone()


@contextlib.contextmanager
def _no_autocast_cache() -> Iterator[None]:
    """Autocast's cast cache must not hold tensors across a graph capture."""
    if not torch.is_autocast_enabled("cuda"):
        yield
        return
    with torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False):
        yield


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
