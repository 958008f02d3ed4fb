"""generate_samples.py's driver: samples from noise, rendered along turntables, videos, grids, meshes.

Works for every model of the model protocol (``holo3d.models.protocol.GenerativeModel``): 3D samples
are rendered along a turntable, image samples are shown as they are (one frame).

Outputs in ``EXP/generated_samples/`` (every file written under a temporary name, then renamed):

    sample_XXX.mp4              turntable of sample XXX (.gif beside it with gif=True)
    sample_XXX_progressive.mp4  the denoising animation (progressive_sampling_steps_per_render=k)
    sample_XXX.pt               the (F, D, H, W) grid (save_voxel_features=True; radiance grids)
    sample_XXX.ply              coloured mesh (export_mesh=True)
    samples.npy                 (N, R, R, R) bool occupancy of every sample (voxel models)
    contact_sheet.png           every sample with a video (rows) from a few fixed views (columns)
    manifest.json               settings, checkpoint and files of this run
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from tqdm import tqdm

from holo3d.sample.camera_path import make_turntable
from holo3d.sample.contact_sheet import compose_sheet, sheet_view_indices, write_png
from holo3d.sample.dataset_access import training_cameras_if_available
from holo3d.diffusion import SAMPLERS
from holo3d.models.protocol import FieldModel, GenerativeModel, OutputKind
from holo3d.sample.experiment_loader import LoadedExperiment, load_experiment, output_dir
from holo3d.sample.frame_renderer import render_views, resize_frames
from holo3d.sample.mesh_export import extract_mesh, save_mesh_ply
from holo3d.sample.progressive import ProgressiveRenderer
from holo3d.sample.input_checks import ExperimentLoadError, SettingsError, ensure_writable_dir
from holo3d.sample.script_config import SampleConfig, optional_steps
from holo3d.sample.video_writer import BackgroundVideoWriter, VideoWriter, video_backend
from holo3d.io.atomic_file import open_atomic, temporary_sibling, write_text_atomic

logger = logging.getLogger(__name__)


def check_settings(cfg: SampleConfig) -> None:
    """Refuses settings that would fail late (after minutes of sampling), naming the key."""
    problems = []
    if cfg.sampler not in SAMPLERS:
        problems.append(f"sampler={cfg.sampler!r} (expected one of {', '.join(SAMPLERS)})")
    for key in ("render_size", "video_size"):
        size = list(getattr(cfg, key))
        if len(size) != 2 or min(size) < 1:
            problems.append(f"{key}={size} (expected [H, W] of positive integers)")
    for key in ("num_samples", "batch_size", "n_frames", "fps", "mesh_resolution", "contact_sheet_views"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 1)")
    # 0 means "the default" for these; a negative value was silently treated as 0 before
    for key in ("progressive_sampling_steps_per_render", "steps", "eta", "s_churn", "chunk_size", "guidance"):
        if getattr(cfg, key) < 0:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 0)")
    if cfg.max_videos < -1:
        problems.append(f"max_videos={cfg.max_videos} (-1 for all, or >= 0)")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))


def generate_samples(cfg: SampleConfig) -> Path:
    """Runs the whole script; returns the output folder."""
    check_settings(cfg)
    video_backend()  # no encoder -> fail now, not after sampling
    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    _check_can_sample(loaded.model, cfg)
    out_dir = ensure_writable_dir(output_dir(loaded, cfg.output_dir, "generated_samples"),
                                  "output_dir" if cfg.output_dir else "exp_dir (its generated_samples folder)")
    check_frame_memory(cfg, loaded.device, has_cameras=loaded.model.scene_extent > 0)
    cameras, note = _turntable(cfg, loaded)
    logger.info(note)
    rows, files, seconds = _sample_and_write(cfg, loaded, cameras, out_dir)
    if rows:
        files.append(write_png(out_dir / "contact_sheet.png", compose_sheet(rows)))
    _write_manifest(out_dir, cfg, loaded, note, files, seconds)
    logger.info("wrote %d samples to %s (%s)", cfg.num_samples, out_dir,
                ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return out_dir


def check_frame_memory(cfg: SampleConfig, device: torch.device, has_cameras: bool = True) -> None:
    """SettingsError when one sample's frames cannot fit, before any sampling: render_views keeps
    every frame of a turntable (rgb + depth + opacity, float32) on the device, resized video
    frames are made there too, and the background encoder holds up to 6 videos as uint8 on the
    host. A huge render_size used to fail only after all the sampling was done."""
    frames = cfg.n_frames if has_cameras else 1
    h, w = cfg.render_size
    vh, vw = cfg.video_size
    on_device = frames * 4 * (5 * h * w + 3 * vh * vw)
    on_host = 6 * frames * 3 * vh * vw + (on_device if device.type == "cpu" else 0)
    for where, needed, free in (("device", on_device, _free_memory(device)),
                                ("host", on_host, _free_memory(torch.device("cpu")))):
        if free is not None and needed > 0.9 * free:
            raise SettingsError(
                f"render_size={list(cfg.render_size)}, video_size={list(cfg.video_size)}, n_frames={frames}: "
                f"rendering one sample needs about {needed / 2**30:.1f} GiB of {where} memory, "
                f"{free / 2**30:.1f} GiB is free; lower render_size / video_size / n_frames"
            )


def _free_memory(device: torch.device):
    """Free bytes on ``device`` (host: MemAvailable), or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


