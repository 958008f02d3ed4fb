"""Training statistics: running means of the logged values over an epoch, and their text form."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, Mapping

import torch


def scalar_values(preds: Mapping, names: Iterable[str]) -> Dict[str, float]:
    """The named entries of a model's output that are scalars, as floats (one host sync)."""
    tensors = {k: preds[k] for k in names if k in preds and preds[k] is not None}
    values = {k: v for k, v in tensors.items() if not torch.is_tensor(v)}
    stacked = [k for k, v in tensors.items() if torch.is_tensor(v) and v.numel() == 1]
    if stacked:
        flat = torch.stack([tensors[k].detach().float().reshape(()) for k in stacked]).cpu()
        values.update(dict(zip(stacked, flat.tolist())))
    return {k: float(v) for k, v in values.items()}


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
