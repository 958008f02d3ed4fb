"""The model under benchmark: built from dotted overrides, with non-degenerate random weights.

A freshly built HoloDiffusionModel has zero-initialised U-Net output layers, so its denoiser predicts
exactly 0 and every render of its output is the same flat colour. Timing does not care, but the
numerics check would compare zeros with zeros; ``randomise_zero_init`` gives those layers small
random weights so outputs depend on the inputs. Precision follows the training loop: fp32 weights,
and for "bf16" ``torch.autocast(bfloat16)`` around the forward (what accelerate's bf16 does).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Mapping, Optional

import torch
from omegaconf import DictConfig
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args
from torch import nn

from holo3d.models.holo_diffusion import HoloDiffusionModel

PRECISIONS = ("fp32", "bf16")


def model_config(overrides: Mapping[str, Any]) -> DictConfig:
    """HoloDiffusionModel's default config with dotted overrides ("unet_args.model_channels": 32)."""
    expand_args_fields(HoloDiffusionModel)
    cfg = get_default_args(HoloDiffusionModel)
    for key, value in overrides.items():
        node, _, leaf = key.rpartition(".")
        target = cfg
        for part in filter(None, node.split(".")):
            target = target[part]
        target[leaf] = value
    return cfg


@torch.no_grad()
def randomise_zero_init(module: nn.Module, seed: int = 0, scale: float = 0.02) -> int:
    """Fills every all-zero weight matrix / kernel with N(0, scale^2); returns how many were filled."""
    generator = torch.Generator().manual_seed(seed)
    filled = 0
    for param in module.parameters():
        if param.ndim > 1 and not param.any():
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
            filled += 1
    return filled


def build_model(overrides: Mapping[str, Any], device: torch.device, seed: int = 0) -> HoloDiffusionModel:
    """The model on ``device`` in train mode, seeded, with zero-initialised layers randomised."""
    torch.manual_seed(seed)
    model = HoloDiffusionModel(**model_config(overrides))
    randomise_zero_init(model, seed)
    return model.to(device).train()


def model_summary(model: HoloDiffusionModel, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The model part of a figure's ``config``: the overrides and parameter counts (millions)."""
    count = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 3) if m is not None else 0
    return {
        **dict(overrides),
        "params_m": count(model),
        "unet_params_m": count(model.unet),
        "lifter_params_m": count(model.lifter),
    }


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: torch.autocast(bfloat16) on the device, as the training loop does."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {PRECISIONS}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def backend_flags(tf32: Optional[bool], cudnn_benchmark: bool) -> Iterator[None]:
    """Sets TF32 (matmul and cuDNN; None keeps PyTorch's defaults: off for matmul, on for cuDNN
    convolutions, which is what the training loop runs with) and cuDNN autotuning for a block."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.backends.cudnn.benchmark)
    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = old


def backend_state() -> Dict[str, bool]:
    """The backend switches in force, recorded in every figure's config."""
    return {
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
