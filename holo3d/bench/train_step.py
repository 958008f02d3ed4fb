"""Figure 1: the training step of the full model, its peak memory, and scenes per second.

One timed step is the loop's own step once the batch is on the device (holo3d/train/step.py):
``sync_free_step`` (step_sync "free", the loop's default: logged scalars kept on the device,
non-finite steps skipped by the fused optimizer) or ``optimization_step`` ("every": one host sync
reading the logged scalars), each under an Accelerator (bf16 autocast for "bf16", weights and Adam
fp32) with backward, gradient-norm clipping, ``optimizer.step``, ``scheduler.step``, the EMA update
and ``zero_grad(set_to_none=True)``; the optimizer and schedule of ``HoloOptimizerFactory``'s
defaults (fused Adam) and clipping / EMA as configs/base.yaml sets them (``clip_grad_norm`` 1.0,
``ema_decay`` 0.999; the EMA copy counts in the peak memory). ``compile_step`` runs the forward
as the loop's ``compile_model`` does (torch.compile; at least COMPILE_WARMUP warm-up steps, the
graph and graph-break counts recorded); ``model_finite_check`` off drops the model's own sync.
Bootstrap "off"/"on" sets ``bootstrap_prob`` to 0/1, so every step is (not) bootstrapped.
Data loading is not in the step; ``train.batch_to_device`` times the loop's ``batch.to(device)``.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Callable, Dict

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from pytorch3d.implicitron.tools.config import expand_args_fields

from holo3d.bench.context import BenchContext
from holo3d.bench.synthetic_batch import batch_bytes, pinned, synthetic_frame_data
from holo3d.bench.timing import peak_memory_gib, reset_peak_memory, time_fn
from holo3d.train.ema import EMA
from holo3d.train.optimizer_factory import HoloOptimizerFactory
from holo3d.train.step import compiled_training_forward, optimization_step, sync_free_step

logger = logging.getLogger(__name__)

# Warm-up steps of a compiled step: compilation, and recompilations up to torch.compile's limit (8).
COMPILE_WARMUP = 10


def make_optimizer(model: torch.nn.Module):
    """The trainer's default optimizer and LR schedule (Adam, constant LR)."""
    expand_args_fields(HoloOptimizerFactory)
    return HoloOptimizerFactory()(model, iterations_per_epoch=1, max_epochs=1)


def bench_accelerator(precision: str, device: torch.device) -> Accelerator:
    """An Accelerator like the loop's for one process (the benchmark switches precisions in one
    process, so accelerate's shared state is reset first)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=device.type == "cpu")


def make_train_step(ctx: BenchContext, scenes: int, precision: str, step_sync: str = "free",
                    compile_step: bool = False, compile_mode: str = "default") -> Callable[[], object]:
    """A zero-argument training step on a fixed synthetic batch of ``scenes`` scenes: the training
    loop's own ``sync_free_step`` (step_sync "free") or ``optimization_step`` ("every")."""
    s, model, device = ctx.settings, ctx.model, ctx.device
    batch = synthetic_frame_data(scenes, s.frames_per_scene, s.image_size, device, seed=s.seed)
    optimizer, scheduler = make_optimizer(model)
    ema = EMA(model, s.ema_decay) if s.ema_decay > 0 else None
    accelerator = bench_accelerator(precision, device)
    counter = itertools.count()
    train_step = {"free": sync_free_step, "every": optimization_step}[step_sync]
    forward = None
    if compile_step:
        torch._dynamo.reset()  # earlier figures' compilations count against the recompile limit
        forward = compiled_training_forward(model, compile_mode)

    def step() -> object:
        return train_step(model, batch, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler,
                          ema=ema, clip_grad_norm=s.clip_grad_norm, iteration=next(counter), forward=forward)

    return step


