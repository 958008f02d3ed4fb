"""Reproducible Gaussian noise for samplers and training.

A ``torch.Generator`` lives on one device; drawing on the generator's device and then moving the
result makes a CPU-seeded generator give identical samples whichever device the sampler runs on.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor


def randn(
    shape: Sequence[int],
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Standard normal noise of ``shape`` drawn from ``generator`` (or the global RNG).

    Returns:
        ``shape`` tensor on ``device`` in ``dtype`` (default float32).
    """
    dtype = dtype or torch.float32
    draw_device = generator.device if generator is not None else device
    # Draw in float32 at least: bf16/fp16 draws would differ from float32 ones for the same seed.
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    z = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=draw_dtype)
    return z.to(device=device, dtype=dtype)
