"""Exponential moving average of model weights (used for evaluation and sampling when present)."""

from __future__ import annotations

import copy
from typing import Dict

import torch


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * param`` for every floating-point parameter.

    The shadow copy is a full module (deep copy of the model at start), so evaluation code can use it
    exactly like the model. Buffers (BatchNorm running statistics, a latent model's data statistics)
    are copied, not averaged: an average would mix a statistic measured once during training with its
    placeholder from before (the voxel LDM's latent scale, set at the first batch, did exactly that).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, start_step: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"training_loop.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # Before start_step the shadow simply tracks the weights: early weights are poor averages.
        decay = self.decay if step >= self.start_step else 0.0
        shadow = self.module.state_dict()
        source = model.state_dict()
        params = {name for name, _ in model.named_parameters()}
        floats = [name for name, t in shadow.items() if t.dtype.is_floating_point and name in params]
        # One fused multi-tensor launch instead of ~600 small ones per step (measured on GPU).
        torch._foreach_lerp_([shadow[n] for n in floats], [source[n].detach() for n in floats],
                             1.0 - decay)
        averaged = set(floats)
        for name, tensor in shadow.items():
            if name not in averaged:
                tensor.copy_(source[name])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