def log_warmup(step: Callable[[], object], warmup: int) -> Callable[[], object]:
    """``step`` that logs the wall time of each of its first ``warmup`` calls: compiling a whole
    training step can take minutes, and a run cut off by its time limit should show how far it got."""
    calls = itertools.count(1)

    def logged() -> object:
        i, began = next(calls), time.perf_counter()
        out = step()
        if i <= warmup:
            logger.info("compiled step, warm-up call %d of %d: %.1f s (host time)", i, warmup,
                        time.perf_counter() - began)
        return out

    return logged


def compile_counts() -> Dict[str, int]:
    """torch.compile's graphs and graph breaks since the last reset (recorded with a compiled step)."""
    from torch._dynamo.utils import counters

    return {"compiled_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def measure_train_step(ctx: BenchContext, scenes: int, precision: str, bootstrap: bool,
                       step_sync: str = "free") -> None:
    s, model, device = ctx.settings, ctx.model, ctx.device
    warmup = max(s.warmup, COMPILE_WARMUP) if s.compile_step else s.warmup
    config = ctx.config(scenes=scenes, frames_per_scene=s.frames_per_scene, image_size=s.image_size,
                        precision=precision, bootstrap=bootstrap, clip_grad_norm=s.clip_grad_norm,
                        ema_decay=s.ema_decay, step_sync=step_sync, compile_step=s.compile_step,
                        compile_step_mode=s.compile_step_mode if s.compile_step else None,
                        model_finite_check=s.model_finite_check, warmup=warmup, repeats=s.repeats)
    figures = [("train.step_time", "s"), ("train.scenes_per_s", "scenes/s"), ("train.peak_memory", "GiB")]
    saved = model.bootstrap_prob, model.check_finite
    model.bootstrap_prob = 1.0 if bootstrap else 0.0
    model.check_finite = s.model_finite_check
    try:
        with ctx.guard(figures, config):
            reset_peak_memory(device)  # after the guard freed what earlier figures left
            step = make_train_step(ctx, scenes, precision, step_sync, s.compile_step, s.compile_step_mode)
            if s.compile_step:
                step = log_warmup(step, warmup)
            timing = time_fn(step, device, warmup, s.repeats)
            memory = peak_memory_gib(device)
            extra = compile_counts() if s.compile_step else {}
            ctx.emit("train.step_time", timing.median_s, "s", config, **timing.stats(), **extra)
            ctx.emit("train.scenes_per_s", scenes / timing.median_s, "scenes/s", config)
            ctx.emit("train.peak_memory", memory["allocated_gib"], "GiB", config,
                     reserved_gib=memory["reserved_gib"], per_scene_gib=memory["allocated_gib"] / scenes)
    finally:
        model.bootstrap_prob, model.check_finite = saved
        model.zero_grad(set_to_none=True)


def measure_batch_to_device(ctx: BenchContext, scenes: int) -> None:
    """Host-to-device copy of one batch (the loop's ``batch.to(device)``), pageable and pinned."""
    s, device = ctx.settings, ctx.device
    host = synthetic_frame_data(scenes, s.frames_per_scene, s.image_size, torch.device("cpu"), s.seed)
    for is_pinned in (False, True):
        config = ctx.config(scenes=scenes, frames_per_scene=s.frames_per_scene,
                            image_size=s.image_size, pinned=is_pinned)
        with ctx.guard([("train.batch_to_device", "s")], config):
            batch = pinned(host) if is_pinned else host
            timing = time_fn(lambda: batch.to(device), device, 1, s.repeats)
            ctx.emit("train.batch_to_device", timing.median_s, "s", config,
                     gib_per_s=batch_bytes(batch) / 2**30 / timing.median_s, **timing.stats())


def run_train(ctx: BenchContext) -> None:
    s = ctx.settings
    for step_sync, bootstrap, precision, scenes in itertools.product(s.step_sync, s.bootstrap, s.precisions,
                                                                     s.scenes):
        measure_train_step(ctx, scenes, precision, bootstrap, step_sync)
    if ctx.device.type == "cuda":
        for scenes in s.scenes:
            measure_batch_to_device(ctx, scenes)
