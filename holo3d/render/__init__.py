"""holo3d.render: the voxel-grid radiance field renderer (HoloDiffusion, GeNVS, SparseFusion).

    voxel_grid       voxel centres in the world cube, trilinear look-ups into (S, C, D, H, W) grids
    render_mlp       RenderMLP: grid feature + view direction -> density, colour
    rays             rays from PyTorch3D NDC cameras, mask-weighted training rays, ray-box clipping
    raymarch         emission-absorption compositing
    volume_renderer  VolumeRenderer: two-pass (coarse + importance) rendering, chunked full frames
    trajectories     turntable cameras and the up axis of a set of training cameras
"""

from holo3d.render.raymarch import emission_absorption
from holo3d.render.rays import (
    RayBatch,
    full_image_rays,
    near_far_from_box,
    sample_images_at_rays,
    sample_training_rays,
)
from holo3d.render.render_mlp import RenderMLP
from holo3d.render.trajectories import estimate_up_axis, turntable_cameras
from holo3d.render.volume_renderer import VolumeRenderer
from holo3d.render.voxel_grid import sample_voxel_grid, voxel_centers

__all__ = [
    "RayBatch",
    "RenderMLP",
    "VolumeRenderer",
    "emission_absorption",
    "estimate_up_axis",
    "full_image_rays",
    "near_far_from_box",
    "sample_images_at_rays",
    "sample_training_rays",
    "sample_voxel_grid",
    "turntable_cameras",
    "voxel_centers",
]
