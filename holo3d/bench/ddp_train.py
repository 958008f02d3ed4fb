"""Multi-GPU training throughput: the training step of figure 1 under DDP, one process per GPU.

    torchrun --standalone --nproc_per_node 2 -m holo3d.bench.ddp_train --scenes 8 --precision bf16
    torchrun --standalone --nproc_per_node 1 -m holo3d.bench.ddp_train --scenes 8   # the 1-GPU base

Each rank trains on its own synthetic batch of ``--scenes`` scenes through accelerate, exactly as
``HoloTrainingLoop`` wraps the model (DDP with ``find_unused_parameters``), so the gradient
all-reduce is in every timed step. Rank 0 prints one JSON line: scenes/s over all GPUs.
"""

import argparse
import os
import statistics
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from holo3d.bench.model_setup import build_model
from holo3d.bench.report import Reporter
from holo3d.bench.settings import BASE_MODEL, TINY_MODEL
from holo3d.bench.synthetic_batch import synthetic_frame_data
from holo3d.bench.train_step import make_optimizer
from holo3d.train.training_loop import optimization_step


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8, help="scenes per GPU per step")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--frames-per-scene", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None, help="also append the JSON line to this file")
    parser.add_argument("--tiny", action="store_true", help="tiny model (CPU check that it runs)")
    return parser.parse_args(argv)


def timed_steps(accelerator: Accelerator, model, optimizer, scheduler, batch, n: int) -> list:
    """Wall time of ``n`` DDP steps (the loop's ``optimization_step``), each ended by a device sync
    and a barrier (slowest rank)."""
    times = []
    for i in range(n):
        tic = time.perf_counter()
        optimization_step(model, batch, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler,
                          ema=None, clip_grad_norm=1.0, iteration=i)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        accelerator.wait_for_everyone()
        times.append(time.perf_counter() - tic)
    return times


def main(argv=None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator(
        mixed_precision="bf16" if args.precision == "bf16" else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_model(TINY_MODEL if args.tiny else BASE_MODEL, accelerator.device, seed=0)
    optimizer, scheduler = make_optimizer(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = synthetic_frame_data(args.scenes, args.frames_per_scene, args.image_size, accelerator.device,
                                 seed=accelerator.process_index)
    timed_steps(accelerator, model, optimizer, scheduler, batch, args.warmup)
    step_s = statistics.median(timed_steps(accelerator, model, optimizer, scheduler, batch, args.repeats))
    if accelerator.is_main_process:
        world = accelerator.num_processes
        config = {"gpus": world, "scenes_per_gpu": args.scenes, "precision": args.precision,
                  "frames_per_scene": args.frames_per_scene, "image_size": args.image_size,
                  "repeats": args.repeats, "launcher": "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "accelerate"}
        reporter = Reporter(accelerator.device, args.out)
        reporter.emit("train.ddp_step_time", step_s, "s", config)
        reporter.emit("train.ddp_scenes_per_s", world * args.scenes / step_s, "scenes/s", config)


if __name__ == "__main__":
    main()
