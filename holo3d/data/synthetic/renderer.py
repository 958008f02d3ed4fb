"""Renders an object along a camera path with PyTorch3D's mesh renderer (MeshRendererWithFragments:
MeshRasterizer + HardPhongShader): RGB, and from the same rasterisation the mask and depth.

Lighting is fixed in the world (a directional key light from above-front plus ambient), so shading
is consistent across the views of a sequence, as for a real object filmed in a room. Depth is the
rasteriser's z-buffer, i.e. the z coordinate in the camera frame, which is what CO3D stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from pytorch3d.renderer import (
    BlendParams,
    DirectionalLights,
    HardPhongShader,
    Materials,
    MeshRasterizer,
    MeshRendererWithFragments,
    PerspectiveCameras,
    RasterizationSettings,
)
from pytorch3d.structures import Meshes

from holo3d.data.synthetic.orbit import OrbitCameras

LIGHT_DIRECTION = (0.35, 1.0, 0.55)  # towards the light, world frame


@dataclass
class RenderedViews:
    """The renders of V views at (H, W) pixels.

    Attributes:
        rgb: (V, H, W, 3) float32 in [0, 1], background already filled in.
        mask: (V, H, W) bool, True where the object was drawn.
        depth: (V, H, W) float32 camera-frame z, 0 on the background.
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def to_pytorch3d_cameras(cameras: OrbitCameras, image_size: Tuple[int, int], device) -> PerspectiveCameras:
    """NDC PerspectiveCameras for an (H, W) image (the shorter side spans [-1, 1])."""
    return PerspectiveCameras(
        R=cameras.R,
        T=cameras.T,
        focal_length=cameras.focal_length,
        principal_point=cameras.principal_point,
        in_ndc=True,
        image_size=[tuple(image_size)] * len(cameras),
        device=device,
    )


def render_views(
    mesh: Meshes,
    cameras: OrbitCameras,
    image_size: Tuple[int, int],
    background: Sequence[float] = (1.0, 1.0, 1.0),
    device: str = "cpu",
    chunk: int = 8,
) -> RenderedViews:
    """Renders ``mesh`` from every camera, ``chunk`` views per rasteriser call; outputs on CPU."""
    mesh = mesh.to(device)
    outputs = [
        _render_chunk(mesh, cameras, slice(start, start + chunk), image_size, background, device)
        for start in range(0, len(cameras), chunk)
    ]
    return RenderedViews(*(torch.cat(parts) for parts in zip(*outputs)))


def _render_chunk(mesh, cameras, views: slice, image_size, background, device):
    subset = OrbitCameras(
        cameras.R[views], cameras.T[views], cameras.focal_length[views], cameras.principal_point[views]
    )
    p3d_cameras = to_pytorch3d_cameras(subset, image_size, device)
    n = len(subset)
    settings = RasterizationSettings(image_size=tuple(image_size), blur_radius=0.0, faces_per_pixel=1)
    shader = HardPhongShader(
        device=device,
        cameras=p3d_cameras,
        lights=DirectionalLights(
            device=device,
            direction=[LIGHT_DIRECTION],
            ambient_color=[(0.45,) * 3],
            diffuse_color=[(0.6,) * 3],
            specular_color=[(0.15,) * 3],
        ),
        materials=Materials(device=device, shininess=24.0),
        blend_params=BlendParams(background_color=tuple(background)),
    )
    # the fragments give the mask (pix_to_face) and the camera-frame depth (zbuf) of the same pass
    renderer = MeshRendererWithFragments(MeshRasterizer(cameras=p3d_cameras, raster_settings=settings), shader)
    images, fragments = renderer(mesh.extend(n))
    rgb = images[..., :3].clamp(0, 1)  # (n, H, W, 3)
    mask = fragments.pix_to_face[..., 0] >= 0  # (n, H, W)
    depth = torch.where(mask, fragments.zbuf[..., 0], torch.zeros_like(fragments.zbuf[..., 0]))
    return rgb.float().cpu(), mask.cpu(), depth.float().cpu()
