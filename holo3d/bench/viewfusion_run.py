"""ViewFusion end to end on one GPU in a few minutes: data, training, held-out evaluation, pictures.

    python -m holo3d.bench.viewfusion_run --minutes 7 --out DIR          # one GPU (bf16)
    python -m holo3d.bench.viewfusion_run --tiny --out DIR               # CPU smoke run (< 1 min)

1. data:   the built-in dataset in NMR format (``--data-root`` or generated under $HOLO3D_DATA_ROOT,
           rendered on the GPU), read with holo3d.data.nmr and kept on the device as (O, 24, 3, H, W).
2. train:  ``ViewFusionModel`` (the paper's small config; ``--tiny``: a toy one) through the training
           loop's own ``optimization_step`` (accelerate bf16 autocast, Adam, EMA) on batches of S objects
           x (1 target + 6 conditioning views, a random prefix of 1..6 kept per sample), until the
           time budget (less data time and an evaluation reserve) is spent; training samples/s counts
           targets (one per object per step) after a warm-up.
3. eval:   held-out (val + test) objects, several targets each: PSNR / SSIM of views generated from 1,
           3 and 6 conditioning views (the sampler and steps are in metrics.json), the sharpness ratio
           (mean image-gradient magnitude of outputs / of ground truth), the time of a 1000-step DDPM
           generation of one view from 6 views (bf16, CUDA graph), a 24-view autoregressive
           turntable from one view (timed), and the per-view weight maps.

Writes into ``--out``: metrics.json, samples.png (ground truth | 1 | 3 | 6 views), turntable.png
(ground truth row over generated row) and weights.png (conditioning views over their weight maps).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args

from holo3d.bench.train_step import bench_accelerator
from holo3d.data.nmr import AZEL_KEY, load_nmr_dataset_map
from holo3d.data.synthetic.builtin import default_builtin_root, ensure_builtin_dataset
from holo3d.data.synthetic.generate import generate_dataset, read_manifest
from holo3d.data.synthetic.spec import get_preset
from holo3d.data.synthetic.writers import get_writer
from holo3d.eval import psnr, sharpness, ssim, write_metrics_json
from holo3d.io.atomic_file import open_atomic
from holo3d.models.view_fusion import ViewFusionModel
from holo3d.train.ema import EMA
from holo3d.train.optimizer_factory import HoloOptimizerFactory
from holo3d.train.training_loop import optimization_step

VIEW_COUNTS = (1, 3, 6)
WARMUP_STEPS = 10  # steps left out of the samples/s figure (kernel selection, allocator growth)


@dataclasses.dataclass
class RunSettings:
    """What differs between the GPU run and the --tiny CPU smoke run."""

    preset: str
    sequences: int  # objects per category (0: the preset's)
    scenes_per_batch: int
    unet_args: Dict
    image_size: int
    eval_reserve_s: float  # seconds kept for evaluation after training
    eval_sampler: str
    eval_steps: int
    targets_per_object: int
    generation_steps: int  # the timed full-chain DDPM generation
    turntable_steps: int
    lr: float


GPU = RunSettings("demo", 0, 32, {}, 64, 90.0, "ddim", 50, 4, 1000, 25, 2e-4)
TINY = RunSettings("tiny", 0, 4, dict(model_channels=16, channel_mult=[1, 2, 2], num_res_blocks=1,
                                      attention_resolutions=[8]), 32, 10.0, "ddim", 5, 1, 20, 3, 1e-3)


# ----------------------------------------------------------------------------- data


def dataset_root(args, settings: RunSettings, device: torch.device, scratch: Optional[str]) -> str:
    """The NMR-format data: --data-root, or the built-in preset (with --sequences objects per
    category), generated on first use (rendered on ``device``)."""
    if args.data_root:
        return args.data_root
    if scratch is not None:  # --tiny: a throwaway copy at the model's image size
        spec = dataclasses.replace(get_preset(settings.preset), image_size=(settings.image_size,) * 2)
        return generate_dataset(spec, os.path.join(scratch, "nmr"), device="cpu", writer_factory=get_writer("nmr"),
                                progress=False, preset=settings.preset, fmt="nmr")
    if not settings.sequences:
        return ensure_builtin_dataset(None, settings.preset, device=str(device), fmt="nmr")
    root = default_builtin_root(settings.preset, "nmr") + f"_s{settings.sequences}"
    if read_manifest(root) is None:
        spec = dataclasses.replace(get_preset(settings.preset), sequences=settings.sequences)
        shutil.rmtree(root, ignore_errors=True)  # a crashed run's leftovers (generation is atomic)
        generate_dataset(spec, root, device=str(device), writer_factory=get_writer("nmr"),
                         preset=settings.preset, fmt="nmr")
    return root


def split_tensors(dataset, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every object of an NmrDataset: images (O, V, 3, H, W) float32 in [0, 1], angles (O, V, 2)."""
    images, angles = [], []
    for name in dataset.sequence_names():
        frames = [dataset[i] for i in dataset.sequence_indices_in_order(name)]
        images.append(torch.stack([f.image_rgb for f in frames]))
        angles.append(torch.stack([torch.as_tensor(f.meta[AZEL_KEY]) for f in frames]))
    n_views = min(len(a) for a in angles)  # objects with fewer views would break the stack
    return (torch.stack([im[:n_views] for im in images]).to(device),
            torch.stack([a[:n_views] for a in angles]).float().to(device))


