"""VolumeRenderer: two-pass (coarse + importance) emission-absorption rendering of voxel grids.

Each scene's rays are clipped to the volume cube, sampled at stratified depths (jittered in
training, bin centres at evaluation), shaded by looking the points up in that scene's grid and
decoding them with a RenderMLP, and composited; a fine pass then draws extra depths from the coarse
weights by inverse-CDF sampling and composites coarse and fine samples together, sorted by depth.

Why not Implicitron's ray sampler / raymarcher components: those work on one flat ray bundle and one
implicit function, while here every scene has its own grid and all scenes' rays go through a single
batched ``grid_sample`` and one MLP call per pass. The fine pass re-uses the coarse samples' shading
(the same field at the same points) and only evaluates the new fine points: that is identical to
re-evaluating all coarse+fine points but costs n_fine instead of n_coarse + n_fine MLP evaluations.
``render_image`` renders full frames in large chunks for the same reason: the official HoloDiffusion
renderer's 4096-ray Python loop takes 3.6 s per 256^2 frame on an H200.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from pytorch3d.implicitron.tools.config import enable_get_default_args
from pytorch3d.renderer.cameras import CamerasBase
from torch import nn

from holo3d.render.raymarch import emission_absorption
from holo3d.render.rays import full_image_rays, near_far_from_box
from holo3d.render.render_mlp import RenderMLP
from holo3d.render.voxel_grid import sample_voxel_grid


def _uniform(
    shape: Sequence[int], jitter: bool, device: torch.device, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """Per-stratum offsets in [0, 1): random when jittering, 0.5 (stratum centres) otherwise."""
    if jitter:
        return torch.rand(*shape, device=device, generator=generator)
    return torch.full(tuple(shape), 0.5, device=device)


def stratified_depths(
    near: torch.Tensor,
    far: torch.Tensor,
    n_pts: int,
    jitter: bool,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """One depth in each of n_pts equal strata of [near, far]: (...) -> (..., n_pts)."""
    offsets = _uniform((*near.shape, n_pts), jitter, near.device, generator)
    steps = torch.arange(n_pts, device=near.device, dtype=torch.float32)
    return near[..., None] + (far - near)[..., None] * ((steps + offsets) / n_pts)  # (..., P)


def strata_edges(near: torch.Tensor, far: torch.Tensor, n_pts: int) -> torch.Tensor:
    """Edges of the strata used by ``stratified_depths``: (...) -> (..., n_pts + 1)."""
    steps = torch.linspace(0.0, 1.0, n_pts + 1, device=near.device)
    return near[..., None] + (far - near)[..., None] * steps  # (..., P + 1)


def importance_depths(
    edges: torch.Tensor,
    weights: torch.Tensor,
    n_pts: int,
    jitter: bool,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Inverse-CDF samples of the piecewise-constant pdf given by per-bin weights.

    Own vectorised version (searchsorted) rather than pytorch3d's ``sample_pdf``: it takes a
    ``generator`` for reproducible training and needs no compiled op.

    Args:
        edges: (..., K + 1) sorted bin edges.
        weights: (..., K) non-negative (detached) bin weights; ``eps`` is added so empty rays still
            spread their samples over [near, far].
    Returns:
        (..., n_pts) depths, unsorted when jittering.
    """
    n_bins = weights.shape[-1]
    pdf = weights.float() + eps
    cdf = torch.cumsum(pdf, dim=-1) / pdf.sum(dim=-1, keepdim=True)  # (..., K)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1).contiguous()  # (..., K + 1)
    u = _uniform((*weights.shape[:-1], n_pts), jitter, weights.device, generator)
    if not jitter:
        u = (torch.arange(n_pts, device=weights.device) + u) / n_pts  # evenly spaced quantiles
    upper = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, n_bins)  # (..., n_pts)
    lower = upper - 1
    cdf_lo, cdf_hi = cdf.gather(-1, lower), cdf.gather(-1, upper)
    edge_lo, edge_hi = edges.gather(-1, lower), edges.gather(-1, upper)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return edge_lo + frac * (edge_hi - edge_lo)  # (..., n_pts)


