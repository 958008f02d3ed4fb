"""The turntable a video is rendered along, with its up axis and distance resolved from the settings,
the dataset's cameras when they are at hand, or plain defaults (and a line saying which).

CO3D sequences are not gravity-aligned, so the orbit's up axis comes from the training cameras
(``estimate_up_axis``) when the dataset is on disk; without it, +Y is used and the run says so.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from pytorch3d.renderer import PerspectiveCameras
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.render.trajectories import DEFAULT_DISTANCE_PER_EXTENT, estimate_up_axis, turntable_cameras
from holo3d.sample.input_checks import SettingsError

DEFAULT_UP = (0.0, 1.0, 0.0)
# Without data, the camera sits 1.5 volume extents from the centre: with the default NDC focal
# length 2 the whole cube stays in frame.


def resolve_up(cfg, data_cameras: Optional[CamerasBase]) -> Tuple[torch.Tensor, str]:
    """(unit up axis (3,), where it came from)."""
    if len(cfg.up) > 0:
        if len(cfg.up) != 3:
            raise SettingsError(f"up={list(cfg.up)} must have 3 numbers")
        up = torch.tensor([float(v) for v in cfg.up])
        return up / up.norm().clamp_min(1e-12), "given"
    if data_cameras is not None:
        up = estimate_up_axis(data_cameras.cpu())
        return up, f"estimated from {len(data_cameras)} dataset cameras"
    return torch.tensor(DEFAULT_UP), "default +Y (dataset not available to estimate it)"


def resolve_distance(cfg, volume_extent: float, data_cameras: Optional[CamerasBase]) -> Tuple[float, str]:
    """(camera distance from the origin, where it came from)."""
    if cfg.distance > 0:
        return float(cfg.distance), "given"
    if data_cameras is not None:
        centres = data_cameras.cpu().get_camera_center()  # (N, 3)
        return float(centres.norm(dim=-1).median()), "median of the dataset cameras"
    return DEFAULT_DISTANCE_PER_EXTENT * volume_extent, "default (1.5 x volume_extent)"


def make_turntable(
    cfg,
    volume_extent: float,
    data_cameras: Optional[CamerasBase] = None,
    n_frames: Optional[int] = None,
    device: torch.device = torch.device("cpu"),
) -> Tuple[PerspectiveCameras, str]:
    """(n_frames turntable cameras around the origin, one line describing the path).

    ``cfg`` is a TurntableConfig (n_frames, elevation_deg, distance, focal_length, up).
    """
    up, up_source = resolve_up(cfg, data_cameras)
    distance, distance_source = resolve_distance(cfg, volume_extent, data_cameras)
    n = int(n_frames or cfg.n_frames)
    cameras = turntable_cameras(
        n, elevation_deg=cfg.elevation_deg, distance=distance, up=up.tolist(),
        focal_length=cfg.focal_length, device=device,
    )
    up_text = ", ".join(f"{v:+.2f}" for v in up.tolist())
    note = (
        f"turntable: {n} frames, elevation {cfg.elevation_deg:g} deg, distance {distance:.2f} "
        f"({distance_source}), up ({up_text}) ({up_source})"
    )
    return cameras, note
