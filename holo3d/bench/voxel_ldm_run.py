"""The 3D voxel latent diffusion model end to end in a fixed wall-clock budget: does it learn?

    python -m holo3d.bench.voxel_ldm_run --out DIR --minutes 8        # one GPU
    python -m holo3d.bench.voxel_ldm_run --out DIR --tiny             # CPU smoke run, < 2 minutes
    python -m holo3d.bench.voxel_ldm_run --out DIR --output-resolution 128   # 128^3 data and samples

Every stage gets its share of the time left (``--minutes`` covers everything, data and evaluation
included), prints progress lines with the elapsed seconds, and rewrites DIR/metrics.json when it
ends, so a run killed part-way still leaves the figures of the stages it finished.

1. data: the built-in objects in voxel format, ``python -m holo3d.data.synthetic --format voxels``
   (``--categories``, ``--sequences`` objects each, 64^3 or ``--output-resolution``; 10 % val,
   10 % test); the voxel writer declares ``needs_renders = False``, so no view is rendered: the run
   checks that no image file was written and times the command. Reused from ``--work`` when a
   complete copy of the same spec is there.
2. stage 1: ``experiment.py --config-name voxel_ae.yaml`` as a subprocess under ``timeout`` (SIGTERM
   makes the trainer finish its step and write a checkpoint) for its share (``--ae-fraction``).
   VoxelLDM loads stage 1's newest *end-of-epoch* checkpoint, so one is written every few epochs, and
   a stage 1 stopped before its first is resumed to the end of that epoch (``finish_epoch``).
3. stage 2: ``experiment.py --config-name voxel_ldm.yaml ... autoencoder_exp_dir=<stage 1>`` likewise,
   until the evaluation reserve is reached (EMA from iteration 200, decay 0.999, so the short run's
   average is of trained weights). Without CUDA both trainers run in fp32 (``precision=no``).
4. evaluation on the held-out (val + test) shapes: the autoencoder's reconstruction IoU; per
   category ``generate_samples`` (label, guidance, DDIM 50 steps; samples.npy + a contact sheet);
   JSD / MMD-CD / COV-CD / 1-NNA-CD (holo3d.eval.shape_metrics) of samples, of an equal-size subset
   of the training split (the ceiling) and of the autoencoder's reconstructions, each against the
   held-out shapes; the class check (the category of each sample's nearest held-out shape by
   Chamfer distance, over every category); occupied fractions; then one timed
   ``python generate_samples.py ... num_samples=1000`` when the time left allows.

DIR ends up with few files: metrics.json (every figure with its definition under "definitions"),
contact_sheet.png (a block per category), run.log (the progress lines), ae_train.log and
ldm_train.log (the trainers' logs). Data, experiments and samples live in ``--work``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from holo3d.bench.timing import synchronize
from holo3d.data.synthetic.generate import read_manifest
from holo3d.data.synthetic.writers import get_writer
from holo3d.data.voxels import find_npy_files, open_split
from holo3d.eval import write_metrics_json
from holo3d.eval.shape_conversion import occupancy_to_points
from holo3d.eval.shape_metrics import evaluate_voxel_sets, pairwise_chamfer
from holo3d.io.experiment_files import newest_checkpoint
from holo3d.models.voxel_autoencoder import iou
from holo3d.models.voxel_ldm import encoder_input_and_target, load_frozen_autoencoder
from holo3d.sample.contact_sheet import write_png
from holo3d.sample.experiment_loader import load_experiment
from holo3d.sample.generate import generate_samples
from holo3d.sample.script_config import SampleConfig
from holo3d.sample.script_runner import inference_precision
from holo3d.train.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
TRAIN_LOOP = "training_loop_HoloTrainingLoop_args"
SET_METRICS = ("jsd", "jsd_native", "mmd_cd", "cov_cd", "nna_cd")
KILL_AFTER_S = 30  # a trainer still running this long after SIGTERM is killed
EPOCHS = 1_000_000  # the trainers stop on the time budget, never on max_epochs

DEFINITIONS = {
    "data.seconds": "wall seconds of the `python -m holo3d.data.synthetic --format voxels` command "
                    "(imports included); data.generation_seconds: its own figure (objects + files)",
    "data.image_files": "image files (png/jpg) under the voxel dataset root: 0 proves rendering was skipped",
    "training.*.samples_per_s": "batch_size / median over epochs (first and last left out) of the trainer's "
                                "logged sec_per_it (host time between consecutive steps, data loading included)",
    "training.*.samples_per_s_wall": "iterations x batch_size / wall seconds of the whole trainer command "
                                     "(start-up, validation and checkpoints included)",
    "ae_reconstruction.iou_*": "mean over shapes of voxel IoU (occupied = sigmoid(logit) > 0.5) between the "
                               "autoencoder's reconstruction and the shape; heldout = val + test split, "
                               "train_subset = as many training shapes",
    "shape_metrics.<cat>.<set>": "JSD (28^3 and native grid), MMD-CD, COV-CD, 1-NNA-CD (0.5 ideal) of a "
                                 "set against the category's held-out shapes (holo3d.eval.shape_metrics); "
                                 "samples / train_subset: mean and std over disjoint subsets of the "
                                 "reference set's size; ae_reconstructions: the held-out shapes' reconstructions "
                                 "(their 1-NNA is near 0 by construction: each one's nearest shape is its original)",
    "class_check.<cat>.fraction_nearest_is_label": "fraction of the category's samples whose nearest held-out "
                                                   "shape (Chamfer, every category's held-out shapes) has the "
                                                   "sample's label; empty samples count as misses",
    "class_check.<cat>.train_subset_fraction": "the same for training shapes of the category (the ceiling)",
    "occupied_fraction.<cat>": "mean fraction of occupied voxels of samples / held-out / training shapes",
    "generation.<cat>.seconds": "generate_samples' own phase seconds (sampling includes decoding to "
                                "occupancy; rendering covers the contact-sheet turntables) and wall_s of the call",
    "speed_1000": "`python generate_samples.py ... num_samples=1000 max_videos=0` as a subprocess: wall_s "
                  "(imports, model load, 1000 samples, decode, writing samples.npy); samples_per_s = "
                  "num_samples / (sampling + writing samples.npy seconds); direct_model_sample: the same "
                  "samples (sampler, steps, guidance, batch, bf16) by model.sample in this process without "
                  "generate_samples' per-step progress callback (for which VoxelLDM decodes x0 every step), "
                  "thresholded and copied to the host",
}


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What differs between the GPU run and the --tiny CPU smoke run."""

    ae_config: str
    ldm_config: str
    categories: Sequence[str]
    sequences: int  # objects per category (10 % val, 10 % test)
    resolution: int  # side of the data grids and of the samples (--output-resolution: the decoder's side)
    minutes: float
    safety_s: float  # kept free at the end of --minutes
    eval_reserve_s: float  # kept for the evaluation after training
    stop_allowance_s: float  # a trainer's step + checkpoint + exit after SIGTERM
    min_train_s: float
    checkpoint_every: Dict[str, int]  # epochs between end-of-epoch checkpoints, per stage
    extra: Dict[str, Sequence[str]]  # further overrides per stage
    num_samples: int  # samples per category (fewer when time is short)
    sample_batch: int
    sample_steps: int
    sheet_rows: int  # samples per category in the contact sheet
    image_size: int  # contact-sheet tile side
    n_frames: int  # turntable frames (the sheet shows 4 of them)
    points: int  # surface points per shape for Chamfer
    max_subsets: int
    speed_samples: int
    per_sample_guess_s: float  # sampling cost before one was measured
    fixed_guess_s: float  # model load and contact-sheet rendering per generate call
    import_allowance_s: float  # start-up of a generate_samples.py process


