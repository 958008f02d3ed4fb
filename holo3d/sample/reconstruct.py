"""visualize_reconstruction.py's driver: few-view reconstructions of held-out sequences, with metrics.

Outputs in ``EXP/reconstructions/`` (each file written under a temporary name, then renamed):

    metrics.json             PSNR / SSIM / MS-SSIM (+ LPIPS when its weights are present) per
                             sequence and their mean (see holo3d.eval.report)
    <seq>_views.mp4          held-out views side by side: GT | render | depth, one frame per view
    <seq>_turntable.mp4      the reconstruction along a turntable: render | depth
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List, Tuple

import torch
from tqdm import tqdm

from holo3d.eval import MetricsReport, image_metrics, lpips, lpips_unavailable_reason, psnr, write_metrics_json
from holo3d.sample.camera_path import make_turntable
from holo3d.sample.dataset_access import build_data_source, dataset_unavailable_reason, sequence_frames
from holo3d.models.protocol import GenerativeModel, ReconstructionModel
from holo3d.sample.experiment_loader import load_experiment, output_dir
from holo3d.sample.input_checks import ExperimentLoadError, SettingsError, ensure_writable_dir
from holo3d.sample.frame_renderer import depth_image, render_views, side_by_side
from holo3d.sample.script_config import ReconstructionConfig
from holo3d.sample.sequence_reconstruction import SequenceReconstruction, reconstruct_sequence
from holo3d.sample.video_writer import video_backend, write_video

logger = logging.getLogger(__name__)


def visualize_reconstruction(cfg: ReconstructionConfig) -> Path:
    """Runs the whole script; returns the output folder."""
    _check_settings(cfg)
    video_backend()
    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    model = loaded.model
    if not isinstance(model, ReconstructionModel):
        raise ExperimentLoadError(f"this experiment's {type(model).__name__} cannot reconstruct from source views")
    _check_model_settings(cfg, model)
    dataset, names = heldout_sequences(loaded.config, cfg)  # names checked: no folder for bad input
    out_dir = ensure_writable_dir(output_dir(loaded, cfg.output_dir, "reconstructions"),
                                  "output_dir" if cfg.output_dir else "exp_dir (its reconstructions folder)")
    report = MetricsReport()
    lpips_reason = lpips_unavailable_reason(cfg.lpips_net)
    if lpips_reason:
        logger.info(lpips_reason)
        report.skip("lpips", lpips_reason)
    generator = torch.Generator(device=loaded.device).manual_seed(cfg.seed)
    chunk = cfg.chunk_size if cfg.chunk_size > 0 else model.render_chunk_size
    for name in tqdm(names, desc="sequences", unit="seq"):
        rec = reconstruct_sequence(model, dataset, sequence_frames(dataset, name), cfg.n_source_views,
                                   cfg.max_target_views, chunk, cfg.denoise_from_t, cfg.denoise_steps, generator)
        means = report.add_sequence(name, sequence_metrics(rec, cfg.lpips_net if not lpips_reason else None))
        logger.info("%s: %s", name, ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
        _write_videos(cfg, model, rec, name, out_dir, chunk)
    info = {**loaded.info(), "split": cfg.split, "n_source_views": cfg.n_source_views,
            "denoise_from_t": cfg.denoise_from_t, "seed": cfg.seed}
    write_metrics_json(out_dir / "metrics.json", report.to_dict(info))
    logger.info("mean over %d sequences: %s", len(names), report.mean())
    return out_dir


def _check_settings(cfg: ReconstructionConfig) -> None:
    problems = []
    if cfg.split not in ("test", "val"):
        problems.append(f"split={cfg.split!r} (expected test or val)")
    for key in ("n_source_views", "max_sequences", "denoise_steps", "n_frames", "fps"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 1)")
    # 0 means "all" / "the default" / "off" for these; negative values were silently clamped
    for key in ("max_target_views", "chunk_size", "denoise_from_t"):
        if getattr(cfg, key) < 0:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 0)")
    if len(cfg.video_size) != 2 or min(cfg.video_size) < 1:
        problems.append(f"video_size={list(cfg.video_size)} (expected [H, W])")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))


def _check_model_settings(cfg: ReconstructionConfig, model) -> None:
    """Settings that depend on the loaded model, checked before any reconstruction."""
    limit = model.max_denoise_from_t
    if cfg.denoise_from_t > 0 and limit == 0:
        raise SettingsError(f"denoise_from_t={cfg.denoise_from_t} needs a diffusion model; this "
                            f"{type(model).__name__} is not one (use_diffusion=False?)")
    if cfg.denoise_from_t > limit:
        raise SettingsError(f"denoise_from_t={cfg.denoise_from_t}: this model denoises from timesteps "
                            f"0 .. {limit}")


def heldout_sequences(config, cfg: ReconstructionConfig) -> Tuple[object, List[str]]:
    """(the held-out split's dataset, the sequence names to reconstruct)."""
    reason = dataset_unavailable_reason(config)
    if reason is not None:
        raise ExperimentLoadError(f"reconstruction needs the experiment's dataset: {reason}")
    datasets, _ = build_data_source(config).get_datasets_and_dataloaders()
    dataset = getattr(datasets, cfg.split)
    if dataset is None or len(dataset) == 0:
        raise ExperimentLoadError(f"the experiment's dataset has no {cfg.split} split")
    available = list(dataset.sequence_names())
    if cfg.sequences:
        missing = [s for s in cfg.sequences if s not in available]
        if missing:
            raise SettingsError(f"sequences {missing} are not in the {cfg.split} split (it has {available[:10]}...)")
        return dataset, list(cfg.sequences)
    return dataset, available[: max(1, cfg.max_sequences)]


def sequence_metrics(rec: SequenceReconstruction, lpips_net=None):
    """Per held-out view (T,): metrics against the masked GT, PSNR against the GT as loaded, LPIPS."""
    metrics = image_metrics(rec.rgb, rec.gt, rec.fg)
    metrics["psnr_full"] = psnr(rec.rgb, rec.gt_full)
    if lpips_net is not None:
        metrics["lpips"] = lpips(rec.rgb, rec.gt, lpips_net)
    return metrics


def _write_videos(cfg, model, rec: SequenceReconstruction, name: str, out_dir: Path, chunk: int) -> None:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # a file name whatever the sequence is called
    depth = depth_image(rec.depth, rec.opacity)
    write_video(out_dir / f"{name}_views.mp4", side_by_side(rec.gt, rec.rgb, depth), cfg.fps, cfg.gif)
    cameras, note = make_turntable(cfg, model.scene_extent, rec.all_cameras, device=rec.grid.device)
    logger.info("%s %s", name, note)
    size = list(cfg.video_size)
    with tqdm(total=len(cameras), desc=f"{name} turntable", unit="frame", leave=False) as bar:
        frames = render_views(model, rec.grid, cameras, size, chunk, bar)
    panels = side_by_side(frames["rgb"], depth_image(frames["depth"], frames["opacity"]))
    write_video(out_dir / f"{name}_turntable.mp4", panels, cfg.fps, cfg.gif)
