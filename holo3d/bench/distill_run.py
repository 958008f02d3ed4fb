"""A timed SparseFusion-style distillation run on one GPU: the issue's table and a contact sheet.

    python -m holo3d.bench.distill_run --denoiser-exp EXP --scenes 5 --seconds-per-scene 60 --out DIR
    python -m holo3d.bench.distill_run ... --set grid_resolution=96 --set camera_distribution=sphere

EXP is a trained GenvsModel experiment (e.g. ``python experiment.py --config-name genvs_srn_cars.yaml``)
whose dataset is on disk. For each of the first ``--scenes`` held-out scenes: K seeded input views,
a field distilled for ``--seconds-per-scene`` seconds (bf16 autocast on the GPU, as distill.py), then
at the held-out views PSNR / SSIM, multi-view consistency (reprojection error into the nearest view)
and the sharpness ratio (mean image-gradient magnitude of outputs / of the ground truth, as the GeNVS
run) of (a) the denoiser's regression render, (b) independent per-view samples, (c) the distilled field.

Writes DIR/metrics.json (the table, per-scene figures, seconds per scene), DIR/contact_sheet.png (a
row per scene: the K inputs | GT | (a) | (b) | (c) at its first held-out view) and each scene's
distill.py outputs under DIR/scenes/. Any DistillConfig key can be set with ``--set key=value``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from holo3d.eval import sharpness
from holo3d.bench.timing import peak_memory_gib, reset_peak_memory
from holo3d.eval import write_metrics_json
from holo3d.sample.distill_config import DistillConfig

TABLE_METRICS = ("psnr", "ssim", "psnr_fg", "consistency_l1", "sharpness_ratio")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m holo3d.bench.distill_run", description=__doc__.split("\n")[0])
    parser.add_argument("--denoiser-exp", required=True, help="trained GenvsModel experiment folder")
    parser.add_argument("--out", required=True, help="folder for metrics.json, contact_sheet.png, scenes/")
    parser.add_argument("--scenes", type=int, default=5, help="held-out scenes (the split's first ones)")
    parser.add_argument("--seconds-per-scene", type=float, default=60.0, help="optimisation budget per scene")
    parser.add_argument("--iterations", type=int, default=100_000,
                        help="iteration cap per scene (the annealing follows iterations or seconds)")
    parser.add_argument("--n-input-views", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any DistillConfig key (holo3d/sample/distill_config.py), repeatable")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> DistillConfig:
    """DistillConfig of the run (typed: a wrong key or value type fails here, named)."""
    from holo3d.sample.video_writer import video_backend

    try:
        video_backend()
        videos = True
    except Exception:  # noqa: BLE001 - no mp4 encoder on this host: metrics and PNGs only
        videos = False
    base = DistillConfig(exp_dir=str(args.denoiser_exp), output_dir=str(Path(args.out) / "scenes"),
                         max_scenes=args.scenes, iterations=args.iterations, max_seconds=args.seconds_per_scene,
                         n_input_views=args.n_input_views, write_videos=videos)
    cfg = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(list(args.set)))
    return OmegaConf.to_object(cfg)


def scene_figures(result: Dict[str, Any]) -> Dict[str, Any]:
    """Per method the scene's mean metrics and the sharpness ratio."""
    from holo3d.sample.distillation import METHODS

    gt = result["views"].heldout_rgb.float().cpu()
    figures = {}
    for name in METHODS:
        values = dict(result["methods"][name])
        values["sharpness_ratio"] = float(sharpness(result["evaluation"]["images"][name]) / sharpness(gt))
        figures[name] = values
    return {"methods": figures, "seconds": result["seconds"], "iterations": result["iterations"]}


def table(per_scene: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Means over scenes: per method TABLE_METRICS, and the seconds / iterations per scene."""
    from holo3d.sample.distillation import METHODS

    def mean(values):
        finite = [v for v in values if v is not None and v == v]
        return sum(finite) / len(finite) if finite else None

    out: Dict[str, Any] = {name: {k: mean([s["methods"][name].get(k) for s in per_scene.values()])
                                  for k in TABLE_METRICS} for name in METHODS}
    out["seconds_per_scene"] = mean([s["seconds"] for s in per_scene.values()])
    out["iterations_per_scene"] = mean([s["iterations"] for s in per_scene.values()])
    return out


def sheet_row(result: Dict[str, Any]) -> torch.Tensor:
    """(K + 4, 3, H, W): the inputs, then GT, (a), (b), (c) at the first held-out view."""
    from holo3d.sample.distillation import METHODS

    views, images = result["views"], result["evaluation"]["images"]
    tiles = [*views.input_rgb.float().cpu(), views.heldout_rgb[0].float().cpu(), *(images[m][0] for m in METHODS)]
    return torch.stack(tiles)


def run(cfg: DistillConfig, out: Path) -> Dict[str, Any]:
    """Distills the scenes (fresh folders) and returns the report and the contact-sheet rows."""
    from holo3d.sample.distillation import check_settings, denoiser_for, run_scene, safe_name
    from holo3d.sample.experiment_loader import load_experiment
    from holo3d.sample.reconstruct import heldout_sequences
    from types import SimpleNamespace

    check_settings(cfg)
    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    denoiser = denoiser_for(loaded.model, cfg.guidance)
    dataset, names = heldout_sequences(loaded.config, SimpleNamespace(split=cfg.split, sequences=list(cfg.scenes),
                                                                      max_sequences=cfg.max_scenes))
    per_scene, rows = {}, []
    reset_peak_memory(loaded.device)
    for name in names:
        folder = Path(cfg.output_dir) / safe_name(name)
        shutil.rmtree(folder, ignore_errors=True)  # a benchmark times whole runs, never a resumed one
        start = time.perf_counter()
        result = run_scene(cfg, loaded.model, denoiser, dataset, name, folder, loaded.device)
        per_scene[name] = {**scene_figures(result), "wall_s": time.perf_counter() - start}
        rows.append(sheet_row(result))
        print(f"{name}: " + ", ".join(f"{m} PSNR {v['psnr']:.2f} sharp {v['sharpness_ratio']:.2f} "
                                      f"cons {v['consistency_l1']}" for m, v in per_scene[name]["methods"].items()),
              flush=True)
    device = loaded.device
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              **loaded.info(), "table": table(per_scene), "per_scene": per_scene,
              "peak_memory": peak_memory_gib(device), "settings": OmegaConf.to_container(OmegaConf.structured(cfg)),
              "contact_sheet_columns": ["inputs"] * cfg.n_input_views + ["ground truth", "(a) regression render",
                                                                         "(b) per-view samples", "(c) distilled"]}
    return {"report": report, "rows": rows}


def main(argv: Optional[List[str]] = None) -> int:
    from holo3d.sample.contact_sheet import compose_sheet, write_png
    from holo3d.sample.script_runner import inference_precision

    args = parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = make_config(args)
    with inference_precision(cfg.precision, cfg.device):
        result = run(cfg, out)
    write_png(out / "contact_sheet.png", compose_sheet(result["rows"]))
    report = {**result["report"], "wall_s": time.perf_counter() - start}
    write_metrics_json(out / "metrics.json", report)
    print(json.dumps(report["table"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