@contextlib.contextmanager
def _timed(seconds: Dict[str, float], what: str, device: torch.device):
    """Adds the wall time of the block to seconds[what] (after the device finished its work)."""
    tic = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds[what] = seconds.get(what, 0.0) + time.perf_counter() - tic


def _sample_and_write(cfg, loaded, cameras, out_dir):
    """All batches: sample, render, write. Returns (contact-sheet rows, files, seconds per phase)."""
    generator = torch.Generator(device=loaded.device).manual_seed(cfg.seed)
    columns = sheet_view_indices(cfg.n_frames if cameras is not None else 1, cfg.contact_sheet_views)
    rows, files, seconds, device = [], [], {}, loaded.device
    n_videos = cfg.num_samples if cfg.max_videos < 0 else min(cfg.max_videos, cfg.num_samples)
    voxels = VoxelArrayWriter(out_dir / "samples.npy", cfg.num_samples) if _writes_voxels(loaded.model) else None
    bar = tqdm(total=cfg.num_samples, desc="samples", unit="sample")
    with bar, BackgroundVideoWriter() as videos, voxels or contextlib.nullcontext():
        for start in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - start)
            with _timed(seconds, "sampling", device):
                grids, progressive = _sample_batch(cfg, loaded, n, start, generator, cameras, out_dir)
            files += progressive
            if voxels is not None:
                with _timed(seconds, "writing samples.npy", device):
                    voxels.write(start, grids)
            for b in range(min(n, max(0, n_videos - start))):
                with _timed(seconds, "rendering and meshes", device):
                    row, written = _write_sample(cfg, loaded, grids[b], start + b, cameras, out_dir, columns, videos)
                rows.append(row)
                files += written
            bar.update(n)
        with _timed(seconds, "waiting for video encoding", device):
            files += videos.wait()
    files += [voxels.path] if voxels is not None else []
    return rows, files, seconds


def _writes_voxels(model: GenerativeModel) -> bool:
    return model.output_kind == OutputKind.VOXELS