_EMA = (f"{TRAIN_LOOP}.ema_start_iteration=200", f"{TRAIN_LOOP}.ema_decay=0.999")
GPU = RunSettings(
    ae_config="voxel_ae", ldm_config="voxel_ldm", categories=("chair", "table", "mug", "car"), sequences=150,
    resolution=64, minutes=8.0, safety_s=10.0, eval_reserve_s=120.0, stop_allowance_s=12.0, min_train_s=30.0,
    checkpoint_every={"ae": 10, "ldm": 100}, extra={"ae": _EMA, "ldm": _EMA}, num_samples=1000, sample_batch=250,
    sample_steps=50, sheet_rows=4, image_size=128, n_frames=8, points=2048, max_subsets=5, speed_samples=1000,
    per_sample_guess_s=0.01, fixed_guess_s=10.0, import_allowance_s=15.0)
# --tiny writes no end-of-epoch checkpoint of stage 1 before its stop, so it also runs finish_epoch
TINY = RunSettings(
    ae_config="voxel_ae_demo", ldm_config="voxel_ldm_demo", categories=("chair", "mug"), sequences=20,
    resolution=16, minutes=1.75, safety_s=3.0, eval_reserve_s=40.0, stop_allowance_s=5.0, min_train_s=8.0,
    checkpoint_every={"ae": 1000, "ldm": 1000}, extra={"ae": (), "ldm": ()}, num_samples=8, sample_batch=8,
    sample_steps=10, sheet_rows=2, image_size=32, n_frames=4, points=256, max_subsets=2, speed_samples=8,
    per_sample_guess_s=0.5, fixed_guess_s=5.0, import_allowance_s=8.0)


# ----------------------------------------------------------------------------- the run's state


class Run:
    """Clock, budget, progress lines (stdout + OUT/run.log) and the report saved after each stage."""

    def __init__(self, args: argparse.Namespace, settings: RunSettings, already_elapsed_s: float = 0.0):
        self.t0 = time.perf_counter() - already_elapsed_s
        self.deadline = self.t0 + 60.0 * args.minutes - settings.safety_s
        self.out, self.work = Path(args.out), Path(args.work)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "run.log").write_text("")
        self.report: Dict[str, Any] = {"definitions": DEFINITIONS, "stages": {}}
        self.sample_cost: Optional[tuple] = None  # (s per sample, fixed s per call) of the last generate call

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def say(self, message: str) -> None:
        line = f"[{self.elapsed():7.1f} s] {message}"
        print(line, flush=True)
        with open(self.out / "run.log", "a") as log:
            log.write(line + "\n")

    def save(self) -> None:
        self.report["elapsed_s"] = self.elapsed()
        write_metrics_json(self.out / "metrics.json", self.report)

    def out_of_time(self, record: Dict[str, Any], needed_s: float) -> bool:
        """True (and the stage marked skipped) when less than ``needed_s`` seconds are left."""
        if self.remaining() >= needed_s and self.remaining() > 0:
            return False
        record.update(status="skipped", reason=f"{self.remaining():.0f} s left, about {needed_s:.0f} s needed")
        return True

    def section(self, *keys: str) -> Dict[str, Any]:
        """The report's dict at ``keys`` (created empty when absent): where a stage puts its figures."""
        node = self.report
        for key in keys:
            node = node.setdefault(key, {})
        return node

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Dict[str, Any]]:
        """Times a stage (report["stages"][name]: status, seconds, error or reason); a failure is
        recorded and the run goes on without it."""
        record: Dict[str, Any] = {"status": "running"}
        self.report["stages"][name] = record
        start = time.perf_counter()
        self.say(f"{name}: start ({self.remaining():.0f} s left)")
        try:
            yield record
            record["status"] = "ok" if record["status"] == "running" else record["status"]
        except Exception as error:  # noqa: BLE001 - later stages still report what they can
            record.update(status="failed", error=f"{type(error).__name__}: {error}")
        record["seconds"] = time.perf_counter() - start
        self.say(f"{name}: {record['status']} after {record['seconds']:.1f} s"
                 + "".join(f" ({record[k]})" for k in ("error", "reason") if k in record))
        self.save()


