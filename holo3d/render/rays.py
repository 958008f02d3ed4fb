"""Rays from PyTorch3D cameras, training-ray sampling, GT gathering, and ray-box clipping.

Conventions. Cameras are PyTorch3D cameras with ``X_cam = X_world @ R + T``. Pixel (row i,
column j) of an (H, W) image has its centre at PyTorch3D NDC (+X left, +Y up, the shorter side
spanning [-1, 1]: the ``ndc_isotropic`` convention, so the longer side spans [-W/s, W/s] or
[-H/s, H/s])

    x = -(2 (j + 0.5) - W) / s,   y = -(2 (i + 0.5) - H) / s,   s = min(H, W)

and at ``F.grid_sample`` coordinates (align_corners=False, +x right, +y down)

    gx = -x * s / W,   gy = -y * s / H.

A ray's direction is the point unprojected at camera depth 1 minus the camera centre, left
unnormalised: a ray length t is then the camera z-depth of ``origin + t * direction``, as in
Implicitron's ray samplers, so rendered depth maps are z-depth maps comparable with CO3D's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from pytorch3d.renderer.cameras import CamerasBase


@dataclass
class RayBatch:
    """A batch of rays, one set per camera.

    Attributes:
        origins: (B, R, 3) world-space camera centres.
        directions: (B, R, 3) world-space, unnormalised (unit camera depth per unit length).
        xys_ndc: (B, R, 2) pixel centres in PyTorch3D NDC.
        xys_grid: (B, R, 2) the same pixels in ``F.grid_sample`` coordinates (align_corners=False);
            ``sample_images_at_rays`` gathers ground truth with them.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    xys_ndc: torch.Tensor
    xys_grid: torch.Tensor


def pixel_centers_ndc(
    image_size: Sequence[int], device: Optional[torch.device] = None
) -> torch.Tensor:
    """NDC centres of every pixel, row-major. Returns (H * W, 2)."""
    h, w = (int(v) for v in image_size)
    s = float(min(h, w))
    ys = -(2.0 * (torch.arange(h, device=device, dtype=torch.float32) + 0.5) - h) / s
    xs = -(2.0 * (torch.arange(w, device=device, dtype=torch.float32) + 0.5) - w) / s
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(h * w, 2)  # (H * W, 2)


