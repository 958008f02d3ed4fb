"""The official HoloDiffusion code's training step, timed on holo3d's synthetic batches (one GPU).

    OFFICIAL_DIR=~/src/holo_diffusion python -m holo3d.bench.official_step --scenes 1,8 --bootstrap off,on \\
        --out official.jsonl
    python -m holo3d.bench.official_step --compare holo3d.jsonl official.jsonl     # ratios only

OFFICIAL_DIR (or ``--official-dir``) is a user's checkout of github.com/facebookresearch/holo_diffusion.
Its code is imported from there (``sys.path``), never copied into holo3d; its imports need what its
model module needs (pytorch3d's Implicitron, visdom, and matplotlib, which Implicitron's video writer
imports; its trainer also needs plotly).

The model: its ``HoloDiffusionModel`` with the model block of OFFICIAL_DIR/configs/base.yaml merged onto
its defaults, except the ResNet's ``pretrained`` (false: no weights can be downloaded here; the cost is
the same). One no-grad forward materialises its LazyLinear first, as its experiment.py does.

One official step, as its ImplicitronTrainingLoop runs it: ``zero_grad``, forward in TRAINING mode,
backward, Adam step (lr, betas, foreach of base.yaml's optimizer block); base.yaml's clip_grad is 0 and
its Accelerator has no mixed precision, so the step is fp32 (TF32 flags: PyTorch's defaults unless
``--tf32``). Its forward pools one voxel grid ("only one single voxel grid is supported per GPU"), so S
scenes on one GPU are S steps, one per scene's batch of 16 frames at 800 px, drawn by
``holo3d.bench.synthetic_batch`` as holo3d's train figure draws them. Bootstrap off / on sets its
``bootstrap_prob`` to 0 / 1.

Figures (the bench Reporter's JSON lines): official.train.step_time (seconds for S scenes),
official.train.scenes_per_s, official.train.peak_memory (GiB). ``--compare`` pairs them with holo3d's
train.scenes_per_s / train.peak_memory lines (``python -m holo3d.bench --only train ...``) and prints
the ratios.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from holo3d.bench.model_setup import backend_flags, backend_state
from holo3d.bench.report import Reporter, checkout_commit, compare_or_run
from holo3d.bench.synthetic_batch import synthetic_frame_data
from holo3d.bench.timing import peak_memory_gib, reset_peak_memory, time_fn

FRAMES_PER_SCENE, IMAGE_SIZE = 16, 800  # the official base.yaml's batch: one sequence, 16 frames, 800 px
OFFICIAL_MODULE = "holo_diffusion.holo_diffusion_model"
OFFICIAL_REPO = "https://github.com/facebookresearch/holo_diffusion"


class OfficialCodeError(RuntimeError):
    """The official code cannot be found or imported from OFFICIAL_DIR."""


def import_official(official_dir: str):
    """The official ``holo_diffusion.holo_diffusion_model`` module, imported from ``official_dir``."""
    root = Path(official_dir or "").expanduser()
    if not official_dir or not (root / "holo_diffusion").is_dir():
        raise OfficialCodeError(f"OFFICIAL_DIR={official_dir!r} is not a checkout of {OFFICIAL_REPO} (no "
                                "holo_diffusion/ folder there); set OFFICIAL_DIR or --official-dir to one")
    sys.path.insert(0, str(root.resolve()))
    try:
        return importlib.import_module(OFFICIAL_MODULE)
    except Exception as error:  # noqa: BLE001 - any import failure is reported the same way
        raise OfficialCodeError(
            f"cannot import the official code ({OFFICIAL_MODULE}) from OFFICIAL_DIR={str(root)!r}: "
            f"{type(error).__name__}: {error}. Its model module needs pytorch3d's Implicitron, visdom and "
            "matplotlib importable") from None



def build_official(official_dir: str, device: torch.device, seed: int):
    """(model on device, Adam) as the official base.yaml sets them, ResNet ``pretrained`` off."""
    from omegaconf import OmegaConf
    from pytorch3d.implicitron.models.renderer.base import EvaluationMode
    from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args

    cls = import_official(official_dir).HoloDiffusionModel
    base = OmegaConf.load(Path(official_dir) / "configs" / "base.yaml")
    expand_args_fields(cls)
    cfg = OmegaConf.merge(get_default_args(cls),
                          base.model_factory_ImplicitronModelFactory_args.model_HoloDiffusionModel_args)
    cfg.image_feature_extractor_ResNetFeatureExtractor_args.pretrained = False
    torch.manual_seed(seed)
    model = cls(**cfg).to(device)
    with torch.no_grad():  # materialises its LazyLinear before the optimizer sees the parameters
        batch = synthetic_frame_data(1, FRAMES_PER_SCENE, IMAGE_SIZE, device, seed=seed)
        model(**{**batch, "evaluation_mode": EvaluationMode.TRAINING})
    opt = base.optimizer_factory_ImplicitronOptimizerFactory_args
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                 weight_decay=opt.weight_decay, foreach=opt.get("foreach", None))
    return model, optimizer


def official_step(model, optimizer, batch) -> None:
    """One step of its training loop: zero_grad, forward (TRAINING), backward, optimizer step."""
    from pytorch3d.implicitron.models.renderer.base import EvaluationMode

    optimizer.zero_grad()
    preds = model(**{**batch, "evaluation_mode": EvaluationMode.TRAINING})
    preds["objective"].backward()
    optimizer.step()


def measure(reporter: Reporter, model, optimizer, scenes: int, bootstrap: bool, args, device) -> None:
    """The three figures of S scenes (S official steps, one scene's batch each)."""
    batches = [synthetic_frame_data(1, FRAMES_PER_SCENE, IMAGE_SIZE, device, seed=args.seed + i)
               for i in range(scenes)]
    config = {"scenes": scenes, "frames_per_scene": FRAMES_PER_SCENE, "image_size": IMAGE_SIZE,
              "precision": "fp32", "bootstrap": bootstrap, "steps_per_figure": scenes, "warmup": args.warmup,
              "repeats": args.repeats, "bench": "official", "device": str(device), **backend_state(),
              "official_dir": args.official_dir, "official_commit": checkout_commit(args.official_dir),
              "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
    model.bootstrap_prob = 1.0 if bootstrap else 0.0
    model.train()
    reset_peak_memory(device)
    timing = time_fn(lambda: [official_step(model, optimizer, b) for b in batches], device, args.warmup,
                     args.repeats)
    memory = peak_memory_gib(device)
    reporter.emit("official.train.step_time", timing.median_s, "s", config, **timing.stats())
    reporter.emit("official.train.scenes_per_s", scenes / timing.median_s, "scenes/s", config)
    # S scenes are S sequential steps: the peak is one scene's.
    reporter.emit("official.train.peak_memory", memory["allocated_gib"], "GiB", config,
                  reserved_gib=memory["reserved_gib"], per_scene_gib=memory["allocated_gib"])


def run(args) -> int:
    device = torch.device(args.device)
    model, optimizer = build_official(args.official_dir, device, args.seed)
    reporter = Reporter(device, args.out)
    with backend_flags({"on": True, "off": False, "default": None}[args.tf32], False):
        for bootstrap, scenes in itertools.product(args.bootstrap, args.scenes):
            measure(reporter, model, optimizer, scenes, bootstrap, args, device)
    return 0


# ------------------------------------------------------------------------------------- ratios



def compare(holo_lines: Sequence[Dict[str, Any]],
            official_lines: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (scenes, bootstrap) measured by both on the same batch shape (frames per scene, image
    size): scenes/s and peak GiB per scene of each, and the ratios holo3d / official (speed-up)
    and official / holo3d (memory saving)."""
    def index(lines, figure):
        keys = ("scenes", "bootstrap", "frames_per_scene", "image_size")
        return {tuple(ln["config"].get(k) for k in keys): ln for ln in lines
                if ln["figure"] == figure and ln["status"] == "ok"}

    holo_speed, holo_mem = index(holo_lines, "train.scenes_per_s"), index(holo_lines, "train.peak_memory")
    off_speed = index(official_lines, "official.train.scenes_per_s")
    off_mem = index(official_lines, "official.train.peak_memory")
    rows = []
    for key in sorted(set(holo_speed) & set(off_speed)):
        row = {"scenes": key[0], "bootstrap": key[1], "holo3d_precision": holo_speed[key]["config"]["precision"],
               "holo3d_scenes_per_s": holo_speed[key]["value"], "official_scenes_per_s": off_speed[key]["value"]}
        row["speedup"] = row["holo3d_scenes_per_s"] / row["official_scenes_per_s"]
        if key in holo_mem and key in off_mem and holo_mem[key]["per_scene_gib"] > 0:  # 0: a CPU run
            row["holo3d_gib_per_scene"] = holo_mem[key]["per_scene_gib"]
            row["official_gib_per_scene"] = off_mem[key]["per_scene_gib"]
            row["memory_ratio"] = row["official_gib_per_scene"] / row["holo3d_gib_per_scene"]
        rows.append(row)
    return rows


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table of ``compare``'s rows."""
    lines = ["scenes bootstrap | holo3d scenes/s (precision) | official scenes/s (fp32) | speed-up | "
             "GiB/scene holo3d / official"]
    for r in rows:
        memory = (f"{r['holo3d_gib_per_scene']:.2f} / {r['official_gib_per_scene']:.2f}"
                  if "memory_ratio" in r else "-")
        bootstrap = "on" if r["bootstrap"] else "off"
        holo = f"{r['holo3d_scenes_per_s']:.2f} ({r['holo3d_precision']})"
        lines.append(f"{r['scenes']:>6} {bootstrap:>9} | {holo:>27} | {r['official_scenes_per_s']:>24.2f} | "
                     f"{r['speedup']:>7.2f}x | {memory}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m holo3d.bench.official_step", description=__doc__.split("\n")[0])
    p.add_argument("--official-dir", default=os.environ.get("OFFICIAL_DIR", ""),
                   help="checkout of facebookresearch/holo_diffusion (default: $OFFICIAL_DIR)")
    p.add_argument("--scenes", type=lambda t: [int(v) for v in t.split(",") if v], default=[1, 8])
    p.add_argument("--bootstrap", type=lambda t: [{"off": False, "on": True}[v] for v in t.split(",") if v],
                   default=[False, True])
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tf32", choices=("on", "off", "default"), default="default",
                   help="TF32 switches (default: PyTorch's, as the official trainer leaves them)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--compare", nargs=2, metavar=("HOLO3D_JSONL", "OFFICIAL_JSONL"),
                   help="only print the ratios of two earlier runs' lines")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    return compare_or_run(parse_args(argv), "holo3d.bench.official_step", compare, format_rows, run,
                          OfficialCodeError, "no (scenes, bootstrap) measured by both runs")


if __name__ == "__main__":
    sys.exit(main())