def run_command(cmd: List[str], log_path: Path, timeout_s: float) -> Dict[str, Any]:
    """Runs ``cmd`` in the repository root, output to ``log_path``; its exit status and wall seconds."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    return {"exit": code, "wall_s": time.perf_counter() - start}


def log_tail(path: Path, lines: int = 8) -> str:
    """The last lines of a subprocess log, progress-bar redraws (carriage returns) dropped."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    kept = [line.split("\r")[-1] for line in text.splitlines() if line.split("\r")[-1].strip()]
    return " | ".join(kept[-lines:])


# ----------------------------------------------------------------------------- 1. data


def data_root(run: Run, args) -> Path:
    side = f"_r{args.output_resolution}" if args.output_resolution else ""
    return run.work / "data" / f"voxels_{'-'.join(args.categories)}_s{args.sequences}{side}"


def ensure_data(run: Run, settings: RunSettings, args, figures: Dict[str, Any]) -> Path:
    """The voxel dataset: generated by the data command, or reused when the same spec is complete."""
    root = data_root(run, args)
    manifest = read_manifest(str(root))
    same = manifest is not None and manifest["spec"]["categories"] == list(args.categories) \
        and manifest["spec"]["sequences"] == args.sequences
    if not same:
        shutil.rmtree(root, ignore_errors=True)
        device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
        cmd = [sys.executable, "-m", "holo3d.data.synthetic", "--format", "voxels", "--out", str(root),
               "--categories", *args.categories, "--sequences", str(args.sequences), "--device", device,
               "--no-progress"]
        if args.output_resolution:  # finer grids: the autoencoder's input is max-pooled from them
            cmd += ["--occupancy-resolution", str(args.output_resolution)]
        result = run_command(cmd, run.work / "logs" / "data.log", max(30.0, 0.3 * run.remaining()))
        if result["exit"] != 0:
            raise RuntimeError(f"data command exited {result['exit']}: {log_tail(run.work / 'logs' / 'data.log')}")
        figures.update(command=" ".join(cmd), seconds=result["wall_s"])
        manifest = read_manifest(str(root))
    files = find_npy_files(str(root))
    figures.update(root=str(root), reused=same, generation_seconds=manifest["generation_seconds"],
                  writer_needs_renders=bool(get_writer("voxels").needs_renders),
                  image_files=sum(1 for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                  objects={c: {s: int(np.load(p, mmap_mode="r").shape[0]) for s, p in files[c].items()}
                           for c in args.categories})
    run.say(f"data: {sum(sum(v.values()) for v in figures['objects'].values())} objects "
            f"({'reused' if same else 'generated'}, generation {figures['generation_seconds']:.1f} s, "
            f"{figures['image_files']} image files)")
    return root


# ----------------------------------------------------------------------------- 2-3. training


def trainer_command(run: Run, settings: RunSettings, args, stage: str, root: Path, epochs: int = EPOCHS) -> List[str]:
    """``python experiment.py`` of ``stage`` ("ae" or "ldm"): data, epochs (by default more than the time
    budget allows), checkpoint and validation cadences, logging off."""
    config = settings.ae_config if stage == "ae" else settings.ldm_config
    return [sys.executable, "experiment.py", "--config-name", f"{config}.yaml",
            *trainer_overrides(run, settings, args, stage, root, epochs)]


def trainer_overrides(run: Run, settings: RunSettings, args, stage: str, root: Path, epochs: int) -> List[str]:
    overrides = [f"exp_dir={run.work / 'exp' / stage}", f"data_root={root}",
                 f'data_source_VoxelDataSource_args.categories="{",".join(args.categories)}"',
                 f"epochs={epochs}", "logger=none", f"{TRAIN_LOOP}.sample_video_interval_epochs=0",
                 f"{TRAIN_LOOP}.checkpoint_interval_epochs={settings.checkpoint_every[stage]}",
                 f"{TRAIN_LOOP}.validation_interval_epochs=10", f"{TRAIN_LOOP}.keep_last_checkpoints=2",
                 *settings.extra[stage]]
    if args.batch_size:
        overrides.append(f"data_source_VoxelDataSource_args.batch_size={args.batch_size}")
    if args.output_resolution:  # both stages read the fine grids; the autoencoder decodes to their side
        overrides.append(f"data_source_VoxelDataSource_args.resolution={args.output_resolution}")
        if stage == "ae":
            overrides.append("model_factory_HoloModelFactory_args.model_VoxelAutoencoderModel_args."
                             f"output_resolution={args.output_resolution}")
    if not torch.cuda.is_available():  # bf16 autocast on the CPU gave NaN U-Net weight gradients
        overrides.append("precision=no")
    if stage == "ldm":
        overrides.append("model_factory_HoloModelFactory_args.model_VoxelLDM_args.autoencoder_exp_dir="
                         f"{run.work / 'exp' / 'ae'}")
    return overrides


def train_stage(run: Run, settings: RunSettings, args, stage: str, root: Path, seconds: float,
                figures: Dict[str, Any]) -> None:
    """Trains ``stage`` for ``seconds`` (SIGTERM at seconds - stop allowance); its training figures."""
    exp_dir = run.work / "exp" / stage
    run_for = seconds - settings.stop_allowance_s
    if run_for < settings.min_train_s:
        raise RuntimeError(f"only {seconds:.0f} s left for {stage} training; raise --minutes")
    cmd = ["timeout", "-k", str(KILL_AFTER_S), f"{run_for:.0f}", *trainer_command(run, settings, args, stage, root)]
    figures["command"] = " ".join(cmd)
    run.say(f"{stage}: training for {run_for:.0f} s, then SIGTERM")
    log_path = run.work / "logs" / f"{stage}.log"
    result = run_command(cmd, log_path, run_for + KILL_AFTER_S + 30)
    figures.update(exit=result["exit"], wall_s=result["wall_s"])
    if result["exit"] not in (0, 124) or not list_checkpoints(exp_dir):
        raise RuntimeError(f"{stage} trainer exited {result['exit']}: {log_tail(log_path)}")
    figures.update(training_figures(exp_dir, result["wall_s"]))
    if stage == "ae" and newest_checkpoint(exp_dir) is None:
        finish_epoch(run, settings, args, root, figures)
    shutil.copyfile(exp_dir / "train.log", run.out / f"{stage}_train.log")
    run.say(f"{stage}: {figures['iterations']} iterations, {figures['samples_per_s'] or 0:.0f} samples/s, "
            f"last epoch {figures['last_train']}")


def finish_epoch(run: Run, settings: RunSettings, args, root: Path, figures: Dict[str, Any]) -> None:
    """Resumes stage 1 to the end of the epoch it was stopped in: VoxelLDM loads the newest
    *end-of-epoch* checkpoint (holo3d.io.experiment_files.newest_checkpoint), and a short stage 1 may
    have stopped before its first one."""
    epochs = parse_train_log(run.work / "exp" / "ae" / "train.log")["stop_epoch"] + 1
    cmd = ["timeout", "-k", str(KILL_AFTER_S), f"{max(30.0, 0.5 * run.remaining()):.0f}",
           *trainer_command(run, settings, args, "ae", root, epochs=epochs)]
    run.say(f"ae: no end-of-epoch checkpoint yet; resuming until {epochs} epochs are complete")
    result = run_command(cmd, run.work / "logs" / "ae_finish_epoch.log", 0.5 * run.remaining() + 60)
    figures["finish_epoch"] = {"command": " ".join(cmd), **result}
    if result["exit"] != 0 or newest_checkpoint(run.work / "exp" / "ae") is None:
        raise RuntimeError(f"finishing epoch {epochs} failed ({result['exit']}): "
                           f"{log_tail(run.work / 'logs' / 'ae_finish_epoch.log')}")


_EPOCH_LINE = re.compile(r"epoch (\d+) (train|val): (.*)$")
_STOP_LINE = re.compile(r"stopped by signal \w+ at epoch (\d+), iteration (\d+)")


def parse_train_log(path: Path) -> Dict[str, Any]:
    """Epoch lines of a trainer's train.log as {"train": [...], "val": [...]} of {key: value}, and the
    iteration of a stop by signal (None when it did not stop that way)."""
    epochs: Dict[str, List[Dict[str, float]]] = {"train": [], "val": []}
    text = path.read_text() if path.is_file() else ""
    for line in text.splitlines():
        match = _EPOCH_LINE.search(line)
        if match:
            values = dict(item.split("=", 1) for item in match.group(3).split() if "=" in item)
            epochs[match.group(2)].append({"epoch": int(match.group(1)), **{k: float(v) for k, v in values.items()}})
    stop = _STOP_LINE.search(text)
    return {**epochs, "stop_epoch": int(stop.group(1)) if stop else None,
            "stop_iteration": int(stop.group(2)) if stop else None}


def training_figures(exp_dir: Path, wall_s: float) -> Dict[str, Any]:
    """Speed and loss figures of a finished trainer (see DEFINITIONS)."""
    log = parse_train_log(exp_dir / "train.log")
    batch = int(OmegaConf.load(exp_dir / "expconfig.yaml").data_source_VoxelDataSource_args.batch_size)
    train = [e for e in log["train"] if "sec_per_it" in e]
    steady = [e["sec_per_it"] for e in train[1:-1]] or [e["sec_per_it"] for e in train]
    sec_per_it = statistics.median(steady) if steady else None
    iterations = log["stop_iteration"]
    checkpoint, saved = newest_checkpoint(exp_dir), list_checkpoints(exp_dir)
    return {"batch_size": batch, "epochs_logged": len(train), "iterations": iterations,
            "sec_per_it_median": sec_per_it, "samples_per_s": batch / sec_per_it if sec_per_it else None,
            "samples_per_s_wall": iterations * batch / wall_s if iterations else None,
            "first_train": train[0] if train else None, "last_train": train[-1] if train else None,
            "last_val": log["val"][-1] if log["val"] else None,
            "newest_checkpoint": str(saved[-1]) if saved else None,
            "newest_end_of_epoch_checkpoint": str(checkpoint) if checkpoint else None}


# ----------------------------------------------------------------------------- 4. evaluation: shapes


def load_grids(root: Path, categories: Sequence[str], splits: Sequence[str],
               resolution: int) -> Dict[str, torch.Tensor]:
    """{category: (N, R, R, R) bool} of the given splits' shapes, read as the trainers read them."""
    files = find_npy_files(str(root))
    out = {}
    for category in categories:
        grids = []
        for split in splits:
            dataset = open_split(files, [category], split, "npy", resolution)
            grids += [dataset[i]["voxels"][0] > 0.5 for i in range(len(dataset))] if dataset is not None else []
        out[category] = torch.stack(grids)
    return out


def train_subsets(train: torch.Tensor, size: int, max_subsets: int, seed: int = 0) -> List[torch.Tensor]:
    """Up to ``max_subsets`` disjoint random subsets of ``size`` training shapes."""
    order = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))
    k = max(1, min(max_subsets, train.shape[0] // size))
    return [train[order[i * size:(i + 1) * size]] for i in range(k)]


@torch.no_grad()
def reconstruct(ae_dir: Path, grids: Dict[str, torch.Tensor], device: torch.device,
                batch: int = 32) -> Dict[str, torch.Tensor]:
    """{category: (N, R, R, R) bool} reconstructions by stage 1's autoencoder (the weights VoxelLDM loads)."""
    autoencoder, _ = load_frozen_autoencoder(str(ae_dir))
    autoencoder.to(device)
    out = {}
    for category, occ in grids.items():
        parts = []
        for start in range(0, occ.shape[0], batch):
            x, _ = encoder_input_and_target(occ[start:start + batch, None].float().to(device), autoencoder)
            parts.append((torch.sigmoid(autoencoder(x).float()) > 0.5)[:, 0].cpu())
        out[category] = torch.cat(parts)
    return out


def mean_iou(recons: Dict[str, torch.Tensor], grids: Dict[str, torch.Tensor]) -> Dict[str, float]:
    per = {c: iou(recons[c], grids[c]) for c in grids}
    return {**{c: float(v.mean()) for c, v in per.items()}, "all": float(torch.cat(list(per.values())).mean())}


def set_metrics(sets: List[torch.Tensor], refs: torch.Tensor, points: int, device: torch.device) -> Dict[str, Any]:
    """shape_metrics of each set against ``refs``: mean and std over the sets ({"error": ...} when a
    set cannot be scored, e.g. fewer than 2 non-empty shapes)."""
    reports = []
    for i, shapes in enumerate(sets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty shapes are counted below
            try:
                reports.append(evaluate_voxel_sets(shapes, refs, points=points, device=device,
                                                   names=(f"subset {i}", "held-out references")))
            except ValueError as error:
                return {"error": str(error), "empty_shapes": int((~shapes.flatten(1).any(1)).sum())}
    values = {k: [r.metrics[k] for r in reports] for k in SET_METRICS}
    return {"mean": {k: float(np.mean(v)) for k, v in values.items()},
            "std": {k: float(np.std(v)) for k, v in values.items()}, "subsets": len(reports),
            "subset_size": int(sets[0].shape[0]), "references": int(refs.shape[0]),
            "empty_excluded": sum(len(r.excluded["samples"]) for r in reports)}


def nearest_category(shapes: torch.Tensor, ref_points: torch.Tensor, ref_labels: torch.Tensor, points: int,
                     device: torch.device) -> torch.Tensor:
    """(N,) label of each shape's nearest reference by Chamfer distance; -1 for empty shapes."""
    nonempty = shapes.flatten(1).any(1)
    labels = torch.full((shapes.shape[0],), -1, dtype=torch.long)
    if nonempty.any():
        cloud = occupancy_to_points(shapes[nonempty], points, seed=1, device=str(device))
        labels[nonempty] = ref_labels[pairwise_chamfer(cloud, ref_points, device=device).argmin(1)]
    return labels


def class_check(samples: Dict[str, torch.Tensor], heldout: Dict[str, torch.Tensor], train: Dict[str, torch.Tensor],
                points: int, device: torch.device) -> Dict[str, Any]:
    """Per category: how often a sample's (and a training shape's) nearest held-out shape has its label."""
    names = list(heldout)
    ref_points = torch.cat([occupancy_to_points(heldout[c], points, device=str(device)) for c in names])
    ref_labels = torch.cat([torch.full((heldout[c].shape[0],), i) for i, c in enumerate(names)])
    out = {}
    for category, shapes in samples.items():
        label = names.index(category)
        nearest = nearest_category(shapes, ref_points, ref_labels, points, device)
        ceiling = nearest_category(train[category], ref_points, ref_labels, points, device)
        out[category] = {"n": int(shapes.shape[0]), "empty": int((nearest < 0).sum()),
                         "fraction_nearest_is_label": float((nearest == label).float().mean()),
                         "nearest_counts": {c: int((nearest == i).sum()) for i, c in enumerate(names)},
                         "train_subset_fraction": float((ceiling == label).float().mean())}
    return out


def occupied(shapes: torch.Tensor) -> float:
    return float(shapes.float().mean())


# ----------------------------------------------------------------------------- 4. evaluation: sampling


def sample_config(settings: RunSettings, args, ldm_dir: Path, category: str, n: int, out_dir: Path):
    """generate_samples' settings for ``n`` samples of ``category`` (a contact sheet of the first few)."""
    side = [settings.image_size, settings.image_size]
    return SampleConfig(exp_dir=str(ldm_dir), num_samples=n, batch_size=settings.sample_batch, sampler="ddim",
                        steps=settings.sample_steps, label=category, guidance=args.guidance,
                        max_videos=min(n, settings.sheet_rows), n_frames=settings.n_frames, render_size=side,
                        video_size=side, up=[0.0, 1.0, 0.0], distance=3.0, output_dir=str(out_dir),
                        device="cpu" if args.tiny else "auto", seed=args.seed)


def generate(run: Run, settings: RunSettings, args, ldm_dir: Path, category: str, n: int) -> Dict[str, Any]:
    """generate_samples in this process (its progress bars into a log file); timings and paths."""
    out_dir = run.work / "samples" / category
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = sample_config(settings, args, ldm_dir, category, n, out_dir)
    start = time.perf_counter()
    with open(run.work / "logs" / f"generate_{category}.log", "w") as log, contextlib.redirect_stderr(log), \
            inference_precision(cfg.precision, cfg.device):
        generate_samples(cfg)
    wall = time.perf_counter() - start
    seconds = json.loads((out_dir / "manifest.json").read_text())["seconds"]
    return {"num_samples": n, "wall_s": wall, "seconds": seconds, "samples": str(out_dir / "samples.npy"),
            "contact_sheet": str(out_dir / "contact_sheet.png")}


def sample_cost(result: Dict[str, Any]) -> tuple:
    """(seconds per sample, fixed seconds per call) measured by one generate call."""
    seconds = result["seconds"]
    variable = seconds.get("sampling", 0.0) + seconds.get("writing samples.npy", 0.0)
    return variable / result["num_samples"], max(0.0, result["wall_s"] - variable)


def affordable(n: int, cost: tuple, seconds: float, minimum: int) -> int:
    """Samples (at most n, at least ``minimum``) that fit in ``seconds`` at ``cost``."""
    per_sample, fixed = cost
    return int(max(minimum, min(n, (seconds - fixed) / max(per_sample, 1e-6))))


def combine_sheets(paths: Sequence[Path], labels: Sequence[str], out: Path) -> Path:
    """The categories' contact sheets stacked into one PNG, each block headed by its label."""
    sheets = [Image.open(p).convert("RGB") for p in paths]
    head = 14
    canvas = Image.new("RGB", (max(s.width for s in sheets), sum(s.height + head for s in sheets)), "white")
    draw, top = ImageDraw.Draw(canvas), 0
    for sheet, label in zip(sheets, labels):
        draw.text((4, top + 1), label, fill="black")
        canvas.paste(sheet, (0, top + head))
        top += sheet.height + head
    pixels = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255.0
    return write_png(out, pixels)


def speed_call(run: Run, settings: RunSettings, args, ldm_dir: Path) -> Dict[str, Any]:
    """The timed generate_samples command: num_samples=speed_samples, no videos."""
    out_dir = run.work / "speed"
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, "generate_samples.py", f"exp_dir={ldm_dir}", f"num_samples={settings.speed_samples}",
           f"label={args.categories[0]}", f"guidance={args.guidance}", "sampler=ddim",
           f"steps={settings.sample_steps}", "max_videos=0", f"batch_size={settings.sample_batch}",
           f"output_dir={out_dir}", f"device={'cpu' if args.tiny else 'auto'}"]
    result = run_command(cmd, run.work / "logs" / "speed.log", max(10.0, run.remaining()))
    if result["exit"] != 0:
        raise RuntimeError(f"generate_samples exited {result['exit']}: {log_tail(run.work / 'logs' / 'speed.log')}")
    seconds = json.loads((out_dir / "manifest.json").read_text())["seconds"]
    variable = seconds.get("sampling", 0.0) + seconds.get("writing samples.npy", 0.0)
    return {"command": " ".join(cmd), "num_samples": settings.speed_samples, "wall_s": result["wall_s"],
            "seconds": seconds, "samples_per_s": settings.speed_samples / variable if variable else None}


@torch.no_grad()
def direct_sampling(settings: RunSettings, args, ldm_dir: Path) -> Dict[str, Any]:
    """The speed call's samples by ``model.sample`` alone: generate_samples passes a progress callback,
    for which VoxelLDM decodes the x0 estimate at every step; this times the chain without it."""
    loaded = load_experiment(str(ldm_dir), device="cpu" if args.tiny else "auto")
    model, n, device = loaded.model, settings.speed_samples, loaded.device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    synchronize(device)
    start = time.perf_counter()
    with inference_precision("bf16", str(device)), model.sampling_accelerated(True):
        for first in range(0, n, settings.sample_batch):
            b = min(settings.sample_batch, n - first)
            occupancy = model.sample(b, cond=model.conditions(b, args.categories[0]), sampler="ddim",
                                     steps=settings.sample_steps, guidance_scale=args.guidance,
                                     generator=generator, device=device)
            (occupancy > 0.5).cpu()
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"num_samples": n, "seconds": seconds, "samples_per_s": n / seconds}


# ----------------------------------------------------------------------------- 4. evaluation: stages


def eval_autoencoder(run: Run, data: Dict[str, Any]) -> None:
    device, figures = data["device"], run.section("ae_reconstruction")
    subset = {c: train_subsets(t, data["heldout"][c].shape[0], 1)[0] for c, t in data["train"].items()}
    data["recons"] = reconstruct(data["ae_dir"], data["heldout"], device)
    figures.update(checkpoint=str(newest_checkpoint(data["ae_dir"])),
                  iou_heldout=mean_iou(data["recons"], data["heldout"]),
                  iou_train_subset=mean_iou(reconstruct(data["ae_dir"], subset, device), subset))
    run.say(f"autoencoder IoU: held-out {figures['iou_heldout']['all']:.3f}, "
            f"train subset {figures['iou_train_subset']['all']:.3f}")


def eval_generation(run: Run, settings: RunSettings, args, ldm_dir: Path, reserve_s: float) -> None:
    """Samples per category (as many as the time allows, up to settings.num_samples) and the sheet."""
    results, minimum = run.section("generation"), 2 * settings.sheet_rows
    for i, category in enumerate(args.categories):
        share = (run.remaining() - reserve_s) / (len(args.categories) - i)
        cost = run.sample_cost or (settings.per_sample_guess_s, settings.fixed_guess_s)
        if i > 0 and run.remaining() < cost[1] + minimum * cost[0]:
            results[category] = {"skipped": f"out of time ({run.remaining():.0f} s left)"}
            continue
        n = affordable(args.num_samples, cost, share, minimum=minimum)
        results[category] = generate(run, settings, args, ldm_dir, category, n)
        run.sample_cost = sample_cost(results[category])
        run.say(f"generate {category}: {n} samples in {results[category]['wall_s']:.1f} s "
                f"({results[category]['seconds']})")
        run.save()
    done = [c for c in args.categories if "contact_sheet" in results[c]]
    combine_sheets([Path(results[c]["contact_sheet"]) for c in done], done, run.out / "contact_sheet.png")
    run.report["contact_sheet"] = {"file": "contact_sheet.png", "blocks": done,
                                   "rows_per_block": settings.sheet_rows, "columns": "4 turntable views",
                                   "noise": "every category's samples start from the same noise (--seed)"}


def eval_shapes(run: Run, settings: RunSettings, data: Dict[str, Any], samples: Dict[str, torch.Tensor]) -> None:
    """Set metrics (samples / train subset / reconstructions vs held-out) and occupied fractions."""
    metrics, fractions = run.section("shape_metrics"), run.section("occupied_fraction")
    for category, shapes in samples.items():
        refs = data["heldout"][category]
        fractions[category] = {"samples": occupied(shapes), "heldout": occupied(refs),
                               "train": occupied(data["train"][category]),
                               "empty_samples": int((~shapes.flatten(1).any(1)).sum())}
        metrics[category] = category_set_metrics(settings, data, category, shapes)
        shown = {k: {s: round(v["mean"][s], 4) for s in ("mmd_cd", "cov_cd", "nna_cd")} if "mean" in v else v
                 for k, v in metrics[category].items()}
        run.say(f"shape metrics {category}: {shown}; occupied {fractions[category]}")
        run.save()


def category_set_metrics(settings: RunSettings, data: Dict[str, Any], category: str,
                         shapes: torch.Tensor) -> Dict[str, Any]:
    """Samples (disjoint subsets of the reference count), training subsets and reconstructions against
    the category's held-out shapes."""
    refs, device, points = data["heldout"][category], data["device"], settings.points
    size, k = refs.shape[0], settings.max_subsets
    subsets = [shapes[i * size:(i + 1) * size] for i in range(max(1, min(k, len(shapes) // size)))]
    out = {"samples": set_metrics(subsets, refs, points, device),
           "train_subset": set_metrics(train_subsets(data["train"][category], size, k), refs, points, device)}
    if "recons" in data:  # stage 1's evaluation succeeded
        out["ae_reconstructions"] = set_metrics([data["recons"][category]], refs, points, device)
    return out


def load_samples(run: Run, settings: RunSettings) -> Dict[str, torch.Tensor]:
    found = {c: Path(r["samples"]) for c, r in run.report.get("generation", {}).items() if "samples" in r}
    out = {c: torch.from_numpy(np.load(p)) for c, p in found.items() if p.is_file()}
    for category, shapes in out.items():
        if shapes.shape[-1] != settings.resolution:
            raise ValueError(f"{found[category]}: samples of side {shapes.shape[-1]}, the data's side is "
                             f"{settings.resolution}")
    return out


def evaluate(run: Run, settings: RunSettings, args, root: Path) -> None:
    """Stage 4, step by step, each step saved; the optional ones only when time is left."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    data: Dict[str, Any] = {"device": device, "ae_dir": run.work / "exp" / "ae"}
    ldm_dir = run.work / "exp" / "ldm"
    with run.stage("eval_data"):
        data["heldout"] = load_grids(root, args.categories, ("val", "test"), settings.resolution)
        data["train"] = load_grids(root, args.categories, ("train",), settings.resolution)
    if run.report["stages"]["eval_data"]["status"] != "ok":
        return
    with run.stage("eval_autoencoder"):
        eval_autoencoder(run, data)
    with run.stage("eval_generation"):
        eval_generation(run, settings, args, ldm_dir, reserve_s=0.25 * settings.eval_reserve_s)
    samples = load_samples(run, settings)
    with run.stage("eval_shape_metrics") as record:
        if not run.out_of_time(record, 0.0):
            eval_shapes(run, settings, data, samples)
    with run.stage("eval_class_check") as record:
        if not run.out_of_time(record, 0.0):
            eval_class(run, settings, data, samples)
    with run.stage("speed_1000") as record:
        per_sample, fixed = run.sample_cost or (1.0, 30.0)
        if not run.out_of_time(record, fixed + settings.import_allowance_s + settings.speed_samples * per_sample):
            speed = run.section("speed_1000")
            speed.update(speed_call(run, settings, args, ldm_dir))
            run.say(f"speed: {speed}")
            if run.remaining() > speed["seconds"].get("sampling", 0.0) + 10.0:
                speed["direct_model_sample"] = direct_sampling(settings, args, ldm_dir)
                run.say(f"speed without the per-step callback: {speed['direct_model_sample']}")
            else:
                speed["direct_model_sample"] = {"skipped": f"out of time ({run.remaining():.0f} s left)"}


def eval_class(run: Run, settings: RunSettings, data: Dict[str, Any], samples: Dict[str, torch.Tensor]) -> None:
    train = {c: train_subsets(t, data["heldout"][c].shape[0], 1)[0] for c, t in data["train"].items()}
    checks = class_check(samples, data["heldout"], train, settings.points, data["device"])
    run.report["class_check"] = checks
    shown = [f"{c} {v['fraction_nearest_is_label']:.2f} (train {v['train_subset_fraction']:.2f})"
             for c, v in checks.items()]
    run.say("class check (nearest held-out shape has the label): " + ", ".join(shown))


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m holo3d.bench.voxel_ldm_run", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for metrics.json, contact_sheet.png and logs")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget of everything "
                        f"(default {GPU.minutes:g}; --tiny {TINY.minutes:g})")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 2 categories at 16^3, tiny models")
    parser.add_argument("--work", default="", help="data, experiments and samples (default: a folder under "
                        "the system's temporary directory; experiments and samples are replaced)")
    parser.add_argument("--categories", nargs="+", default=None, help="built-in categories (label order)")
    parser.add_argument("--sequences", type=int, default=None, help="objects per category (10%% val, 10%% test)")
    parser.add_argument("--ae-fraction", type=float, default=0.4, help="stage 1's share of the training time")
    parser.add_argument("--batch-size", type=int, default=0, help="training batch of both stages (0: the configs')")
    parser.add_argument("--num-samples", type=int, default=0, help="samples per category, at most (0: "
                        f"{GPU.num_samples}; --tiny {TINY.num_samples}); fewer when time is short")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale of samples")
    parser.add_argument("--output-resolution", type=int, default=0,
                        help="data and samples at twice the autoencoder's input side (e.g. 128: a 64^3 -> "
                             "128^3 autoencoder, the course protocol's samples); 0: the input side")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> RunSettings:
    settings = TINY if args.tiny else GPU
    args.minutes = settings.minutes if args.minutes is None else args.minutes
    args.categories = list(args.categories or settings.categories)
    args.sequences = args.sequences or settings.sequences
    args.num_samples = args.num_samples or settings.num_samples
    default_work = os.path.join(tempfile.gettempdir(), "holo3d_voxel_ldm_run" + ("_tiny" if args.tiny else ""))
    args.work = args.work or default_work
    if args.output_resolution and args.output_resolution not in (settings.resolution, 2 * settings.resolution):
        raise SystemExit(f"--output-resolution {args.output_resolution}: expected 0, {settings.resolution} or "
                         f"{2 * settings.resolution} (the autoencoder's input side or twice it)")
    if args.output_resolution == settings.resolution:
        args.output_resolution = 0
    return dataclasses.replace(settings, resolution=args.output_resolution or settings.resolution)


def process_age_s() -> float:
    """Seconds since this process started (its imports included); 0 where /proc cannot tell."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: Optional[List[str]] = None, already_elapsed_s: float = 0.0) -> Dict[str, Any]:
    """The whole run; ``already_elapsed_s`` (the command line passes the process's age, imports
    included) counts against --minutes."""
    args = parse_args(argv)
    settings = resolve(args)
    run = Run(args, settings, already_elapsed_s)
    for folder in ("exp", "samples", "speed"):  # this run's own outputs: never resumed
        shutil.rmtree(run.work / folder, ignore_errors=True)
    run.report.update(settings={**vars(args), "resolution": settings.resolution, "sampler": "ddim",
                                "sample_steps": settings.sample_steps, "points": settings.points},
                      device=torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "cpu")
    run.say(f"voxel LDM run: {args.minutes:g} min, categories {args.categories}, {args.sequences} objects each, "
            f"work {run.work}")
    with run.stage("data"):
        root = ensure_data(run, settings, args, run.section("data"))
    if run.report["stages"]["data"]["status"] == "ok":
        train_and_evaluate(run, settings, args, root)
    failed = [name for name, stage in run.report["stages"].items() if stage["status"] == "failed"]
    run.report["failed_stages"] = failed
    run.say(f"done in {run.elapsed():.0f} s of {60 * args.minutes:.0f}; failed stages: {failed or 'none'}; "
            f"{run.out / 'metrics.json'}")
    run.save()
    return run.report


def train_and_evaluate(run: Run, settings: RunSettings, args, root: Path) -> None:
    for stage in ("ae", "ldm"):
        seconds = run.remaining() - settings.eval_reserve_s
        with run.stage(f"train_{stage}") as record:
            train_stage(run, settings, args, stage, root, args.ae_fraction * seconds if stage == "ae" else seconds,
                        run.section("training", stage))
        if record["status"] != "ok":
            return
    evaluate(run, settings, args, root)


if __name__ == "__main__":
    sys.exit(1 if main(already_elapsed_s=process_age_s())["failed_stages"] else 0)