def ndc_to_grid_coords(xys_ndc: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """PyTorch3D NDC (..., 2) -> F.grid_sample coordinates (..., 2), align_corners=False."""
    h, w = (int(v) for v in image_size)
    s = float(min(h, w))
    scale = xys_ndc.new_tensor([-s / w, -s / h])
    return xys_ndc * scale


def rays_through_ndc(
    cameras: CamerasBase, xys_ndc: torch.Tensor, image_size: Sequence[int]
) -> RayBatch:
    """Rays of B cameras through given NDC points.

    Args:
        cameras: B cameras (NDC or screen-defined; screen ones need their image_size set).
        xys_ndc: (B, R, 2).
    """
    xy_depth = torch.cat([xys_ndc, torch.ones_like(xys_ndc[..., :1])], dim=-1)  # (B, R, 3)
    at_depth_one = cameras.unproject_points(xy_depth, world_coordinates=True, from_ndc=True)
    centres = cameras.get_camera_center()[:, None, :]  # (B, 1, 3)
    return RayBatch(
        origins=centres.expand_as(at_depth_one),
        directions=at_depth_one - centres,
        xys_ndc=xys_ndc,
        xys_grid=ndc_to_grid_coords(xys_ndc, image_size),
    )


def full_image_rays(cameras: CamerasBase, image_size: Sequence[int]) -> RayBatch:
    """One ray per pixel centre, row-major: every field has R = H * W."""
    xys = pixel_centers_ndc(image_size, cameras.device)
    xys = xys[None].expand(len(cameras), -1, -1)  # (B, H * W, 2)
    return rays_through_ndc(cameras, xys, image_size)


def _drawable_weights(weights: torch.Tensor) -> torch.Tensor:
    """Non-negative float weights (B, H * W); an all-zero row becomes uniform."""
    weights = weights.float().clamp_min(0.0)
    empty = weights.sum(dim=-1, keepdim=True) <= 0
    return torch.where(empty, torch.ones_like(weights), weights)


def rays_need_replacement(sampling_mask: torch.Tensor, n_rays: int) -> bool:
    """Whether ``sample_training_rays`` draws with replacement: some row of the sampling mask
    (B, 1, H, W) at the image size (or (B, H * W)) has fewer than n_rays pixels it can draw.

    One host sync. Deciding it ahead and passing ``replacement`` keeps the draw free of host reads
    (a compiled training step takes it as a Python bool instead of breaking its graph).
    """
    return _too_few_pixels(_drawable_weights(sampling_mask.reshape(sampling_mask.shape[0], -1)), n_rays)


def _too_few_pixels(weights: torch.Tensor, n_rays: int) -> bool:
    return not bool(((weights > 0).sum(dim=-1) >= n_rays).all())


def _sample_pixel_indices(
    weights: torch.Tensor, n_rays: int, generator: Optional[torch.Generator],
    replacement: Optional[bool] = None,
) -> torch.Tensor:
    """Draws n_rays pixel indices per row of weights (B, H * W), without replacement when every row
    has enough non-zero pixels (so no pixel is rendered twice), with replacement otherwise (or as
    ``replacement`` says); an all-zero row falls back to uniform. Returns (B, n_rays) int64."""
    weights = _drawable_weights(weights)
    if replacement is None:
        replacement = _too_few_pixels(weights, n_rays)
    return torch.multinomial(weights, n_rays, replacement=replacement, generator=generator)


def sample_training_rays(
    cameras: CamerasBase,
    n_rays: int,
    image_size: Sequence[int],
    sampling_mask: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    replacement: Optional[bool] = None,
) -> RayBatch:
    """Random pixel-centre rays per camera, drawn with probability proportional to the mask.

    Like Implicitron's ``mask_sample`` mode: rays land only where ``sampling_mask > 0`` (e.g. the
    mask crop or the foreground probability), uniformly over the image when no mask is given.

    Args:
        cameras: B cameras.
        image_size: (H, W) of the target images.
        sampling_mask: (B, 1, H', W') non-negative weights, resized to (H, W) if needed.
        replacement: draw with replacement; None decides it with ``rays_need_replacement``.
    Returns:
        RayBatch with R = n_rays.
    """
    h, w = (int(v) for v in image_size)
    device = cameras.device
    if sampling_mask is None:
        weights = torch.ones(len(cameras), h * w, device=device)
    else:
        if tuple(sampling_mask.shape[-2:]) != (h, w):
            sampling_mask = F.interpolate(
                sampling_mask.float(), size=(h, w), mode="bilinear", align_corners=False
            )
        weights = sampling_mask.reshape(len(cameras), h * w).to(device)  # (B, H * W)
    indices = _sample_pixel_indices(weights, n_rays, generator, replacement)  # (B, R)
    xys = pixel_centers_ndc((h, w), device)[indices]  # (B, R, 2)
    return rays_through_ndc(cameras, xys, (h, w))


def sample_images_at_rays(images: torch.Tensor, xys_grid: torch.Tensor) -> torch.Tensor:
    """Ground truth under each ray: (B, C, H, W) images at (B, R, 2) grid coords -> (B, R, C).

    Rays sit on pixel centres, so bilinear sampling returns the pixel values exactly.
    """
    sampled = F.grid_sample(
        images, xys_grid[:, :, None].to(images.dtype), mode="bilinear", align_corners=False
    )  # (B, C, R, 1)
    return sampled[..., 0].transpose(1, 2)  # (B, R, C)


def near_far_from_box(
    origins: torch.Tensor, directions: torch.Tensor, volume_extent: float = 2.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit ray lengths through the cube [-extent/2, extent/2]^3 (slab test).

    Lengths are in units of ``directions`` and start at 0 (a camera inside the cube starts there).
    Rays that miss the cube, or meet it only behind the camera, get near == far so they carry no
    samples with any extent.

    Args:
        origins, directions: (..., 3).
    Returns:
        near, far: (...).
    """
    half = volume_extent / 2.0
    # Axis-parallel components would divide by zero; a tiny stand-in gives +-huge slab bounds, which
    # is the right limit whatever its sign (the min/max below reorders them).
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t_low = (-half - origins) / safe
    t_high = (half - origins) / safe
    near = torch.minimum(t_low, t_high).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t_low, t_high).amin(dim=-1)
    return near, torch.maximum(far, near)
