"""CO3D-like camera paths: one hand-held loop around the object, looking at it.

A CO3D video walks once around the object at a roughly constant height and distance, with the
camera wobbling. We mimic that: azimuth sweeps most of a full turn, elevation and distance vary
smoothly around per-sequence means plus small per-frame jitter, the look-at point jitters around
the object centre, and focal length / principal point vary per sequence (and the focal slightly per
frame, as CO3D's per-frame intrinsics do). Intrinsics are in PyTorch3D's isotropic NDC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch3d.renderer import look_at_view_transform


@dataclass
class OrbitCameras:
    """V cameras, PyTorch3D convention (X_cam = X_world @ R + T), intrinsics in isotropic NDC.

    Attributes:
        R: (V, 3, 3) float32.
        T: (V, 3) float32.
        focal_length: (V, 2) float32, NDC units (the shorter image side spans [-1, 1]).
        principal_point: (V, 2) float32, NDC units.
    """

    R: torch.Tensor
    T: torch.Tensor
    focal_length: torch.Tensor
    principal_point: torch.Tensor

    def __len__(self) -> int:
        return self.R.shape[0]


# (low, high) ranges of the per-sequence path parameters
ELEVATION_DEG = (5.0, 40.0)
ELEVATION_WOBBLE_DEG = (3.0, 12.0)
SWEEP_DEG = (300.0, 360.0)
DISTANCE = (2.5, 3.1)
FOCAL_NDC = (2.0, 2.6)
PRINCIPAL_NDC = 0.04
FILL = 0.92  # the object's projected radius stays below this fraction of the half image


def sample_orbit(rng: np.random.Generator, n_frames: int, object_radius: float = 0.8) -> OrbitCameras:
    """Cameras for ``n_frames`` frames of one sequence, deterministic given ``rng``."""
    t = np.arange(n_frames) / n_frames  # (V,) fraction of the loop
    direction = rng.choice([-1.0, 1.0])
    azim = rng.uniform(0, 360) + direction * rng.uniform(*SWEEP_DEG) * t + rng.normal(0, 1.5, n_frames)
    elev = (
        rng.uniform(*ELEVATION_DEG)
        + rng.uniform(*ELEVATION_WOBBLE_DEG) * np.sin(2 * np.pi * (rng.integers(1, 3) * t + rng.random()))
        + rng.normal(0, 1.0, n_frames)
    )
    breathing = 0.05 * np.sin(2 * np.pi * (t + rng.random()))  # the walker drifts in and out
    dist = rng.uniform(*DISTANCE) * (1 + breathing + rng.normal(0, 0.01, n_frames))
    at = rng.normal(0, 0.02, (n_frames, 3))
    principal = rng.uniform(-PRINCIPAL_NDC, PRINCIPAL_NDC, 2)
    focal = rng.uniform(*FOCAL_NDC) * (1 + rng.normal(0, 0.01, n_frames))
    focal = np.minimum(focal, _max_focal(dist, object_radius, np.abs(at).max(axis=1), np.abs(principal).max()))
    R, T = look_at_view_transform(
        dist=torch.tensor(dist, dtype=torch.float32),
        elev=torch.tensor(elev, dtype=torch.float32),
        azim=torch.tensor(azim, dtype=torch.float32),
        at=torch.tensor(at, dtype=torch.float32),
    )
    return OrbitCameras(
        R=R.float(),
        T=T.float(),
        focal_length=torch.tensor(np.stack([focal, focal], axis=1), dtype=torch.float32),
        principal_point=torch.tensor(np.tile(principal, (n_frames, 1)), dtype=torch.float32),
    )


def _max_focal(dist: np.ndarray, radius: float, at_offset: np.ndarray, principal: float) -> np.ndarray:
    """(V,) the largest NDC focal keeping a sphere of ``radius`` around the origin in frame."""
    # the sphere seen from ``dist`` subtends a half angle asin(r / d); the look-at offset shifts it
    half_angle = np.arcsin(np.minimum((radius + at_offset * np.sqrt(3)) / dist, 0.99))
    return (FILL - principal) / np.tan(half_angle)
