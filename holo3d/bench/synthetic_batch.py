"""Synthetic training batches: S scenes x N frames, collated as the data loader yields them.

A batch is one Implicitron ``FrameData`` of ``S * N`` frames, scene-major (frames ``[s N, (s+1) N)``
are scene ``s``; the model takes the first T as targets), with random images, a foreground disc per
frame, full mask crops, and NDC ``PerspectiveCameras`` on a turntable orbit around the world cube
(a random start azimuth and elevation per scene). No dataset is read: the tensors are drawn directly
on the device, so that the 800 px frames of 8 scenes (~1 GB) never pass through host memory.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.renderer import PerspectiveCameras

from holo3d.render.trajectories import turntable_cameras

# The world cube [-1, 1]^3 seen from 3.5 units with NDC focal 2 fills about half of each image.
ORBIT_DISTANCE = 3.5
FOCAL_LENGTH = 2.0


def orbit_cameras(n_scenes: int, n_frames: int, device: torch.device, generator: torch.Generator
                  ) -> PerspectiveCameras:
    """S * N NDC cameras, scene-major: each scene a turntable with its own start and elevation."""
    starts = torch.rand(n_scenes, generator=generator) * 360.0
    elevations = 10.0 + torch.rand(n_scenes, generator=generator) * 30.0
    scenes = [
        turntable_cameras(n_frames, elevation_deg=float(e), distance=ORBIT_DISTANCE,
                          focal_length=FOCAL_LENGTH, azimuth_start_deg=float(a), device=device)
        for a, e in zip(starts, elevations)
    ]
    return PerspectiveCameras(
        focal_length=torch.cat([c.focal_length for c in scenes]),
        principal_point=torch.cat([c.principal_point for c in scenes]),
        R=torch.cat([c.R for c in scenes]),
        T=torch.cat([c.T for c in scenes]),
        in_ndc=True,
        device=device,
    )


def disc_masks(n: int, size: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) binary discs of radius ~0.3 size near the image centre."""
    centres = 0.5 + 0.05 * (torch.rand(n, 2, generator=generator) - 0.5)  # (n, 2) in [0, 1]
    radii = 0.25 + 0.1 * torch.rand(n, generator=generator)  # (n,)
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    dy = coords[None, :, None] - centres[:, 0, None, None].to(device)  # (n, size, 1)
    dx = coords[None, None, :] - centres[:, 1, None, None].to(device)  # (n, 1, size)
    inside = dx.square() + dy.square() <= radii.to(device)[:, None, None].square()
    return inside.to(torch.float32)[:, None]  # (n, 1, size, size)


def synthetic_frame_data(
    n_scenes: int,
    n_frames: int,
    image_size: int,
    device: torch.device,
    seed: int = 0,
    generator: Optional[torch.Generator] = None,
) -> FrameData:
    """A collated FrameData of n_scenes * n_frames frames (image_size^2), scene-major, on device."""
    generator = generator or torch.Generator().manual_seed(seed)
    total = n_scenes * n_frames
    device_generator = torch.Generator(device=device).manual_seed(seed)
    images = torch.rand(total, 3, image_size, image_size, device=device, generator=device_generator)
    size_hw = torch.tensor([image_size, image_size], dtype=torch.long).expand(total, 2).contiguous()
    return FrameData(
        frame_number=torch.arange(total) % n_frames,
        sequence_name=[f"bench_{i // n_frames:04d}" for i in range(total)],
        sequence_category=["bench"] * total,
        image_size_hw=size_hw,
        effective_image_size_hw=size_hw.clone(),
        image_rgb=images,  # (S*N, 3, H, W)
        fg_probability=disc_masks(total, image_size, device, generator),  # (S*N, 1, H, W)
        mask_crop=torch.ones(total, 1, image_size, image_size, device=device),
        camera=orbit_cameras(n_scenes, n_frames, device, generator),
    )


def batch_bytes(frame_data: FrameData) -> int:
    """Bytes of the batch's image tensors (what a host-to-device copy moves)."""
    names = ("image_rgb", "fg_probability", "mask_crop", "depth_map")
    tensors = [getattr(frame_data, n) for n in names if getattr(frame_data, n) is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def pinned(frame_data: FrameData) -> FrameData:
    """A copy of a CPU batch with its image tensors in page-locked memory (DataLoader pin_memory)."""
    changes = {n: getattr(frame_data, n).pin_memory()
               for n in ("image_rgb", "fg_probability", "mask_crop")
               if getattr(frame_data, n) is not None}
    return dataclasses.replace(frame_data, **changes)
