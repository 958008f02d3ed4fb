"""Feature lifting: posed source images -> clean feature grid V0 in [-1, 1] (HoloDiffusion, Sec. 3.2).

A ResNet backbone extracts features from every source view; the features of several stages are
projected to a few channels, L2-normalised and concatenated with the (resized) RGB image and the
foreground mask. Every voxel centre is projected into every source view, the maps are sampled
bilinearly, and the per-view samples are pooled with an angle-weighted mean and standard deviation.
A 1x1x1 convolution and tanh map the pooled features to ``feature_size`` channels in [-1, 1].

Why not Implicitron's own components: ``ResNetFeatureExtractor`` builds its backbone with the
``pretrained=`` argument that torchvision 0.26 no longer accepts (and would download weights), and
rescales by a fixed factor instead of to a target size; ``ViewSampler`` + the angle-weighted
aggregator project every point batch into every camera of the flat batch (S^2 work for S scenes, then
masking by sequence name) and weigh views by the angle to the *first* camera's ray, which for voxels
(there is no target ray) makes the pooling depend on the order of the source views. The code below
batches over scenes and uses an order-invariant reference direction instead.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from einops import rearrange
from pytorch3d.implicitron.tools.config import enable_get_default_args
from pytorch3d.renderer.cameras import CamerasBase
from pytorch3d.renderer.utils import ndc_grid_sample, ndc_to_grid_sample_coords
from torch import nn
from torch.utils.checkpoint import checkpoint

from holo3d.render.voxel_grid import voxel_centers

logger = logging.getLogger(__name__)

_STAGE_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def local_backbone_checkpoint(name: str) -> Optional[str]:
    """Path of a torchvision ImageNet checkpoint for ``name`` already in TORCH_HOME, else None.

    Never downloads: this framework must run offline with ``weights=None``.
    """
    pattern = os.path.join(torch.hub.get_dir(), "checkpoints", f"{name}-*.pth")
    matches = sorted(glob.glob(pattern))
    return matches[0] if matches else None


def build_backbone(name: str, use_local_weights: bool) -> nn.Module:
    """A torchvision ResNet, with ImageNet weights from TORCH_HOME when present and allowed."""
    if name not in _STAGE_CHANNELS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(_STAGE_CHANNELS)}")
    net = getattr(torchvision.models, name)(weights=None)
    path = local_backbone_checkpoint(name) if use_local_weights else None
    if path is not None:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("FeatureLifter: loaded ImageNet weights from %s", path)
    else:
        logger.info("FeatureLifter: %s with random weights (no checkpoint in TORCH_HOME)", name)
    return net


class FeatureLifter(nn.Module):
    """Lifts posed source views of S scenes onto a voxel grid.

    Args:
        feature_size: F, channels of the output grid.
        resolution: grid cells per side (D = H = W).
        volume_extent: side of the world-space cube ``[-e/2, e/2]^3`` the grid spans.
        backbone: torchvision ResNet name.
        use_local_weights: load ImageNet weights when the checkpoint is in TORCH_HOME.
        feature_image_size: source views are resized so that their longer side has this size.
        stages: ResNet stages (1..4) whose features are used.
        proj_dim: channels each stage is projected to (1x1 conv) before L2 normalisation.
        min_ray_angle_weight / weight_by_ray_angle_gamma: view weight
            ``(cos * 0.5 + 0.5 + min_ray_angle_weight) ** gamma`` (as Implicitron's aggregator).
        checkpoint_backbone: in training, recompute the ResNet stages in backward instead of keeping
            their activations (less memory, one more backbone forward; same outputs and gradients).
    forward(images (S, K, 3, H, W), masks (S, K, 1, H, W), cameras (S*K, scene-major),
            crops (S, K, 1, H, W) or None) -> (S, F, D, H, W) in [-1, 1]
    """

    def __init__(
        self,
        feature_size: int = 64,
        resolution: int = 16,
        volume_extent: float = 2.0,
        backbone: str = "resnet34",
        use_local_weights: bool = True,
        feature_image_size: int = 256,
        stages: Tuple[int, ...] = (1, 2, 3, 4),
        proj_dim: int = 16,
        min_ray_angle_weight: float = 0.1,
        weight_by_ray_angle_gamma: float = 1.0,
        checkpoint_backbone: bool = False,
    ):
        super().__init__()
        self.checkpoint_backbone = checkpoint_backbone
        self.resolution = resolution
        self.volume_extent = volume_extent
        self.feature_image_size = feature_image_size
        self.stages = tuple(sorted(stages))
        self.min_ray_angle_weight = min_ray_angle_weight
        self.weight_by_ray_angle_gamma = weight_by_ray_angle_gamma
        self._build_backbone(backbone, use_local_weights, proj_dim)
        # Per view: projected stage features, RGB and the mask; pooled with mean and std.
        self.sampled_channels = proj_dim * len(self.stages) + 3 + 1
        self.to_grid = nn.Conv3d(2 * self.sampled_channels, feature_size, 1)
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _build_backbone(self, name: str, use_local_weights: bool, proj_dim: int) -> None:
        if not self.stages or not set(self.stages) <= {1, 2, 3, 4}:
            raise ValueError(f"stages must be a non-empty subset of (1, 2, 3, 4), got {self.stages}")
        net = build_backbone(name, use_local_weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList(getattr(net, f"layer{i}") for i in range(1, max(self.stages) + 1))
        self.proj = nn.ModuleDict(
            {str(s): nn.Conv2d(_STAGE_CHANNELS[name][s - 1], proj_dim, 1) for s in self.stages}
        )

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, h, w) with max(h, w) = feature_image_size, aspect kept."""
        height, width = images.shape[-2:]
        scale = self.feature_image_size / max(height, width)
        if scale == 1.0:
            return images
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return F.interpolate(images, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)

    def extract(self, images: torch.Tensor, masks: torch.Tensor) -> List[torch.Tensor]:
        """Per-view feature maps at several resolutions.

        Args:
            images: (B, 3, H, W) in [0, 1]; masks: (B, 1, H, W).
        Returns:
            list of (B, C_i, h_i, w_i): one per stage (unit norm jointly), then RGB+mask (B, 4, h, w).
        """
        rgb_mask = self.resize(torch.cat([images, masks], dim=1))
        h = self.stem((rgb_mask[:, :3] - self._mean) / self._std)
        maps = []
        recompute = self.checkpoint_backbone and self.training and torch.is_grad_enabled()
        for stage, layer in enumerate(self.layers, start=1):
            # checkpointing keeps only each stage's input for backward and recomputes the rest: the
            # ResNet's activations of every source view are most of a training step's memory. (Its
            # BatchNorms see the batch twice, so their running statistics take two momentum steps.)
            h = checkpoint(layer, h, use_reentrant=False) if recompute else layer(h)
            if stage in self.stages:
                # Each stage unit-norm, scaled so the concatenation is unit-norm as a whole.
                f = F.normalize(self.proj[str(stage)](h), dim=1) / math.sqrt(len(self.stages))
                maps.append(f)
        maps.append(rgb_mask)
        return maps

    def sample(
        self,
        maps: List[torch.Tensor],
        cameras: CamerasBase,
        points: torch.Tensor,
        image_size: Tuple[int, int],
        crops: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Projects world points into every view and samples the feature maps there.

        Args:
            maps: list of (B, C_i, h_i, w_i) from ``extract``, B = S*K views.
            cameras: B NDC cameras.
            points: (M, 3) world points.
            image_size: (H, W) of the original images (sets the NDC range of the longer side).
            crops: (B, 1, H, W) valid-pixel masks or None.
        Returns:
            features (B, M, C) and validity weights (B, M) in [0, 1].
        """
        n_views = maps[0].shape[0]
        pts = points[None].expand(n_views, -1, -1)  # (B, M, 3)
        # eps keeps the division by depth finite for points near the camera plane.
        xy_ndc = cameras.transform_points_ndc(pts, eps=1e-2)[..., :2]  # (B, M, 2)
        depth = cameras.get_world_to_view_transform().transform_points(pts)[..., 2]  # (B, M)
        # ndc_grid_sample flips x and y (PyTorch3D NDC +x is left, +y up) and scales the longer side
        # of non-square (ndc_isotropic) images; it reads the aspect ratio from the sampled map.
        feats = torch.cat([ndc_grid_sample(m, xy_ndc, align_corners=False) for m in maps], dim=1)
        grid_xy = ndc_to_grid_sample_coords(xy_ndc, image_size)
        valid = (grid_xy.abs() <= 1.0).all(dim=-1) & (depth > 1e-2)
        weights = valid.to(feats.dtype)
        if crops is not None:
            weights = weights * ndc_grid_sample(crops.to(feats.dtype), xy_ndc)[:, 0]
        return rearrange(feats, "b c m -> b m c"), weights

    def view_weights(self, cameras: CamerasBase, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Angle-based pooling weights of every view for every point.

        A view's weight grows with the cosine between its ray through the point and the point's
        mean viewing direction over the valid views: views that agree with the consensus direction
        count more. Using the consensus (not one reference camera) keeps pooling order-invariant.

        Args:
            cameras: S*K cameras; points: (M, 3); valid: (S, K, M) validity in [0, 1].
        Returns:
            (S, K, M) non-negative weights, zero where invalid.
        """
        n_scenes, n_views = valid.shape[:2]
        # Camera centres from X_cam = X_world @ R + T (avoids the matrix inverse of get_camera_center).
        centres = -torch.bmm(cameras.T[:, None], cameras.R.transpose(1, 2))[:, 0]  # (S*K, 3)
        centres = centres.view(n_scenes, n_views, 1, 3)  # (S, K, 1, 3)
        dirs = F.normalize(points.to(centres.dtype)[None, None] - centres, dim=-1)  # (S, K, M, 3)
        reference = F.normalize((dirs * valid[..., None]).sum(dim=1, keepdim=True), dim=-1)
        cos = (dirs * reference).sum(dim=-1)  # (S, K, M)
        weight = (cos * 0.5 + 0.5 + self.min_ray_angle_weight) ** self.weight_by_ray_angle_gamma
        return weight * valid

    @staticmethod
    def pool(features: torch.Tensor, weights: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
        """Weighted mean and std over views.

        Args:
            features: (S, K, M, C); weights: (S, K, M).
        Returns:
            (S, M, 2C): [mean, std]; zero for points seen by no view.
        """
        w = weights[..., None]
        total = w.sum(dim=1).clamp_min(eps)  # (S, M, 1)
        mean = (features * w).sum(dim=1) / total
        var = ((features - mean[:, None]) ** 2 * w).sum(dim=1) / total
        std = var.clamp_min(1e-4).sqrt()
        seen = (weights.amax(dim=1) > 1e-4).to(features.dtype)[..., None]  # (S, M, 1)
        return torch.cat([mean, std], dim=-1) * seen

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        cameras: CamerasBase,
        crops: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """images (S, K, 3, H, W), masks (S, K, 1, H, W), S*K cameras -> V0 (S, F, D, H, W)."""
        n_scenes, n_views = images.shape[:2]
        image_size = tuple(images.shape[-2:])
        maps = self.extract(images.flatten(0, 1), masks.flatten(0, 1).to(images.dtype))
        points = voxel_centers(self.resolution, self.volume_extent, images.device)
        points = points.reshape(-1, 3)  # (M, 3), M = D*H*W in (d, h, w) order
        feats, valid = self.sample(
            maps, cameras, points, image_size, None if crops is None else crops.flatten(0, 1)
        )
        feats = feats.view(n_scenes, n_views, *feats.shape[1:])  # (S, K, M, C)
        valid = valid.view(n_scenes, n_views, -1)  # (S, K, M)
        pooled = self.pool(feats, self.view_weights(cameras, points, valid))  # (S, M, 2C)
        res = self.resolution
        grid = rearrange(pooled, "s (d h w) c -> s c d h w", d=res, h=res, w=res)
        # float32 whatever autocast chose: the grid is noised, denoised and sampled at world
        # coordinates downstream, where bf16 would cost precision.
        return torch.tanh(self.to_grid(grid)).float()  # (S, F, D, H, W)


enable_get_default_args(FeatureLifter)
