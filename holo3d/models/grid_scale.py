"""HoloDiffusion's grid scale: the number the lifted grid V0 is divided by before it is diffused.

``grid_scale`` (a model config key) is one of:

    a number > 0   a constant of the config (1.0: V0 as lifted);
    "auto"         V0's standard deviation, measured once on the first training batch;
    "running"      an exponential moving average of V0's per-batch standard deviation, updated by
                   every training step and frozen outside training. The lifter is trained with the
                   rest of the model and its grids spread out as it learns, so a scale measured on the
                   first batch stops making the data unit variance; the running value follows them.

Measured scales live in a persistent 0-d buffer, so checkpoints and the EMA copy carry them; 0 means
"not measured yet".
"""

from __future__ import annotations

import math
from typing import Any, List

import torch

GRID_SCALE_MODES = ("auto", "running")
# Weight of the old value in each running update: a time constant of about a hundred steps, long
# enough to average out the batch-to-batch spread of a few scenes, short enough to follow the lifter.
RUNNING_DECAY = 0.99
# Floor of a running batch statistic: a constant V0 (a lifter that has collapsed) must not divide by 0.
MIN_STD = 1e-6


def grid_scale_problems(value: Any) -> List[str]:
    """[] for a valid grid_scale (a finite number > 0, "auto" or "running"), else the config error."""
    if isinstance(value, str) and value in GRID_SCALE_MODES:
        return []
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return []
    return [f"grid_scale={value!r} (must be a number > 0, 'auto' or 'running')"]


@torch.no_grad()
def measured_std(v0: torch.Tensor) -> float:
    """V0's (S, F, D, H, W) population standard deviation over every rank's batch (a host read)."""
    v0 = v0.double()
    sums = torch.stack([v0.sum(), v0.square().sum(), v0.new_tensor(float(v0.numel()))])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums)
    mean = sums[0] / sums[2]
    return float((sums[1] / sums[2] - mean**2).clamp_min(0).sqrt())


@torch.no_grad()
def update_running_scale_(scale: torch.Tensor, v0: torch.Tensor, decay: float = RUNNING_DECAY) -> None:
    """Moves the 0-d ``scale`` buffer towards V0's (S, F, D, H, W) standard deviation, in place.

    The first update (``scale`` still 0) takes the batch's value as it is. Tensor ops only: no host
    read and no branch on a value, so a compiled training step keeps one graph. Under DDP each rank
    updates its own copy from its own batch; DDP's buffer broadcast makes rank 0's the one used.
    """
    std = v0.detach().float().std(unbiased=False).clamp_min(MIN_STD)
    old = scale.float()
    new = torch.where(old > 0, decay * old + (1.0 - decay) * std, std)
    scale.copy_(new.to(scale.dtype))
