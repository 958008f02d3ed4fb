"""``--profile WHAT``: where the time of one workload goes, as a torch.profiler table of top ops.

WHAT is one of train | unet | sample | render, run with the first value of the matching lists
(``--scenes``, ``--precisions``, ``--unet-batches``, ``--chunks``, bootstrap off unless only "on"
is asked for). After the usual warm-up, ``min(repeats, 5)`` steps are recorded; the table (sorted
by self device time on GPU, self CPU time on CPU) is written to ``PROFILE_DIR/profile_WHAT.txt``
(plus a Chrome trace with ``--trace``), and one JSON line ``profile.WHAT`` gives the time per step
seen by the profiler and the top ops with their share of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch.profiler import ProfilerActivity, profile

from holo3d.bench.context import BenchContext
from holo3d.bench.render_frame import make_render
from holo3d.bench.sample_run import make_sample
from holo3d.bench.timing import synchronize
from holo3d.bench.train_step import make_train_step
from holo3d.bench.unet_step import make_denoise_step

PROFILE_TARGETS = ("train", "unet", "sample", "render")
TOP_OPS = 15


def workload(ctx: BenchContext, what: str) -> tuple:
    """(zero-argument step, its config) for a profile target."""
    s = ctx.settings
    precision = s.precisions[0]
    if what == "train":
        config = dict(scenes=s.scenes[0], precision=precision, bootstrap=s.bootstrap == [True])
        return make_train_step(ctx, s.scenes[0], precision), config
    ctx.model.eval()
    if what == "unet":
        return make_denoise_step(ctx, s.unet_batches[0], precision), dict(batch=s.unet_batches[0],
                                                                          precision=precision)
    if what == "sample":
        # A 20-step DDIM sample: the per-step ops of any sampler, without 1000 steps of records.
        return make_sample(ctx, "ddim", 20, precision), dict(n=s.sample_n, sampler="ddim", steps=20,
                                                             precision=precision)
    if what == "render":
        chunk = s.chunk_sizes[0]
        return make_render(ctx, s.render_views[0], chunk, precision), dict(
            views=s.render_views[0], chunk_size=chunk or "full", precision=precision)
    raise ValueError(f"--profile {what!r}: expected one of {PROFILE_TARGETS}")


def top_ops(events, device: torch.device, steps: int) -> tuple:
    """(total self time per step in ms, the TOP_OPS ops with ms per step, share and calls)."""
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, attr), reverse=True)
    total_us = sum(getattr(e, attr) for e in rows) or 1.0
    ops = [
        {"name": e.key, "ms_per_step": getattr(e, attr) / 1e3 / steps,
         "share": getattr(e, attr) / total_us, "calls_per_step": e.count / steps}
        for e in rows[:TOP_OPS]
    ]
    return total_us / 1e3 / steps, ops


def record(step: Callable[[], object], device: torch.device, warmup: int, steps: int, trace: str = ""):
    """Runs warm-up steps, then records ``steps`` steps; returns the profiler."""
    for _ in range(warmup):
        step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, acc_events=True) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    if trace:
        prof.export_chrome_trace(trace)
    return prof


def run_profile(ctx: BenchContext, what: str, out_dir: str, trace: bool = False) -> Dict:
    s, device = ctx.settings, ctx.device
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / f"profile_{what}.txt"
    steps = max(1, min(s.repeats, 5))
    trace_path = str(folder / f"profile_{what}.trace.json") if trace else ""
    saved_prob = ctx.model.bootstrap_prob
    ctx.model.bootstrap_prob = 1.0 if s.bootstrap == [True] else 0.0
    try:
        step, figure_config = workload(ctx, what)
        prof = record(step, device, max(1, s.warmup), steps, trace_path)
    finally:
        ctx.model.bootstrap_prob = saved_prob
    config = ctx.config(**figure_config)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    table_path.write_text(events.table(sort_by=sort_by, row_limit=40) + "\n")
    per_step_ms, ops = top_ops(events, device, steps)
    measure = "GPU kernel time" if device.type == "cuda" else "CPU op self time"
    return ctx.emit(f"profile.{what}", per_step_ms, "ms", config, measure=f"{measure} per step",
                    table=str(table_path),
                    trace=trace_path or None, steps=steps, top_ops=ops)


def profile_targets(spec: str) -> List[str]:
    targets = [t for t in spec.split(",") if t]
    unknown = [t for t in targets if t not in PROFILE_TARGETS]
    if unknown:
        raise ValueError(f"--profile {spec}: unknown {unknown}; expected some of {PROFILE_TARGETS}")
    return targets
