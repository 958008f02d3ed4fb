"""The Python API: load a trained model from an experiment or an export, sample, render turntables.

    import holo3d
    model = holo3d.load("exp/base")                  # or an export folder (python -m holo3d.export)
    grids = model.sample(4, steps=50)                 # (4, F, D, H, W) for radiance-grid models
    frames = holo3d.render_turntable(model, grids, n_frames=48)   # (4, 48, 3, H, W) in [0, 1]

The model is the one of the model protocol (holo3d/models/protocol.py): ``sample``,
``render_samples``, ``preview_frames``, ``reconstruct_from_views`` ... as its mixins declare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from holo3d.export import is_export_dir, load_export
from holo3d.models.protocol import RenderableModel
from holo3d.render.trajectories import DEFAULT_DISTANCE_PER_EXTENT, turntable_cameras
from holo3d.sample.experiment_loader import load_experiment, resolve_device
from holo3d.sample.frame_renderer import render_views
from holo3d.sample.input_checks import ExperimentLoadError


def load(path: str | Path, *, device: str = "auto", epoch: int = -1, use_ema: bool = True) -> torch.nn.Module:
    """The trained model in ``path`` (an experiment folder or an export folder), in eval mode.

    Experiment folders give the newest usable checkpoint (or ``epoch``'s), EMA weights when the run
    kept them (``use_ema``); export folders hold one set of weights. ``device``: "auto" (CUDA when
    available), "cpu", "cuda:1" ... Raises ExperimentLoadError naming what is missing or different.
    """
    if not Path(path).expanduser().is_dir():
        raise ExperimentLoadError(f"{path} is not a folder (expected an experiment or export folder)")
    if is_export_dir(Path(path).expanduser()):
        return load_export(Path(path).expanduser(), resolve_device(device))
    return load_experiment(str(path), epoch=epoch, use_ema=use_ema, device=device).model


@torch.no_grad()
def render_turntable(
    model: torch.nn.Module,
    samples: torch.Tensor,
    n_frames: int = 48,
    image_size: int = 128,
    elevation_deg: float = 20.0,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Frames of each sample on a full turn around the up axis: (B, n_frames, 3, S, S) in [0, 1].

    ``samples`` are what ``model.sample`` returned (B, ...). Image models (``scene_extent == 0``)
    have no camera: their one frame is repeated ``n_frames`` times.
    """
    if not isinstance(model, RenderableModel):
        raise TypeError(f"{type(model).__name__} is not a RenderableModel: it cannot render samples")
    device = samples.device
    cameras = None
    if model.scene_extent > 0:
        cameras = turntable_cameras(n_frames, elevation_deg=elevation_deg,
                                    distance=DEFAULT_DISTANCE_PER_EXTENT * model.scene_extent, device=device)
    chunk = chunk_size or model.render_chunk_size
    videos = []
    for sample in samples:
        rgb = render_views(model, sample, cameras, (image_size, image_size), chunk)["rgb"]  # (V, 3, S, S)
        videos.append(rgb.expand(n_frames, -1, -1, -1) if cameras is None else rgb)
    return torch.stack(videos).clamp(0, 1)  # (B, n_frames, 3, S, S)
