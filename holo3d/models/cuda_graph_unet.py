"""Inference-only CUDA-graph replay of a U-Net (3D or 2D), for sampling loops.

A small input (a 16^3 grid, a few 64^2 views) makes each U-Net call launch-bound: hundreds of small
kernels whose launch overhead dominates. Capturing the whole forward once per input shape and
replaying it removes that overhead (BENCHMARKS.md has the measured steps and chains).
"""

import contextlib
from typing import Dict, Iterator, Tuple

import torch
from torch import nn


class CudaGraphed(nn.Module):
    """Replays a CUDA graph of ``unet(*inputs)`` captured on first use of each (shapes, dtypes, autocast).

    Inference only (no autograd). The inputs are tensors (e.g. x and t, or x, c_noise and a condition
    token); they are copied into static buffers, the graph replays, and the output is cloned: callers
    may keep it while the next call overwrites the static output.
    """

    def __init__(self, unet: nn.Module, warmup: int = 3):
        super().__init__()
        self.unet = unet
        self.warmup = warmup
        self._graphs: Dict[Tuple, Tuple[torch.cuda.CUDAGraph, Tuple[torch.Tensor, ...], torch.Tensor]] = {}

    @staticmethod
    def _key(inputs: Tuple[torch.Tensor, ...]) -> Tuple:
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        return tuple((tuple(a.shape), a.dtype, a.stride()) for a in inputs) + (autocast, dtype)

    def _capture(self, inputs: Tuple[torch.Tensor, ...]):
        static = tuple(a.clone() for a in inputs)
        # Warm-up on a side stream (cuDNN/cuBLAS workspaces, lazy init) before capture, as the
        # CUDA-graph docs require; autocast's weight cache is off so casts are captured too.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), _no_autocast_cache():
            for _ in range(self.warmup):
                self.unet(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), _no_autocast_cache():
            static_out = self.unet(*static)
        return graph, static, static_out

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = self._key(inputs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static, static_out = self._graphs[key]
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
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




@contextlib.contextmanager
def graphed_unet(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """``model.unet`` replaced by its CUDA-graph replay for the block (no-op off CUDA)."""
    unet = getattr(model, "unet", None)
    if not enabled or unet is None or not next(unet.parameters()).is_cuda:
        yield
        return
    model.unet = CudaGraphed(unet)
    try:
        yield
    finally:
        model.unet = unet
