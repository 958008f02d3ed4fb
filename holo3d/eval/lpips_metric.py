"""LPIPS (torchmetrics) only when its ImageNet backbone weights are already under TORCH_HOME.

torchmetrics ships LPIPS's linear heads but builds the backbone with torchvision's ImageNet weights,
which it would download. Nothing is downloaded here: ``lpips_unavailable_reason`` says in one line
why LPIPS is skipped, and ``lpips`` refuses to run without the file rather than fetching it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

# LPIPS net type -> (torchvision weights enum) of its backbone.
_BACKBONE_WEIGHTS = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}


def lpips_weights_path(net_type: str = "alex") -> Path:
    """Where torchvision looks for the backbone checkpoint: $TORCH_HOME/hub/checkpoints/<file>."""
    if net_type not in _BACKBONE_WEIGHTS:
        raise ValueError(f"LPIPS net_type={net_type!r}; expected one of {sorted(_BACKBONE_WEIGHTS)}")
    import torchvision  # here, not at module level: see image_metrics on import cost

    weights = getattr(torchvision.models, _BACKBONE_WEIGHTS[net_type]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def lpips_unavailable_reason(net_type: str = "alex") -> Optional[str]:
    """None when LPIPS can run offline, else one line saying what is missing and where."""
    path = lpips_weights_path(net_type)
    if path.is_file():
        return None
    return (
        f"LPIPS skipped: its {net_type} ImageNet backbone weights are not in TORCH_HOME "
        f"(expected {path}; nothing is downloaded)"
    )


def lpips(pred: torch.Tensor, gt: torch.Tensor, net_type: str = "alex") -> torch.Tensor:
    """Per-image LPIPS, lower is better: (B, 3, H, W) x2 in [0, 1] -> (B,)."""
    reason = lpips_unavailable_reason(net_type)
    if reason is not None:
        raise FileNotFoundError(reason)
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity

    return learned_perceptual_image_patch_similarity(
        pred.float().clamp(0, 1), gt.float().clamp(0, 1), net_type=net_type, reduction="none",
        normalize=True,
    ).reshape(-1)
