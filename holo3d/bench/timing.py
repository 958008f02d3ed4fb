"""Timing: warm-up, then repeats timed one by one; figures are medians.

On CUDA each repeat is bracketed by CUDA events after a device synchronize, so the time is from the
first launch to the completion of the last kernel (the host running ahead cannot hide GPU work, and
a host-bound step shows up as GPU idle time inside the bracket). The host wall time of each repeat
(perf_counter around the call plus a synchronize) is kept as a cross-check.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch


@dataclass
class Timing:
    """Seconds per repeat: device-side (CUDA events; == wall on CPU) and host wall clock."""

    times_s: List[float]
    wall_s: List[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def stats(self) -> Dict[str, float]:
        """Summary written next to a figure: median / min / max and the number of repeats."""
        return {
            "median_s": self.median_s,
            "min_s": min(self.times_s),
            "max_s": max(self.times_s),
            "wall_median_s": statistics.median(self.wall_s),
            "repeats": len(self.times_s),
        }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn: Callable[[], object], device: torch.device) -> tuple:
    synchronize(device)
    wall_start = time.perf_counter()
    if device.type != "cuda":
        fn()
        elapsed = time.perf_counter() - wall_start
        return elapsed, elapsed
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    wall = time.perf_counter() - wall_start
    return start.elapsed_time(end) / 1e3, wall


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Runs ``fn`` ``warmup`` times untimed (allocator, cuDNN autotuning, compilation), then
    ``repeats`` times timed. ``repeats`` must be >= 1."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times, walls = [], []
    for _ in range(repeats):
        device_s, wall_s = _time_once(fn, device)
        times.append(device_s)
        walls.append(wall_s)
    return Timing(times, walls)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> Dict[str, float]:
    """Peak allocated and reserved (caching allocator) memory since the last reset, in GiB."""
    if device.type != "cuda":
        return {"allocated_gib": 0.0, "reserved_gib": 0.0}
    return {
        "allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30,
    }


def free_device_memory(device: torch.device) -> None:
    """Returns cached blocks to the driver so that one figure's peak does not include another's."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
