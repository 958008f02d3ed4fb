"""Figure 1: the training step of the full model, its peak memory, and scenes per second.

One timed step is ``holo3d.train.training_loop.optimization_step``, the loop's own step once the
batch is on the device (under an Accelerator: bf16 autocast for "bf16", weights and Adam fp32; the
one host sync reading the logged scalars, backward, gradient-norm clipping, ``optimizer.step``,
``scheduler.step``, the EMA update and ``zero_grad(set_to_none=True)``), with the optimizer and
schedule of ``HoloOptimizerFactory``'s defaults and clipping / EMA as configs/base.yaml sets them
(``clip_grad_norm`` 1.0, ``ema_decay`` 0.999; the EMA copy counts in the peak memory).
Bootstrap "off"/"on" sets ``bootstrap_prob`` to 0/1, so every step is (not) bootstrapped.
Data loading is not in the step; ``train.batch_to_device`` times the loop's ``batch.to(device)``.
"""

from __future__ import annotations

import itertools
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
from holo3d.train.training_loop import optimization_step


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


def make_train_step(ctx: BenchContext, scenes: int, precision: str) -> Callable[[], Dict[str, float]]:
    """A zero-argument training step on a fixed synthetic batch of ``scenes`` scenes: the training
    loop's own ``optimization_step``."""
    s, model, device = ctx.settings, ctx.model, ctx.device
    batch = synthetic_frame_data(scenes, s.frames_per_scene, s.image_size, device, seed=s.seed)
    optimizer, scheduler = make_optimizer(model)
    ema = EMA(model, s.ema_decay) if s.ema_decay > 0 else None
    accelerator = bench_accelerator(precision, device)
    counter = itertools.count()

    def step() -> Dict[str, float]:
        return optimization_step(model, batch, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler,
                                 ema=ema, clip_grad_norm=s.clip_grad_norm, iteration=next(counter))

    return step


def measure_train_step(ctx: BenchContext, scenes: int, precision: str, bootstrap: bool) -> None:
    s, model, device = ctx.settings, ctx.model, ctx.device
    config = ctx.config(scenes=scenes, frames_per_scene=s.frames_per_scene, image_size=s.image_size,
                        precision=precision, bootstrap=bootstrap, clip_grad_norm=s.clip_grad_norm,
                        ema_decay=s.ema_decay, warmup=s.warmup, repeats=s.repeats)
    figures = [("train.step_time", "s"), ("train.scenes_per_s", "scenes/s"), ("train.peak_memory", "GiB")]
    saved_prob = model.bootstrap_prob
    model.bootstrap_prob = 1.0 if bootstrap else 0.0
    try:
        with ctx.guard(figures, config):
            reset_peak_memory(device)  # after the guard freed what earlier figures left
            timing = time_fn(make_train_step(ctx, scenes, precision), device, s.warmup, s.repeats)
            memory = peak_memory_gib(device)
            ctx.emit("train.step_time", timing.median_s, "s", config, **timing.stats())
            ctx.emit("train.scenes_per_s", scenes / timing.median_s, "scenes/s", config)
            ctx.emit("train.peak_memory", memory["allocated_gib"], "GiB", config,
                     reserved_gib=memory["reserved_gib"], per_scene_gib=memory["allocated_gib"] / scenes)
    finally:
        model.bootstrap_prob = saved_prob
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
    for bootstrap, precision, scenes in itertools.product(s.bootstrap, s.precisions, s.scenes):
        measure_train_step(ctx, scenes, precision, bootstrap)
    if ctx.device.type == "cuda":
        for scenes in s.scenes:
            measure_batch_to_device(ctx, scenes)
