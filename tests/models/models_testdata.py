"""Tiny synthetic scenes for the model tests: coloured meshes rendered with PyTorch3D on an orbit."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from pytorch3d.renderer import (
    AmbientLights,
    HardPhongShader,
    MeshRasterizer,
    MeshRenderer,
    PerspectiveCameras,
    RasterizationSettings,
    TexturesVertex,
    look_at_view_transform,
)
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere

from holo3d.models.holo_diffusion import HoloDiffusionModel


def orbit_cameras(n: int, dist: float = 3.0, focal: float = 3.0, offset: float = 0.0) -> PerspectiveCameras:
    """n NDC cameras on a slightly wobbling orbit around the origin, looking at it."""
    azim = torch.linspace(0.0, 360.0, n + 1)[:n] + offset
    elev = 20.0 + 15.0 * torch.sin(torch.arange(n, dtype=torch.float32) * 1.3)
    R, T = look_at_view_transform(dist=dist, elev=elev, azim=azim)
    return PerspectiveCameras(focal_length=focal, R=R, T=T)


def _coloured_meshes() -> List[Meshes]:
    """A sphere coloured by position and a squashed, differently coloured sphere (two 'scenes')."""
    sphere = ico_sphere(2)
    verts = sphere.verts_packed() * 0.6
    colours = (verts / 0.6 + 1.0) / 2.0
    first = Meshes([verts], [sphere.faces_packed()], TexturesVertex([colours]))
    verts2 = verts * torch.tensor([0.9, 0.5, 0.9])
    colours2 = torch.stack([1.0 - colours[:, 1], colours[:, 0] * 0.5 + 0.2, colours[:, 2]], dim=-1)
    second = Meshes([verts2], [sphere.faces_packed()], TexturesVertex([colours2]))
    return [first, second]


@torch.no_grad()
def render_scenes(n_views: int, image_size: int = 32, offset: float = 0.0) -> Dict[str, object]:
    """Images (S, V, 3, H, W), masks (S, V, 1, H, W) and S*V cameras (scene-major) of two meshes,
    every scene seen from the same orbit; the background is black."""
    cams = orbit_cameras(n_views, offset=offset)
    renderer = MeshRenderer(
        MeshRasterizer(cams, RasterizationSettings(image_size=image_size, faces_per_pixel=1)),
        HardPhongShader(cameras=cams, lights=AmbientLights()),
    )
    images, masks = [], []
    for mesh in _coloured_meshes():
        rgba = renderer(mesh.extend(n_views))  # (V, H, W, 4)
        alpha = (rgba[..., 3:] > 0).float()
        images.append((rgba[..., :3] * alpha).permute(0, 3, 1, 2))
        masks.append(alpha.permute(0, 3, 1, 2))
    n_scenes = len(images)
    all_cams = PerspectiveCameras(
        focal_length=cams.focal_length.repeat(n_scenes, 1), R=cams.R.repeat(n_scenes, 1, 1),
        T=cams.T.repeat(n_scenes, 1),
    )
    return {"images": torch.stack(images), "masks": torch.stack(masks), "cameras": all_cams}


def frame_batch(images, masks, cameras, frames: Sequence[int]) -> Dict[str, object]:
    """A flat scene-major FrameData-style kwargs dict of the given frames of every scene."""
    n_scenes, n_views = images.shape[:2]
    index = [s * n_views + f for s in range(n_scenes) for f in frames]
    return {
        "image_rgb": images[:, list(frames)].flatten(0, 1),
        "fg_probability": masks[:, list(frames)].flatten(0, 1),
        "mask_crop": None,
        "depth_map": None,
        "camera": cameras[index],
        "sequence_name": [f"scene_{s}" for s in range(n_scenes) for _ in frames],
    }


def random_frame_batch(n_scenes: int, n_frames: int, image_size: int = 32, seed: int = 0):
    """Random images with a central foreground square, on an orbit: a smoke-test batch."""
    generator = torch.Generator().manual_seed(seed)
    total = n_scenes * n_frames
    masks = torch.zeros(total, 1, image_size, image_size)
    quarter = image_size // 4
    masks[:, :, quarter:-quarter, quarter:-quarter] = 1.0
    return {
        "image_rgb": torch.rand(total, 3, image_size, image_size, generator=generator),
        "fg_probability": masks,
        "mask_crop": torch.ones(total, 1, image_size, image_size),
        "depth_map": None,
        "camera": orbit_cameras(total),
        "sequence_name": [f"scene_{i // n_frames}" for i in range(total)],
    }


def tiny_model(**overrides) -> HoloDiffusionModel:
    """HoloDiffusionModel with tiny leaves: grid 8^3 x 8, a two-level U-Net, ResNet-18, few rays."""
    from pytorch3d.implicitron.tools.config import get_default_args

    cfg = get_default_args(HoloDiffusionModel)
    cfg.n_targets = 2
    cfg.n_rays_per_target = 64
    cfg.grid_resolution = 8
    cfg.feature_size = 8
    cfg.unet_args.model_channels = 16
    cfg.unet_args.channel_mult = [1, 2]
    cfg.unet_args.attention_resolutions = [2]
    cfg.lifter_args.backbone = "resnet18"
    cfg.lifter_args.feature_image_size = 32
    cfg.lifter_args.stages = [1, 2]
    cfg.lifter_args.proj_dim = 8
    cfg.renderer_args.n_pts_coarse = 16
    cfg.renderer_args.n_pts_fine = 8
    cfg.render_mlp_args.hidden_dim = 64
    cfg.render_mlp_args.color_hidden_dim = 32
    for key, value in overrides.items():
        node, _, leaf = key.rpartition(".")
        target = cfg if not node else cfg[node]
        target[leaf] = value
    return HoloDiffusionModel(**cfg)
