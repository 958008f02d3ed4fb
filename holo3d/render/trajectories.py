"""Camera trajectories for videos: turntables around an up axis, and that axis estimated from data.

CO3D scenes are not gravity-aligned (each sequence has its own world frame), so a turntable must
orbit the scene's own up axis, estimated from its training cameras, rather than world +Y.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform
from pytorch3d.renderer.cameras import CamerasBase

Vec3 = Union[Sequence[float], torch.Tensor]

# Turntables circle at this multiple of the scene cube side: the whole cube stays in view at the
# default focal length.
DEFAULT_DISTANCE_PER_EXTENT = 1.5


def _orbit_basis(up: torch.Tensor) -> torch.Tensor:
    """Orthonormal (forward, side, up) rows with ``forward`` the world +Z projected off ``up``.

    For up = +Y this gives forward = +Z and side = +X, so azimuth and elevation mean the same as in
    PyTorch3D's ``look_at_view_transform(dist, elev, azim)``.
    """
    up = up / up.norm()
    ref = torch.tensor([0.0, 0.0, 1.0], device=up.device)
    if torch.abs(up @ ref) > 0.99:  # up is (nearly) world Z: start from world X instead
        ref = torch.tensor([1.0, 0.0, 0.0], device=up.device)
    forward = ref - (ref @ up) * up
    forward = forward / forward.norm()
    side = torch.linalg.cross(up, forward)
    return torch.stack([forward, side, up])  # (3, 3)


def turntable_cameras(
    n_frames: int,
    elevation_deg: float = 20.0,
    distance: float = 3.0,
    up: Vec3 = (0.0, 1.0, 0.0),
    fov_deg: Optional[float] = None,
    focal_length: float = 2.0,
    image_size: Optional[Sequence[int]] = None,
    at: Vec3 = (0.0, 0.0, 0.0),
    azimuth_start_deg: float = 0.0,
    device: Union[str, torch.device] = "cpu",
) -> PerspectiveCameras:
    """n_frames NDC cameras on a circle around ``up`` through ``at``, looking at ``at``.

    Frame k sits at azimuth ``azimuth_start_deg + 360 k / n_frames`` and ``elevation_deg`` above the
    plane perpendicular to ``up``, ``distance`` from ``at``, its image-up direction toward ``up``.

    Args:
        fov_deg: full field of view across the shorter image side; overrides ``focal_length``.
        focal_length: NDC focal length (the shorter side spans [-1, 1]).
        image_size: (H, W) stored on the cameras (only needed for screen-space projections).
    """
    up_t = torch.as_tensor(up, dtype=torch.float32, device=device)
    at_t = torch.as_tensor(at, dtype=torch.float32, device=device)
    basis = _orbit_basis(up_t)  # (3, 3) rows forward, side, up
    azim = torch.deg2rad(
        azimuth_start_deg + 360.0 * torch.arange(n_frames, device=device) / n_frames
    )
    elev = math.radians(elevation_deg)
    coeffs = torch.stack(
        [
            math.cos(elev) * torch.cos(azim),
            math.cos(elev) * torch.sin(azim),
            torch.full_like(azim, math.sin(elev)),
        ],
        dim=-1,
    )  # (n_frames, 3)
    eye = at_t + distance * coeffs @ basis  # (n_frames, 3)
    R, T = look_at_view_transform(
        eye=eye, at=at_t[None].expand_as(eye), up=basis[2][None].expand_as(eye), device=device
    )
    if fov_deg is not None:
        focal_length = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    return PerspectiveCameras(
        focal_length=torch.full((n_frames, 1), float(focal_length), device=device),
        R=R,
        T=T,
        in_ndc=True,
        image_size=None if image_size is None else [tuple(image_size)] * n_frames,
        device=device,
    )


def camera_up_vectors(cameras: CamerasBase) -> torch.Tensor:
    """World-space image-up (+Y camera axis) of each camera: column 1 of R. Returns (N, 3)."""
    return cameras.R[:, :, 1]


def estimate_up_axis(cameras: CamerasBase, planarity: float = 0.3) -> torch.Tensor:
    """The scene's up axis from a set of (training) cameras, as a unit (3,) vector.

    Captures orbit the object, so the camera centres lie near a plane whose normal is the up axis;
    its sign is chosen to agree with the average camera up vector. When the centres are not
    planar (smallest spread > ``planarity`` x middle spread, e.g. a few cameras on a line or a
    sphere) the plane is ill-defined and the normalised average up vector is returned instead.
    """
    mean_up = camera_up_vectors(cameras).float().mean(dim=0)
    centres = cameras.get_camera_center().float()  # (N, 3)
    if centres.shape[0] >= 3:
        _, spreads, vh = torch.linalg.svd(centres - centres.mean(dim=0), full_matrices=False)
        if spreads[1] > 0 and spreads[2] <= planarity * spreads[1]:
            normal = vh[2]
            return normal if normal @ mean_up >= 0 else -normal
    return mean_up / mean_up.norm().clamp_min(1e-12)
