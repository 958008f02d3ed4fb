"""Exponential moving average of model weights (used for evaluation and sampling when present)."""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Tuple

import torch

# (shadow module, source module, attribute name): where a tensor lives. Tensors are looked up there
# at every update, so a buffer that a model reassigns (rather than fills) is still the one copied.
_Slot = Tuple[torch.nn.Module, torch.nn.Module, str]


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * param`` for every floating-point parameter.

    The shadow copy is a full module (deep copy of the model at start), so evaluation code can use it
    exactly like the model. Buffers (BatchNorm running statistics, a latent model's data statistics)
    are copied, not averaged: an average would mix a statistic measured once during training with its
    placeholder from before (the voxel LDM's latent scale, set at the first batch, did exactly that).
    Persistent buffers and non-floating-point parameters are copied (what the state dict holds);
    non-persistent buffers are the model's own constants and are left alone.

    Warm-up (``warmup=True``): the n-th averaging update after ``start_step`` uses
    ``min(decay, (1 + n) / (10 + n))``. Without it, the shadow keeps ``decay ** n`` of the weights of
    ``start_step`` (a third of them after 1100 updates at 0.999), so the EMA of a short run is a blend
    with an early, poor model; diffusion samples are very sensitive to that.

    An update is two multi-tensor launches, one ``_foreach_lerp_`` over the parameters and one
    ``_foreach_copy_`` over the buffers, whatever the number of tensors.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, start_step: int = 0, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"training_loop.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.warmup = warmup
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._source: Optional[torch.nn.Module] = None
        self._averaged: List[_Slot] = []
        self._copied: List[_Slot] = []

    def decay_at(self, step: int) -> float:
        """The averaging weight of the update at ``step``."""
        if step < self.start_step:  # the shadow simply tracks the weights: early weights are poor averages
            return 0.0
        if not self.warmup:
            return self.decay
        n = step - self.start_step
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        if self._source is not model:
            self._averaged, self._copied = _slots(self.module, model)
            self._source = model
        shadow, source = _tensors(self._averaged)
        if shadow:
            torch._foreach_lerp_(shadow, source, 1.0 - decay)
        shadow, source = _tensors(self._copied)
        if shadow:
            torch._foreach_copy_(shadow, source)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


def _slots(shadow: torch.nn.Module, source: torch.nn.Module) -> Tuple[List[_Slot], List[_Slot]]:
    """(averaged, copied) slots of the shadow and its source, matched by module path and name;
    a tensor shared by several modules is listed once."""
    sources = dict(source.named_modules(remove_duplicate=False))
    averaged: List[_Slot] = []
    copied: List[_Slot] = []
    seen = set()
    persistent = set(shadow.state_dict(keep_vars=True))  # every path; non-persistent buffers are not in it
    for path, module in shadow.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        tensors = [(name, t, True) for name, t in module.named_parameters(recurse=False)]
        tensors += [(name, t, False) for name, t in module.named_buffers(recurse=False)
                    if prefix + name in persistent]
        for name, tensor, is_parameter in tensors:
            if id(tensor) in seen:
                continue
            if path not in sources:
                raise ValueError(f"EMA: the model has no module {path!r} (its structure changed "
                                 "after the EMA copy was made)")
            seen.add(id(tensor))
            averages = is_parameter and tensor.is_floating_point()
            (averaged if averages else copied).append((module, sources[path], name))
    return averaged, copied


def _tensors(slots: List[_Slot]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The current (shadow tensors, source tensors) of ``slots``."""
    return ([getattr(shadow, name) for shadow, _, name in slots],
            [getattr(source, name) for _, source, name in slots])