class VoxelArrayWriter:
    """Occupancy samples (B, 1, R, R, R) in [0, 1], thresholded at 0.5, into one (N, R, R, R) bool
    ``.npy`` (the 3D metrics' input, ``python -m holo3d.eval.shape_metrics``), written through a
    memory map under a temporary name and renamed when complete."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.array = Path(path), n, None
        self.partial = temporary_sibling(self.path)

    def write(self, start: int, occupancy: torch.Tensor) -> None:
        occupancy = occupancy.reshape(occupancy.shape[0], *occupancy.shape[-3:])  # (B, R, R, R)
        if self.array is None:
            self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.bool_,
                                                   shape=(self.n, *occupancy.shape[1:]))
        self.array[start : start + occupancy.shape[0]] = (occupancy > 0.5).cpu().numpy()

    def __enter__(self) -> "VoxelArrayWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.array is not None:
            self.array.flush()
            self.array = None
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def _check_can_sample(model: torch.nn.Module, cfg: SampleConfig) -> None:
    name = type(model).__name__
    if not isinstance(model, GenerativeModel):
        raise ExperimentLoadError(f"this experiment's {name} is not a generative model: it cannot sample")
    if not model.can_sample:
        raise ExperimentLoadError(f"this experiment's {name} is {model.cannot_sample_reason}")
    if cfg.export_mesh and not isinstance(model, FieldModel):
        raise SettingsError(f"export_mesh=True: {name}'s samples are not a radiance field")
    if cfg.save_voxel_features and model.output_kind != OutputKind.RADIANCE_GRID:
        raise SettingsError(f"save_voxel_features=True: {name}'s samples are not feature grids")
    try:
        model.conditions(1, cfg.label)
    except ValueError as error:
        raise SettingsError(f"label={cfg.label!r}: {error}") from None


def _turntable(cfg: SampleConfig, loaded: LoadedExperiment):
    """Turntable cameras; the training cameras set up axis / distance only if the dataset is on disk.
    Image models (no 3D samples) have no camera path: (None, note)."""
    if loaded.model.scene_extent <= 0:
        return None, "image model: one frame per sample, no camera path"
    needs_data = len(cfg.up) == 0 or cfg.distance <= 0
    data_cameras, why_not = training_cameras_if_available(loaded.config) if needs_data else (None, "")
    cameras, note = make_turntable(cfg, _volume_extent(loaded.model), data_cameras, device=loaded.device)
    if needs_data and data_cameras is None:
        note += f"; dataset not used: {why_not}"
    return cameras, note


def _volume_extent(model: GenerativeModel) -> float:
    return model.scene_extent


def _chunk_size(cfg, model: GenerativeModel) -> int:
    return cfg.chunk_size if cfg.chunk_size > 0 else model.render_chunk_size


def _sampler_kwargs(cfg: SampleConfig, model: GenerativeModel, n: int) -> Dict:
    kwargs = {"sampler": cfg.sampler, "steps": optional_steps(cfg.steps), "eta": cfg.eta,
              "cond": model.conditions(n, cfg.label)}
    options = SAMPLERS[cfg.sampler].options
    if cfg.guidance != 1.0:
        kwargs["guidance_scale"] = cfg.guidance
    if "S_churn" in options and cfg.s_churn > 0:
        kwargs["S_churn"] = cfg.s_churn
    return kwargs


def _sample_batch(cfg, loaded, n, start, generator, cameras, out_dir):
    """(n grids (n, F, D, H, W), progressive video paths): one sampler call for the batch."""
    model, k = loaded.model, cfg.progressive_sampling_steps_per_render
    steps_bar = tqdm(desc=f"sampling {start}-{start + n - 1}", unit="step", leave=False)
    with steps_bar, contextlib.ExitStack() as stack:
        callback, writers = (lambda i, x, x0: steps_bar.update(1)), []
        if _writes_voxels(model):
            # A latent voxel model decodes its x0 for every callback: a per-step progress bar would
            # cost one decoder pass per step. The samples bar still counts the batches.
            callback = None
        if k > 0:
            writers = [
                stack.enter_context(VideoWriter(out_dir / f"sample_{start + b:03d}_progressive.mp4", cfg.fps, cfg.gif))
                for b in range(n)
            ]
            callback = ProgressiveRenderer(model, writers, cameras, cfg.render_size, cfg.video_size, k,
                                           _chunk_size(cfg, model), steps_bar)
        with model.sampling_accelerated(cfg.cuda_graph):
            grids = model.sample(n, generator=generator, callback=callback, device=loaded.device,
                                 **_sampler_kwargs(cfg, model, n))
        if k > 0:
            logger.info("progressive: %d frames over %d steps", callback.finish(), callback.n_steps)
    return grids, [path for w in writers for path in w.written]


def _write_sample(cfg, loaded, grid, index, cameras, out_dir, columns, videos):
    """Turntable video (encoded in the background), optional grid and mesh of one sample;
    returns (contact-sheet row (V, 3, H, W) on the CPU, paths written now)."""
    name, model, written = f"sample_{index:03d}", loaded.model, []
    with tqdm(total=len(cameras) if cameras is not None else 1, desc=f"{name} frames", unit="frame",
              leave=False) as bar:
        frames = render_views(model, grid, cameras, cfg.render_size, _chunk_size(cfg, model), bar)
    videos.submit(out_dir / f"{name}.mp4", resize_frames(frames["rgb"], cfg.video_size), cfg.fps, cfg.gif)
    if cfg.save_voxel_features:
        with open_atomic(out_dir / f"{name}.pt") as stream:
            torch.save(grid.detach().cpu().clone(), stream)
        written.append(out_dir / f"{name}.pt")
    if cfg.export_mesh:
        written += _export_mesh(cfg, model, grid, out_dir / f"{name}.ply")
    return frames["rgb"][columns].cpu(), written


def _export_mesh(cfg, model, grid, path: Path) -> List[Path]:
    mesh, level = extract_mesh(model, grid, cfg.mesh_resolution, cfg.mesh_threshold)
    if mesh is None:
        logger.warning("%s: no surface at density level %.4g; no mesh written", path.stem, level)
        return []
    save_mesh_ply(mesh, path)
    logger.info("%s: %d vertices at density level %.4g", path.name, mesh.num_verts_per_mesh()[0], level)
    return [path]


def _write_manifest(out_dir: Path, cfg, loaded: LoadedExperiment, note: str, files, seconds) -> None:
    settings = {k: getattr(cfg, k) for k in ("num_samples", "batch_size", "sampler", "steps", "eta",
                                             "s_churn", "seed", "progressive_sampling_steps_per_render")}
    manifest = {**loaded.info(), "settings": settings, "camera_path": note,
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "files": sorted(str(Path(f).name) for f in files)}
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=list) + "\n")