class VolumeRenderer(nn.Module):
    """Renders rays through per-scene voxel feature grids.

    forward(grid (S, C, D, H, W), origins (S, R, 3), directions (S, R, 3)) -> dict of
    rgb_coarse (S, R, 3), rgb_fine (S, R, 3), depth (S, R, 1), opacity (S, R, 1).
    Directions may be unnormalised (depth is then in their units, e.g. camera z-depth for
    ``holo3d.render.rays``); densities are per world unit either way.

    ``last_delta`` defaults to None (the last interval repeats the previous one) rather than the
    classic 1e10: the field ends at the cube's far face, and with 1e10 any density a softplus MLP
    leaves at the exit point (it can never reach 0) would make every ray through the cube opaque.
    """

    def __init__(
        self,
        feature_channels: int,
        volume_extent: float = 2.0,
        n_pts_coarse: int = 64,
        n_pts_fine: int = 16,
        bg_color: Tuple[float, ...] = (0.0, 0.0, 0.0),
        last_delta: Optional[float] = None,
        render_mlp_args: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        self.volume_extent = float(volume_extent)
        self.n_pts_coarse = int(n_pts_coarse)
        self.n_pts_fine = int(n_pts_fine)
        self.last_delta = last_delta
        bg = torch.tensor(bg_color, dtype=torch.float32)
        self.register_buffer("bg_color", bg, persistent=False)
        self.mlp = RenderMLP(in_features=feature_channels, **dict(render_mlp_args or {}))

    def forward(
        self,
        grid: torch.Tensor,
        origins: torch.Tensor,
        directions: torch.Tensor,
        stratified: Optional[bool] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Dict[str, torch.Tensor]:
        """stratified: jitter the sample depths (default: ``self.training``)."""
        jitter = self.training if stratified is None else stratified
        near, far = near_far_from_box(origins, directions, self.volume_extent)  # (S, R)
        hit = far > near  # (S, R) rays that miss the cube keep zero density
        ray_scale = directions.norm(dim=-1, keepdim=True)  # (S, R, 1)
        unit_dirs = (directions / ray_scale.clamp_min(1e-12))[:, :, None]  # (S, R, 1, 3)

        depths = stratified_depths(near, far, self.n_pts_coarse, jitter, generator)  # (S, R, Pc)
        density, rgb = self._shade(grid, origins, directions, unit_dirs, depths, hit)
        coarse = self._composite(density, rgb, depths, ray_scale)
        if self.n_pts_fine == 0:
            fine = coarse
        else:
            edges = strata_edges(near, far, self.n_pts_coarse)  # (S, R, Pc + 1)
            fine_depths = importance_depths(
                edges, coarse["weights"].detach(), self.n_pts_fine, jitter, generator
            )  # (S, R, Pf)
            f_density, f_rgb = self._shade(grid, origins, directions, unit_dirs, fine_depths, hit)
            depths, density, rgb = _merge_sorted(
                (depths, density, rgb), (fine_depths, f_density, f_rgb)
            )
            fine = self._composite(density, rgb, depths, ray_scale)
        return {
            "rgb_coarse": coarse["rgb"],
            "rgb_fine": fine["rgb"],
            "depth": fine["depth"],
            "opacity": fine["opacity"],
        }

    def _shade(
        self,
        grid: torch.Tensor,
        origins: torch.Tensor,
        directions: torch.Tensor,
        unit_dirs: torch.Tensor,
        depths: torch.Tensor,
        hit: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Density (S, R, P) and rgb (S, R, P, 3) at origins + depths * directions, in float32."""
        s, r, p = depths.shape
        points = origins[:, :, None] + depths[..., None] * directions[:, :, None]  # (S, R, P, 3)
        points = points.reshape(s, r * p, 3)  # (S, R*P, 3): one grid_sample per scene batch
        features = sample_voxel_grid(grid, points, self.volume_extent)  # (S, R*P, C)
        features = features.reshape(s, r, p, -1)  # (S, R, P, C)
        density, rgb = self.mlp(features, unit_dirs)  # (S, R, P, 1), (S, R, P, 3)
        density = density[..., 0].float() * hit[..., None]  # (S, R, P)
        return density, rgb.float()

    def _composite(
        self,
        density: torch.Tensor,
        rgb: torch.Tensor,
        depths: torch.Tensor,
        ray_scale: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        return emission_absorption(
            density, rgb, depths, self.bg_color, last_delta=self.last_delta, ray_scale=ray_scale
        )

    @torch.no_grad()
    def render_image(
        self,
        grid: torch.Tensor,
        cameras: CamerasBase,
        image_size: Sequence[int],
        chunk_size: int = 2**18,
    ) -> Dict[str, torch.Tensor]:
        """Full frames of S grids seen by V cameras each (deterministic sampling, no grad).

        Args:
            grid: (S, C, D, H, W).
            cameras: S * V cameras, scene-major.
            image_size: (H, W).
            chunk_size: rays per chunk over all scenes; each chunk is one batched pass, so pick
                it as large as memory allows. Peak memory at the defaults (64 + 16 points,
                hidden 256, 64 channels), measured on an H200: ~200 KiB per ray in float32,
                ~110 KiB under bf16 autocast, i.e. ~56 / ~32 GiB for 2**18 rays.
        Returns:
            dict of rgb (S, V, 3, H, W), depth (S, V, 1, H, W), opacity (S, V, 1, H, W).
        """
        s = grid.shape[0]
        if len(cameras) % s:
            raise ValueError(f"{len(cameras)} cameras do not split evenly over {s} scenes")
        v, (h, w) = len(cameras) // s, (int(image_size[0]), int(image_size[1]))
        rays = full_image_rays(cameras, (h, w))
        origins = rays.origins.reshape(s, v * h * w, 3)  # (S, V*H*W, 3)
        directions = rays.directions.reshape(s, v * h * w, 3)  # (S, V*H*W, 3)
        step = max(1, chunk_size // s)
        chunks = [
            self(grid, origins[:, i : i + step], directions[:, i : i + step], stratified=False)
            for i in range(0, v * h * w, step)
        ]
        outputs = {"rgb": "rgb_fine", "depth": "depth", "opacity": "opacity"}
        images = {}
        for name, key in outputs.items():
            flat = torch.cat([c[key] for c in chunks], dim=1)  # (S, V*H*W, ch)
            images[name] = flat.reshape(s, v, h, w, -1).permute(0, 1, 4, 2, 3)  # (S, V, ch, H, W)
        return images


def _merge_sorted(
    a: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joins two sample sets (depths (S, R, P), density (S, R, P), rgb (S, R, P, 3)) by depth."""
    depths, order = torch.sort(torch.cat([a[0], b[0]], dim=-1), dim=-1)  # (S, R, Pc + Pf)
    density = torch.cat([a[1], b[1]], dim=-1).gather(-1, order)
    rgb_all = torch.cat([a[2], b[2]], dim=-2)  # (S, R, Pc + Pf, 3)
    rgb = rgb_all.gather(-2, order[..., None].expand_as(rgb_all))
    return depths, density, rgb


enable_get_default_args(VolumeRenderer)
