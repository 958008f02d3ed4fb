"""Radiance fields the volume renderer marches through: ``field(points, directions, **inputs)``.

Every field maps world points on rays to a density and C feature channels (3 for colour; GeNVS's
latent field has 16), so one renderer serves every system:

    VoxelGridField        a per-scene cube feature grid (S, F, D, H, W) decoded by a RenderMLP
                          (HoloDiffusion: the grid is the diffusion sample);   inputs: grid=
    FrustumVolumeField    per-view camera-frustum feature volumes (S, K, F, Z, H, W) sampled where
                          each input camera sees the point, averaged over the views that see it,
                          decoded by two small MLPs (GeNVS);                   inputs: volumes=, view_cameras=
    OptimisableGridField  one learnable field (Implicitron's VoxelGridModule: dense or VM-factorised)
                          and a small MLP (per-scene distillation);            no inputs
    OccupancyField        an occupancy grid (S, 1, D, H, W) of probabilities shown as a shaded
                          solid (voxel diffusion samples);       inputs: grid=OccupancyField.prepare(occ)

Call signature (all fields):
    points (S, R, P, 3) world xyz, unit_dirs (S, R, 1, 3) -> density (S, R, P) >= 0 (float32),
    features (S, R, P, C) (float32).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from pytorch3d.implicitron.models.implicit_function.voxel_grid import VoxelGridModule
from pytorch3d.implicitron.tools.config import expand_args_fields
from pytorch3d.renderer.cameras import CamerasBase
from torch import nn

from holo3d.render.render_mlp import RenderMLP
from holo3d.render.voxel_grid import sample_voxel_grid


class VoxelGridField(nn.Module):
    """A cube feature grid over [-extent/2, extent/2]^3, decoded by a RenderMLP.

    forward(points, unit_dirs, grid=(S, F, D, H, W)) -> density (S, R, P), features (S, R, P, C).
    """

    def __init__(self, feature_channels: int, volume_extent: float = 2.0,
                 render_mlp_args: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.volume_extent = float(volume_extent)
        self.mlp = RenderMLP(in_features=feature_channels, **dict(render_mlp_args or {}))

    @property
    def out_channels(self) -> int:
        return self.mlp.out_channels

    def forward(self, points: torch.Tensor, unit_dirs: torch.Tensor, *, grid: torch.Tensor):
        s, r, p, _ = points.shape
        # (S, R*P, 3): one grid_sample per scene batch
        features = sample_voxel_grid(grid, points.reshape(s, r * p, 3), self.volume_extent)  # (S, R*P, F)
        density, out = self.mlp(features.reshape(s, r, p, -1), unit_dirs)  # (S, R, P, 1), (S, R, P, C)
        return density[..., 0].float(), out.float()

    @torch.no_grad()
    def query(self, grid: torch.Tensor, points: torch.Tensor, directions: torch.Tensor,
              chunk: int = 2**16) -> Tuple[torch.Tensor, torch.Tensor]:
        """Density (M,) and features (M, C) of one grid (F, D, H, W) at points / directions (M, 3)."""
        densities, features = [], []
        for start in range(0, points.shape[0], chunk):
            pts = points[start : start + chunk].to(grid.device)[None, :, None]  # (1, m, 1, 3)
            dirs = F.normalize(directions[start : start + chunk].to(grid.device).float(), dim=-1)
            density, feats = self(pts, dirs[None, :, None], grid=grid[None])
            densities.append(density[0, :, 0])
            features.append(feats[0, :, 0])
        return torch.cat(densities), torch.cat(features)


class FrustumVolumeField(nn.Module):
    """Feature volumes aligned with each input camera's frustum, fused over the input views.

    A volume (F, Z, H, W) of input view k covers that camera's image (H, W in NDC) between depths
    ``near`` and ``far`` in Z bins (linear in depth). A world point is projected into every input
    camera; where it falls inside the image and the depth range, the volume is sampled trilinearly
    (``grid_sample``), otherwise the view does not contribute. The mean over contributing views is
    decoded by two MLPs into a density and ``out_channels`` features (GeNVS renders 16-channel
    latent images whose first 3 channels are supervised as colour).

    forward(points, unit_dirs, volumes=(S, K, F, Z, H, W), view_cameras=S*K cameras (scene-major))
        -> density (S, R, P), features (S, R, P, C).
    """

    def __init__(self, feature_channels: int, out_channels: int = 16, hidden_dim: int = 64,
                 near: float = 0.5, far: float = 4.5):
        super().__init__()
        self.near, self.far = float(near), float(far)
        self.out_channels = int(out_channels)
        self.density_mlp = nn.Sequential(
            nn.Linear(feature_channels, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1)
        )
        self.feature_mlp = nn.Sequential(
            nn.Linear(feature_channels, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_channels)
        )

    def forward(self, points: torch.Tensor, unit_dirs: torch.Tensor, *, volumes: torch.Tensor,
                view_cameras: CamerasBase):
        s, r, p, _ = points.shape
        k = volumes.shape[1]
        flat = points.reshape(s, 1, r * p, 3).expand(s, k, r * p, 3).reshape(s * k, r * p, 3)
        ndc = view_cameras.transform_points_ndc(flat.float())  # (S*K, R*P, 3): x, y in NDC, z = depth
        depth = view_cameras.get_world_to_view_transform().transform_points(flat.float())[..., 2]  # (S*K, R*P)
        # grid_sample's x runs left -> right, NDC's +x points left: flip x; +y up vs rows down: flip y.
        z = 2.0 * (depth - self.near) / (self.far - self.near) - 1.0
        coords = torch.stack([-ndc[..., 0], -ndc[..., 1], z], dim=-1)  # (S*K, R*P, 3)
        visible = (coords.abs() <= 1.0).all(dim=-1) & (depth > 0)  # (S*K, R*P)
        vol = volumes.flatten(0, 1)  # (S*K, F, Z, H, W)
        sampled = F.grid_sample(vol, coords.to(vol.dtype).view(s * k, r * p, 1, 1, 3), mode="bilinear",
                                padding_mode="zeros", align_corners=False)  # (S*K, F, R*P, 1, 1)
        sampled = sampled.view(s, k, -1, r * p) * visible.view(s, k, 1, r * p)  # (S, K, F, R*P)
        count = visible.view(s, k, r * p).sum(dim=1).clamp_min(1)  # (S, R*P)
        fused = (sampled.sum(dim=1) / count[:, None]).transpose(1, 2)  # (S, R*P, F)
        density = F.softplus(self.density_mlp(fused))[..., 0]  # (S, R*P)
        features = self.feature_mlp(fused)  # (S, R*P, C)
        return density.float().view(s, r, p), features.float().view(s, r, p, -1)


class OptimisableGridField(nn.Module):
    """One learnable field: Implicitron's ``VoxelGridModule`` (dense or VM-factorised grid) holding
    ``grid_features`` channels, decoded by a small MLP into a density and ``out_channels`` features
    (sigmoid colours when ``out_channels == 3``). For per-scene optimisation (distillation).

    forward(points, unit_dirs) -> density (S, R, P), features (S, R, P, C); S must be 1.
    """

    def __init__(self, resolution: int = 64, grid_features: int = 16, out_channels: int = 3,
                 volume_extent: float = 2.0, grid_type: str = "VMFactorizedVoxelGrid",
                 hidden_dim: int = 64, init_std: float = 0.1, density_bias: float = -1.0):
        super().__init__()
        expand_args_fields(VoxelGridModule)
        grid_args = {"n_features": grid_features, "resolution_changes": {0: [resolution] * 3}}
        if grid_type != "FullResolutionVoxelGrid":
            grid_args["n_components"] = 3 * grid_features  # VM: one matrix-vector pair per axis
        self.grid = VoxelGridModule(
            voxel_grid_class_type=grid_type,
            extents=(volume_extent,) * 3,
            init_std=init_std,
            **{f"voxel_grid_{grid_type}_args": grid_args},
        )
        self.out_channels = int(out_channels)
        self.density_bias = float(density_bias)
        self.mlp = nn.Sequential(
            nn.Linear(grid_features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1 + out_channels)
        )

    def forward(self, points: torch.Tensor, unit_dirs: torch.Tensor):
        s, r, p, _ = points.shape
        features = self.grid(points.reshape(1, s * r * p, 3).float())  # (1, S*R*P, G)
        out = self.mlp(features).view(s, r, p, -1)  # (S, R, P, 1 + C)
        density = F.softplus(out[..., 0] + self.density_bias)
        colour = out[..., 1:]
        if self.out_channels == 3:
            colour = torch.sigmoid(colour)
        return density.float(), colour.float()


class OccupancyField(nn.Module):
    """An occupancy grid of probabilities shown as a grey shaded solid (voxel diffusion samples).

    The grid covers [-extent/2, extent/2]^3 like ``VoxelGridField``'s and is read trilinearly. A
    voxel counts as occupied at probability 0.5 (as the IoU and the 3D metrics threshold it), so the
    density is a ramp of width ``softness`` around that level, which keeps edges anti-aliased, times
    ``density_per_voxel`` optical depth per voxel side: the surface is opaque within about a voxel.
    Colour is Lambertian under a headlight: ``albedo * (ambient + (1 - ambient) |n . d|)`` with n the
    normalised occupancy gradient, precomputed per grid by ``prepare`` (a learned RenderMLP has
    nothing to learn from here, and a fixed shading makes samples of every model comparable).

    forward(points, unit_dirs, grid=prepare(occupancy (S, 1, D, H, W)) (S, 4, D, H, W))
        -> density (S, R, P), rgb (S, R, P, 3).
    """

    out_channels = 3

    def __init__(self, volume_extent: float = 2.0, density_per_voxel: float = 8.0, softness: float = 0.2,
                 albedo: Tuple[float, float, float] = (0.75, 0.75, 0.78), ambient: float = 0.25):
        super().__init__()
        self.volume_extent = float(volume_extent)
        self.density_per_voxel, self.softness, self.ambient = float(density_per_voxel), float(softness), float(ambient)
        self.register_buffer("albedo", torch.tensor(albedo, dtype=torch.float32), persistent=False)

    @staticmethod
    def prepare(occupancy: torch.Tensor) -> torch.Tensor:
        """(S, 1, D, H, W) probabilities -> (S, 4, D, H, W): occupancy and its gradient in world
        (x, y, z) order, i.e. along (W, H, D) (central differences; one-sided at the faces)."""
        occupancy = occupancy.float()
        d_dz, d_dy, d_dx = torch.gradient(occupancy, dim=(2, 3, 4))
        return torch.cat([occupancy, d_dx, d_dy, d_dz], dim=1)  # (S, 4, D, H, W)

    def forward(self, points: torch.Tensor, unit_dirs: torch.Tensor, *, grid: torch.Tensor):
        s, r, p, _ = points.shape
        sampled = sample_voxel_grid(grid, points.reshape(s, r * p, 3), self.volume_extent)  # (S, R*P, 4)
        sampled = sampled.reshape(s, r, p, 4).float()
        ramp = ((sampled[..., 0] - 0.5) / self.softness + 0.5).clamp(0.0, 1.0)  # (S, R, P)
        density = ramp * (self.density_per_voxel * grid.shape[-1] / self.volume_extent)
        normal = F.normalize(sampled[..., 1:], dim=-1)  # (S, R, P, 3); zero where the grid is flat
        facing = (normal * unit_dirs.float()).sum(-1).abs()  # (S, R, P)
        shade = self.ambient + (1.0 - self.ambient) * facing
        return density, shade[..., None] * self.albedo  # (S, R, P), (S, R, P, 3)
