"""Training statistics: the logged scalars of a step, running means over an epoch, their text form.

A step's scalars can be read at once (``scalar_values``, one host sync) or kept on the device in a
``StepRecord`` and read later, many steps with one sync (``read_records``): the sync-free training
step returns records, and the loop reads them every ``log_interval`` steps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch


def scalar_tensors(preds: Mapping, names: Iterable[str]) -> Tuple[Tuple[str, ...], List[torch.Tensor],
                                                                  Dict[str, float]]:
    """The named scalar entries of a model's output, without a host sync: (names of the tensor
    entries, those entries as 0-d float32 tensors on their device, the entries given as Python
    numbers as floats)."""
    entries = {k: preds[k] for k in names if k in preds and preds[k] is not None}
    host = {k: float(v) for k, v in entries.items() if not torch.is_tensor(v)}
    stacked = tuple(k for k, v in entries.items() if torch.is_tensor(v) and v.numel() == 1)
    return stacked, [entries[k].detach().float().reshape(()) for k in stacked], host


def scalar_values(preds: Mapping, names: Iterable[str]) -> Dict[str, float]:
    """The named entries of a model's output that are scalars, as floats (one host sync)."""
    stacked, tensors, values = scalar_tensors(preds, names)
    if tensors:
        values.update(zip(stacked, torch.stack(tensors).cpu().tolist()))
    return values


@dataclass
class StepRecord:
    """One training step's logged values, partly still on the device.

    ``values`` (len(names) + 1,) float32 on the device holds the logged scalars named by ``names``,
    then the global gradient norm of the step's update (0 for a micro-batch of gradient
    accumulation, which makes none). ``host`` holds values already on the host (averaged like the
    logged scalars), ``extras`` values that are logged but not averaged (learning rate, memory).
    """

    iteration: int
    names: Tuple[str, ...] = ()
    values: Optional[torch.Tensor] = None
    host: Dict[str, float] = field(default_factory=dict)
    extras: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_host(cls, iteration: int, values: Mapping[str, float]) -> "StepRecord":
        """A record of values already read (the step that syncs every time)."""
        return cls(iteration, host=dict(values))


def read_records(records: Sequence[StepRecord]) -> List[Tuple[Dict[str, float], float]]:
    """Every record's (logged values as floats, gradient norm), with one host sync for them all.

    The gradient norm is 0.0 for records read on the host (their step checked its values itself).
    """
    on_device = [r.values for r in records if r.values is not None]
    flat = torch.cat(on_device).cpu().tolist() if on_device else []
    out, offset = [], 0
    for record in records:
        values, grad_norm = {}, 0.0
        if record.values is not None:
            count = len(record.names)
            values = dict(zip(record.names, flat[offset: offset + count]))
            grad_norm = flat[offset + count]
            offset += count + 1
        values.update(record.host)
        out.append((values, grad_norm))
    return out


class RunningStats:
    """Means of every value seen since the last reset (one epoch)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: Dict[str, float] = defaultdict(float)
        self._counts: Dict[str, int] = defaultdict(int)

    def update(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._sums[name] += value
            self._counts[name] += 1

    def means(self) -> Dict[str, float]:
        return {name: self._sums[name] / self._counts[name] for name in self._sums}


def format_stats(values: Mapping[str, float], keys: Iterable[str] = ()) -> str:
    """Short ``key=value`` line, the given keys first."""
    ordered = [k for k in keys if k in values] + sorted(k for k in values if k not in set(keys))
    return " ".join(f"{k}={values[k]:.4g}" for k in ordered)


def gpu_memory_gib(device: torch.device) -> float:
    """Peak allocated memory on a CUDA device since the last reset, in GiB (0 on CPU)."""
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**30
