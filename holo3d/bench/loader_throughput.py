"""Data-loading throughput of the image formats: objects (scenes) per second out of the multi-scene loader.

    python -m holo3d.bench.loader_throughput --format srn --root DIR --workers 0,2,8 --batches 20

Builds the format's dataset map provider (SRN, NMR or CO3D) on ``--root`` (generated there first from
the built-in set when missing), then times ``--batches`` batches of S scenes x N frames through
``MultiSceneDataLoaderMapProvider`` for each worker count, after one warm-up batch (worker start-up
is reported apart). One JSON line per worker count on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import List, Optional

import torch
from pytorch3d.implicitron.tools.config import expand_args_fields

from holo3d.data.multi_scene_provider import MultiSceneDataLoaderMapProvider
from holo3d.data.synthetic.builtin import ensure_builtin_dataset

PROVIDERS = {"srn": "holo3d.data.srn:SrnDatasetMapProvider", "nmr": "holo3d.data.nmr:NmrDatasetMapProvider"}


def dataset_map(fmt: str, root: str, category: str):
    """The format's DatasetMap on ``root``."""
    import importlib

    module, name = PROVIDERS[fmt].split(":")
    provider_cls = getattr(importlib.import_module(module), name)
    expand_args_fields(provider_cls)
    kwargs = {"dataset_root": root}
    if fmt == "srn" and category:
        kwargs["category"] = category
    return provider_cls(**kwargs).get_dataset_map()


def time_loader(datasets, workers: int, scenes: int, frames: int, batches: int) -> dict:
    """Seconds to the first batch (start-up) and objects/s over the next ``batches`` batches."""
    expand_args_fields(MultiSceneDataLoaderMapProvider)
    provider = MultiSceneDataLoaderMapProvider(
        scenes_per_batch=scenes, frames_per_scene=frames, num_workers=workers, pin_memory=False,
        persistent_workers=False,
    )
    loader = provider.get_data_loader_map(datasets).train
    tic = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    startup = time.perf_counter() - tic
    tic, done = time.perf_counter(), 0
    for _ in range(batches):
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            next(iterator)
        done += 1
    seconds = time.perf_counter() - tic
    return {"workers": workers, "startup_s": round(startup, 3), "objects_per_s": round(done * scenes / seconds, 2),
            "frames_per_s": round(done * scenes * frames / seconds, 1)}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--format", choices=sorted(PROVIDERS), required=True)
    parser.add_argument("--root", required=True, help="dataset root (the built-in set is generated there if missing)")
    parser.add_argument("--preset", default="demo", help="built-in preset to generate when --root is missing")
    parser.add_argument("--category", default="", help="SRN category (cars, chairs, ...)")
    parser.add_argument("--workers", default="0,2", help="comma list of worker counts")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device for generating the built-in set")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        ensure_builtin_dataset(args.root, args.preset, device=args.device, fmt=args.format)
    datasets = dataset_map(args.format, args.root, args.category)
    for workers in (int(w) for w in args.workers.split(",")):
        figure = time_loader(datasets, workers, args.scenes, args.frames, args.batches)
        figure.update(format=args.format, scenes=args.scenes, frames=args.frames, cpus=os.cpu_count())
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