def training_batch(images, angles, scenes: int, frames: int, generator) -> Dict:
    """A FrameData-style batch of ``scenes`` random objects x ``frames`` random distinct views each."""
    n_obj, n_views = images.shape[:2]
    device = images.device
    obj = torch.randint(n_obj, (scenes,), generator=generator, device=device)
    views = torch.rand(scenes, n_views, generator=generator, device=device).argsort(1)[:, :frames]
    return {"image_rgb": images[obj[:, None], views].flatten(0, 1),  # (S*N, 3, H, W)
            "meta": {AZEL_KEY: angles[obj[:, None], views].flatten(0, 1)},  # (S*N, 2)
            "sequence_name": [f"obj{s}" for s in range(scenes) for _ in range(frames)]}


# ----------------------------------------------------------------------------- training


def build_model(settings: RunSettings, device: torch.device, prediction: str = "eps") -> ViewFusionModel:
    expand_args_fields(ViewFusionModel)
    cfg = get_default_args(ViewFusionModel)
    cfg.image_size = settings.image_size
    cfg.prediction = prediction
    cfg.unet_args.update(settings.unet_args)
    return ViewFusionModel(**cfg).to(device)


def train(model, images, angles, settings: RunSettings, deadline: float, device) -> Dict:
    """optimization_step until ``deadline``; returns the EMA model and training figures."""
    expand_args_fields(HoloOptimizerFactory)
    optimizer, scheduler = HoloOptimizerFactory(lr=settings.lr, warmup_iters=100)(model, 1, 1)
    ema = EMA(model, decay=0.999, start_step=200)
    accelerator = bench_accelerator("bf16" if device.type == "cuda" else "no", device)
    generator = torch.Generator(device=device).manual_seed(0)
    frames = model.max_views + 1
    losses, timed_from, start = [], None, time.perf_counter()
    for iteration in itertools.count():
        batch = training_batch(images, angles, settings.scenes_per_batch, frames, generator)
        values = optimization_step(model, batch, accelerator=accelerator, optimizer=optimizer,
                                   scheduler=scheduler, ema=ema, clip_grad_norm=1.0, iteration=iteration)
        losses.append(values["objective"])
        if iteration + 1 == WARMUP_STEPS:
            timed_from = time.perf_counter()
        if time.perf_counter() > deadline and iteration >= WARMUP_STEPS:
            break
    steps = iteration + 1
    timed_s = time.perf_counter() - (timed_from or start)
    window = max(1, min(50, steps // 4))
    return {"ema": ema.module, "steps": steps, "train_s": time.perf_counter() - start,
            "samples_per_s": (steps - WARMUP_STEPS) * settings.scenes_per_batch / max(timed_s, 1e-9),
            "loss_window": window, "loss_first": float(np.mean(losses[:window])),
            "loss_last": float(np.mean(losses[-window:])),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


# ----------------------------------------------------------------------------- evaluation


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def eval_setup(images, angles, per_object: int, seed: int = 0):
    """Targets and nested conditioning sets: for each held-out object ``per_object`` random targets,
    each with 6 other views in random order (k views = the first k). Returns targets (n, 3, H, W),
    target angles (n, 2), views (n, 6, 3, H, W), view angles (n, 6, 2)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for o in range(images.shape[0]):
        for _ in range(per_object):
            order = torch.randperm(images.shape[1], generator=generator)[: 1 + max(VIEW_COUNTS)]
            rows.append((o, order))
    obj = torch.tensor([r[0] for r in rows], device=images.device)
    order = torch.stack([r[1] for r in rows]).to(images.device)
    return (images[obj, order[:, 0]], angles[obj, order[:, 0]],
            images[obj[:, None], order[:, 1:]], angles[obj[:, None], order[:, 1:]])


def evaluate_view_counts(model, images, angles, settings: RunSettings, device) -> Tuple[Dict, Dict]:
    """PSNR / SSIM / sharpness ratio of generated held-out views per conditioning-view count."""
    target, target_azel, views, view_azel = eval_setup(images, angles, settings.targets_per_object)
    metrics, generated = {}, {}
    for k in VIEW_COUNTS:
        cond = {"views": views[:, :k], "view_angles": view_azel[:, :k], "target_angles": target_azel}
        generator = torch.Generator(device=device).manual_seed(1)
        with autocast(device), model.sampling_accelerated(device.type == "cuda"):
            out = model.sample(target.shape[0], cond=cond, sampler=settings.eval_sampler,
                               steps=settings.eval_steps, generator=generator, device=device)
        generated[k] = out
        metrics[f"views_{k}"] = {"psnr": float(psnr(out, target).mean()), "ssim": float(ssim(out, target).mean()),
                                 "sharpness_ratio": float(sharpness(out) / sharpness(target))}
    return metrics, {"target": target, "views": views, "view_azel": view_azel,
                     "target_azel": target_azel, **{f"gen{k}": v for k, v in generated.items()}}


def time_generation(model, images, angles, steps: int, device) -> Dict:
    """Seconds for one view from 6 views with ``steps`` ancestral DDPM steps over the full test
    schedule (bf16, CUDA graph on GPU); a 2-step call first warms kernels and graph capture up."""
    cond = {"views": images[:1, 1:7], "view_angles": angles[:1, 1:7], "target_angles": angles[:1, 0]}
    saved, model.sample_min_alpha_bar = model.sample_min_alpha_bar, 0.0
    try:
        with autocast(device), model.sampling_accelerated(device.type == "cuda"):
            model.sample(1, cond=cond, sampler="ddim", steps=2, device=device)
            _sync(device)
            start = time.perf_counter()
            sampler = "ddpm" if steps >= model.test_num_steps else "ddim"
            model.sample(1, cond=cond, sampler=sampler, steps=steps, eta=1.0 if sampler == "ddim" else 0.0,
                         device=device)
            _sync(device)
    finally:
        model.sample_min_alpha_bar = saved
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "ms_per_step": 1e3 * seconds / steps,
            "precision": "bf16" if device.type == "cuda" else "fp32", "cuda_graph": device.type == "cuda"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_turntable(model, images, angles, settings: RunSettings, device) -> Tuple[Dict, torch.Tensor]:
    """Object 0's views in azimuth order: view 0 given, the rest generated autoregressively."""
    order = angles[0, :, 0].argsort()
    obj_images, obj_azel = images[0, order], angles[0, order]  # (V, 3, H, W), (V, 2)
    generator = torch.Generator(device=device).manual_seed(2)
    _sync(device)
    start = time.perf_counter()
    with autocast(device), model.sampling_accelerated(device.type == "cuda"):
        frames = model.turntable(obj_images[None, :1], obj_azel[None, :1], obj_azel[None, 1:],
                                 sampler=settings.eval_sampler, steps=settings.turntable_steps,
                                 generator=generator, device=device)
    _sync(device)
    seconds = time.perf_counter() - start
    generated = torch.cat([obj_images[:1], frames[0].to(obj_images.device)])  # (V, 3, H, W)
    info = {"views": int(obj_images.shape[0]), "generated": int(frames.shape[1]),
            "sampler": settings.eval_sampler, "steps": settings.turntable_steps, "seconds": seconds,
            "psnr_vs_ground_truth": float(psnr(generated[1:], obj_images[1:]).mean())}
    return info, torch.stack([obj_images, generated])  # (2, V, 3, H, W)


# ----------------------------------------------------------------------------- pictures


def grid_png(path: Path, rows: Sequence[torch.Tensor]) -> None:
    """Rows of images (each (n, 3, H, W) in [0, 1], equal n) as one PNG, written atomically."""
    tiles = torch.stack([r.float().clamp(0, 1).cpu() for r in rows])  # (R, n, 3, H, W)
    r, n, _, h, w = tiles.shape
    array = (tiles.permute(0, 3, 1, 4, 2).reshape(r * h, n * w, 3).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    with open_atomic(path) as f:
        f.write(buffer.getvalue())


def write_pictures(out: Path, model, shown: Dict, turntable: torch.Tensor, device) -> None:
    n = min(6, shown["target"].shape[0])
    grid_png(out / "samples.png", [shown["target"][:n]] + [shown[f"gen{k}"][:n] for k in VIEW_COUNTS])
    grid_png(out / "turntable.png", list(turntable))
    k = max(VIEW_COUNTS)
    cond = {"views": shown["views"][:1], "view_angles": shown["view_azel"][:1],
            "target_angles": shown["target_azel"][:1]}
    with autocast(device):
        weights = model.view_weights(cond, shown["target"][:1], alpha_bar=0.5,
                                     generator=torch.Generator(device=device).manual_seed(3))[0]  # (V, H, W)
    maps = (weights / weights.max().clamp_min(1e-8))[:, None].expand(-1, 3, -1, -1)  # (V, 3, H, W)
    grid_png(out / "weights.png", [torch.cat([shown["views"][0, :k], shown["target"][:1]]),
                                   torch.cat([maps.float(), shown[f"gen{k}"][:1]])])


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m holo3d.bench.viewfusion_run", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (metrics.json and PNGs)")
    parser.add_argument("--minutes", type=float, default=7.0, help="total wall-time budget")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny data and model")
    parser.add_argument("--data-root", default="", help="an NMR folder or zip (default: the built-in set)")
    parser.add_argument("--sequences", type=int, default=None,
                        help="built-in objects per category (default: the preset's, 12 for demo)")
    parser.add_argument("--scenes-per-batch", type=int, default=None, help="objects (targets) per step")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--prediction", default="v", choices=["eps", "v"],
                        help="the denoiser's output (the paper's eps; v samples better early in training)")
    return parser.parse_args(argv)


def settings_for(args) -> RunSettings:
    settings = TINY if args.tiny else GPU
    if args.sequences is not None:
        settings = dataclasses.replace(settings, sequences=args.sequences)
    if args.scenes_per_batch:
        settings = dataclasses.replace(settings, scenes_per_batch=args.scenes_per_batch)
    return settings


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    start = time.perf_counter()
    settings = settings_for(args)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    scratch = tempfile.mkdtemp(prefix="viewfusion_") if args.tiny and not args.data_root else None
    try:
        report = run(args, settings, device, out, start, scratch)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    write_metrics_json(out / "metrics.json", report)
    return report


def run(args, settings: RunSettings, device, out: Path, start: float, scratch: Optional[str]) -> Dict:
    root = dataset_root(args, settings, device, scratch)
    splits = load_nmr_dataset_map(root)
    train_images, train_angles = split_tensors(splits.train, device)
    held = [split_tensors(d, device) for d in (splits.val, splits.test) if d is not None and len(d)]
    test_images, test_angles = (torch.cat([h[i] for h in held]) for i in (0, 1))
    data_s = time.perf_counter() - start
    model = build_model(settings, device, args.prediction)
    deadline = start + 60 * args.minutes - settings.eval_reserve_s
    training = train(model, train_images, train_angles, settings, deadline, device)
    ema = training.pop("ema").eval()
    ema.sample_min_alpha_bar = 1e-4  # few-step sampling spends its steps where the signal is
    view_metrics, shown = evaluate_view_counts(ema, test_images, test_angles, settings, device)
    generation = time_generation(ema, test_images, test_angles, settings.generation_steps, device)
    turntable_info, turntable = run_turntable(ema, test_images, test_angles, settings, device)
    write_pictures(out, ema, shown, turntable, device)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "data": {"root": root, "train_objects": int(train_images.shape[0]),
                 "held_out_objects": int(test_images.shape[0]), "views_per_object": int(train_images.shape[1]),
                 "image_size": int(train_images.shape[-1]), "seconds": data_s},
        "model": {"parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
                  "unet_args": OmegaConf.to_container(OmegaConf.create(model.unet_args)), "max_views": model.max_views,
                  "scenes_per_batch": settings.scenes_per_batch, "prediction": model.prediction,
                  "evaluated_weights": "ema (decay 0.999)"},
        "training": {**training, "precision": "bf16" if device.type == "cuda" else "fp32"},
        "evaluation": {"sampler": settings.eval_sampler, "steps": settings.eval_steps,
                       "schedule": "test schedule cut at alpha_bar >= 1e-4",
                       "targets": int(shown["target"].shape[0]), **view_metrics},
        "generation_1_view_from_6": generation,
        "turntable": turntable_info,
        "total_seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    main()
