"""SparseFusion-style distillation (Zhou & Tulsiani 2023): a view-conditioned denoiser distilled into
one optimisable 3D field per scene, so that its renders are sharp like the denoiser's samples and
multi-view consistent like a 3D render.

Per held-out scene: K seeded input views condition the denoiser; an ``OptimisableGridField`` (Implicitron's
voxel grid + MLP) is rendered with the shared ``VolumeRenderer``. Each iteration
    1. renders the field from ``views_per_iteration`` random cameras (the scene's camera poses, or a
       sphere around the object), full frames at the denoiser's image size;
    2. draws one sigma log-uniformly from [sigma_min, sigma_max(p)], sigma_max annealed high -> low
       over the run (progress p), noises the renders x = (2 rgb - 1) + sigma n;
    3. runs ``denoise_steps`` steps of the denoiser's sampler from sigma back to 0 (multi-step, not
       one-step SDS), conditioned on the K inputs: a clean target per view (no gradient);
    4. regresses the renders onto the targets, weighted by w(sigma) = (sd^2 / (sigma^2 + sd^2))^p,
       plus the reconstruction of random pixels of the K input views, the mean opacity of the
       random views and the total variation of the grid.

The denoiser is reached through ``ViewConditionedDenoiser`` (below); ``GenvsDenoiser`` implements it
for ``GenvsModel`` through its public methods. ``distill_scenes`` is distill.py's driver: per scene
EXP/distillation/<scene>/{field.pth, turntable.mp4, heldout_views.mp4, heldout_views.png,
metrics.json}, resumable (scenes with metrics.json are skipped, others resume from field.pth), and a
summary EXP/distillation/metrics.json.

Shapes: K input views, T held-out views, B rendered views, H W image, R rays.
"""

from __future__ import annotations

import logging
import math
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from pytorch3d.renderer.camera_utils import join_cameras_as_batch
from pytorch3d.renderer.cameras import CamerasBase
from tqdm import tqdm

from holo3d.diffusion import EDMSchedule, guided_denoiser, sample, sampler_spec
from holo3d.eval import MetricsReport, image_metrics, write_metrics_json
from holo3d.io.atomic_file import open_atomic
from holo3d.render.fields import OptimisableGridField
from holo3d.render.rays import full_image_rays, ndc_to_grid_coords
from holo3d.render.trajectories import estimate_up_axis, turntable_cameras
from holo3d.render.volume_renderer import VolumeRenderer
from holo3d.sample.distill_config import CAMERA_DISTRIBUTIONS, GRID_TYPES, DistillConfig
from holo3d.sample.input_checks import ExperimentLoadError, SettingsError, ensure_writable_dir

logger = logging.getLogger(__name__)

METHODS = ("regression", "samples", "distilled")  # (a) the denoiser's 3D render, (b) per-view samples, (c)
CHECKPOINT_NAME, METRICS_NAME = "field.pth", "metrics.json"


# ------------------------------------------------------------------------------------- the denoiser


class ViewConditionedDenoiser:
    """What distillation needs of a view-conditioned diffusion model; images are (B, 3, H, W) in [0, 1].

    ``sigma_data`` is the data std of its EDM preconditioning (images in [-1, 1]); noise levels are
    EDM sigmas of that space.
    """

    sigma_data: float = 0.5

    def condition(self, rgb: torch.Tensor, fg: torch.Tensor, cameras: CamerasBase) -> Any:
        """The conditioning of K input views rgb (K, 3, H, W), fg (K, 1, H, W), K cameras."""
        raise NotImplementedError

    def denoise_to_clean(self, render_rgb: torch.Tensor, sigma: float, target_cameras: CamerasBase, cond: Any,
                         *, steps: int, sampler: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Renders (B, 3, H, W) noised to ``sigma`` and denoised back to sigma 0 in ``steps`` sampler
        steps, conditioned on ``cond`` and seen from the B target cameras -> (B, 3, H, W)."""
        raise NotImplementedError

    def regression_render(self, cond: Any, cameras: CamerasBase, image_hw: Sequence[int]) -> Dict[str, torch.Tensor]:
        """The denoiser's own deterministic 3D render (a): rgb (B, 3, H, W), depth / opacity (B, 1, H, W)."""
        raise NotImplementedError

    def independent_samples(self, cond: Any, cameras: CamerasBase, image_hw: Sequence[int], *, steps: Optional[int],
                            sampler: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Independent per-view samples from pure noise (b), (B, 3, H, W)."""
        raise NotImplementedError


class GenvsDenoiser(ViewConditionedDenoiser):
    """``ViewConditionedDenoiser`` of a GenvsModel: the scene code of the inputs is the condition, the
    latent image rendered from it at the target camera conditions the EDM U-Net (as in training).

    GenvsModel's ``denoise_views`` always starts from pure noise at sigma_max; starting from a noised
    render needs the sampler call itself, built here from the model's public pieces (its EDM
    process, raw denoiser, ``render_latents`` and ``upsample``).
    """

    def __init__(self, model, guidance: float = 1.0):
        self.model, self.guidance = model, float(guidance)
        self.sigma_data = float(model.sigma_data)

    def _latents(self, scene: torch.Tensor, cameras: CamerasBase, image_hw: Sequence[int]) -> Dict[str, torch.Tensor]:
        factor = self.model.image_size // self.model.latent_size
        hw = (max(1, int(image_hw[0]) // factor), max(1, int(image_hw[1]) // factor))
        return self.model.render_latents(scene, cameras, hw, chunk_size=self.model.render_chunk_size)

    def condition(self, rgb, fg, cameras):
        return self.model.reconstruct_from_views(rgb[None], fg[None], cameras)  # scene code (1, K, L)

    @torch.no_grad()
    def denoise_to_clean(self, render_rgb, sigma, target_cameras, cond, *, steps, sampler, generator=None):
        model, hw = self.model, render_rgb.shape[-2:]
        latent = model.upsample(self._latents(cond, target_cameras, hw)["latent"].float(), hw)  # (B, C, H, W)
        b, device = render_rgb.shape[0], render_rgb.device
        noise = torch.randn(render_rgb.shape, generator=generator, device=generator.device if generator else device)
        start = (render_rgb.float() * 2 - 1) / sigma + noise.to(device)  # the samplers begin at noise * sigma
        uncond = {"latent": torch.randn_like(latent), "drop": torch.ones(b, device=device)}
        fn = guided_denoiser(model.edm.denoiser(model.raw_denoiser), self.guidance, uncond)
        schedule = EDMSchedule(min(model.sigma_min, 0.5 * sigma), float(sigma), model.rho)
        x = sample(sampler, fn, render_rgb.shape, schedule, steps, generator=generator, device=device, noise=start,
                   cond={"latent": latent, "drop": torch.zeros(b, device=device)})
        return ((x.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def regression_render(self, cond, cameras, image_hw):
        out = self._latents(cond, cameras, image_hw)
        up = lambda x: self.model.upsample(x.float(), image_hw)  # noqa: E731
        return {"rgb": up(out["latent"][:, :3]).clamp(0, 1), "depth": up(out["depth"]), "opacity": up(out["opacity"])}

    @torch.no_grad()
    def independent_samples(self, cond, cameras, image_hw, *, steps, sampler, generator=None):
        out = self.model.novel_views(cond, cameras, image_hw, sampler=sampler, steps=steps,
                                     guidance_scale=self.guidance, generator=generator)
        return out["images"][0]  # (B, 3, H, W)


def denoiser_for(model, guidance: float = 1.0) -> ViewConditionedDenoiser:
    """The view-conditioned denoiser of a loaded model, or ExperimentLoadError naming the model."""
    from holo3d.models.genvs import GenvsModel

    if isinstance(model, GenvsModel):
        if model.denoiser_loss_weight == 0:
            raise ExperimentLoadError("this GenvsModel was trained without its denoiser (denoiser_loss_weight=0): "
                                      "nothing to distill")
        return GenvsDenoiser(model, guidance)
    raise ExperimentLoadError(f"this experiment's {type(model).__name__} has no view-conditioned denoiser "
                              f"distillation can use (supported: GenvsModel)")


# ------------------------------------------------------------------------------------- a scene's views


@dataclass
class SceneViews:
    """One scene: K inputs, T held-out views, every camera of the scene, the background colour."""

    input_rgb: torch.Tensor  # (K, 3, H, W)
    input_fg: torch.Tensor  # (K, 1, H, W)
    input_cameras: CamerasBase
    heldout_rgb: torch.Tensor  # (T, 3, H, W) composited on the background
    heldout_fg: torch.Tensor  # (T, 1, H, W)
    heldout_cameras: CamerasBase
    all_cameras: CamerasBase  # the scene's N camera poses (the "dataset" camera distribution)
    background: Tuple[float, float, float]
    input_frames: List[int]  # positions of the inputs in the sequence

    @property
    def image_hw(self) -> Tuple[int, int]:
        return tuple(self.input_rgb.shape[-2:])


def split_scene_views(n_frames: int, n_inputs: int, seed: int, max_heldout: int = 0) -> Tuple[List[int], List[int]]:
    """(input positions, held-out positions): a seeded random choice of inputs (as SparseFusion), the
    rest held out, evenly thinned to ``max_heldout`` (0: all)."""
    if not 2 <= n_inputs < n_frames:
        raise SettingsError(f"n_input_views={n_inputs}: need 2 <= n_input_views < frames in the scene ({n_frames})")
    generator = torch.Generator().manual_seed(seed)
    inputs = sorted(torch.randperm(n_frames, generator=generator)[:n_inputs].tolist())
    heldout = [i for i in range(n_frames) if i not in set(inputs)]
    if 0 < max_heldout < len(heldout):
        keep = torch.linspace(0, len(heldout) - 1, max_heldout).round().long().unique().tolist()
        heldout = [heldout[i] for i in keep]
    return inputs, heldout


def scene_seed(seed: int, name: str) -> int:
    """A per-scene seed stable across runs and machines (Python's hash() is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


# ------------------------------------------------------------------------------------- the field


def build_field_renderer(cfg: DistillConfig, volume_extent: float, background: Sequence[float]) -> VolumeRenderer:
    """An OptimisableGridField (RGB) over the model's world cube inside the shared renderer."""
    field = OptimisableGridField(resolution=cfg.grid_resolution, grid_features=cfg.grid_features, out_channels=3,
                                 volume_extent=volume_extent, grid_type=cfg.grid_type, hidden_dim=cfg.hidden_dim)
    return VolumeRenderer(field=field, volume_extent=volume_extent, n_pts_coarse=cfg.n_pts_coarse,
                          n_pts_fine=cfg.n_pts_fine, bg_color=tuple(background))


def render_rays(renderer: VolumeRenderer, origins: torch.Tensor, directions: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Rays (R, 3) of the one scene -> rgb (R, 3), opacity (R, 1), with gradients (jittered depths)."""
    out = renderer(origins[None], directions[None], stratified=True)
    return {"rgb": out["features_fine"][0].float(), "opacity": out["opacity"][0].float()}


def render_frames(renderer: VolumeRenderer, cameras: CamerasBase, hw: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Full frames of B cameras with gradients: rgb (B, 3, H, W), opacity (B, 1, H, W)."""
    rays = full_image_rays(cameras, hw)
    out = render_rays(renderer, rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3))
    to_image = lambda x: x.reshape(len(cameras), hw[0], hw[1], -1).permute(0, 3, 1, 2)  # noqa: E731 (B, C, H, W)
    return {"rgb": to_image(out["rgb"]), "opacity": to_image(out["opacity"])}


@torch.no_grad()
def render_field(renderer: VolumeRenderer, cameras: CamerasBase, hw: Sequence[int],
                 chunk: int) -> Dict[str, torch.Tensor]:
    """Deterministic full frames (no grad): rgb (B, 3, H, W), depth and opacity (B, 1, H, W)."""
    per_call = max(1, chunk // (hw[0] * hw[1]))
    parts = [renderer.render_image(cameras[list(range(i, min(i + per_call, len(cameras))))], hw, chunk)
             for i in range(0, len(cameras), per_call)]
    out = {k: torch.cat([p[k][0] for p in parts]).float() for k in ("features", "depth", "opacity")}
    return {"rgb": out["features"].clamp(0, 1), "depth": out["depth"], "opacity": out["opacity"]}


def total_variation(field: OptimisableGridField) -> torch.Tensor:
    """Mean squared difference of neighbouring cells over the grid's spatial parameters (dense grid
    (1, C, D, H, W) or VM vectors (1, C, N) and matrices (1, C, N, N)); the VM basis is not spatial."""
    terms = []
    for name, param in field.grid.named_parameters():
        if "basis" in name or param.ndim < 3:
            continue
        terms += [param.diff(dim=d).square().mean() for d in range(2, param.ndim)]
    return torch.stack(terms).mean() if terms else torch.zeros(())


# ------------------------------------------------------------------------------------- one iteration


def sigma_range(progress: float, cfg: DistillConfig) -> Tuple[float, float]:
    """(sigma_min, sigma_max(progress)): the upper end annealed log-linearly from start to end."""
    p = min(max(progress, 0.0), 1.0)
    high = math.exp((1 - p) * math.log(cfg.sigma_max_start) + p * math.log(cfg.sigma_max_end))
    return min(cfg.sigma_min, high), high


def draw_sigma(progress: float, cfg: DistillConfig, generator: torch.Generator) -> float:
    """One noise level, log-uniform in ``sigma_range(progress)``."""
    low, high = sigma_range(progress, cfg)
    u = float(torch.rand((), generator=generator, device=generator.device))
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def distill_weight(sigma: float, sigma_data: float, power: float) -> float:
    """w(sigma) = (sigma_data^2 / (sigma^2 + sigma_data^2))^power: EDM's c_skip, the share of the
    denoised target that still comes from the render itself (targets from high noise vary most)."""
    return (sigma_data**2 / (sigma**2 + sigma_data**2)) ** power


class CameraDistribution:
    """Random cameras around the object: the scene's own poses (``dataset``) or points of a sphere
    (``sphere``: uniform azimuth, elevation in ``sphere_elevation_deg`` about the scene's up axis, at
    the scene cameras' median distance, with their mean focal length), looking at the origin."""

    def __init__(self, views: SceneViews, cfg: DistillConfig):
        self.cameras, self.kind = views.all_cameras, cfg.camera_distribution
        self.elevation = tuple(float(e) for e in cfg.sphere_elevation_deg)
        if self.kind == "sphere":  # once per scene: host syncs
            cams = self.cameras.cpu()
            self.up = estimate_up_axis(cams).tolist()
            self.distance = float(cams.get_camera_center().norm(dim=-1).median())
            self.focal = float(cams.focal_length.float().mean())

    def draw(self, n: int, generator: torch.Generator) -> CamerasBase:
        if self.kind == "dataset":
            index = torch.randint(len(self.cameras), (n,), generator=generator, device=generator.device)
            return self.cameras[index.tolist()]
        (low, high), device = self.elevation, self.cameras.device
        u = torch.rand(n, 2, generator=generator, device=generator.device).tolist()
        return join_cameras_as_batch([
            turntable_cameras(1, low + a * (high - low), self.distance, up=self.up, focal_length=self.focal,
                              azimuth_start_deg=360 * b, device=device) for a, b in u])


class InputRays:
    """Every pixel ray of the K input views and its colour, drawn at random for the reconstruction loss."""

    def __init__(self, views: SceneViews):
        rays = full_image_rays(views.input_cameras, views.image_hw)
        self.origins = rays.origins.reshape(-1, 3)  # (K*H*W, 3)
        self.directions = rays.directions.reshape(-1, 3)
        self.rgb = views.input_rgb.permute(0, 2, 3, 1).reshape(-1, 3).float()  # (K*H*W, 3)

    def draw(self, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.randint(self.rgb.shape[0], (n,), generator=generator, device=generator.device)
        index = index.to(self.rgb.device)
        return self.origins[index], self.directions[index], self.rgb[index]


def distillation_step(renderer, denoiser: ViewConditionedDenoiser, cond, views: SceneViews, inputs: InputRays,
                      cameras: CameraDistribution, cfg: DistillConfig, progress: float,
                      generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """The losses of one iteration (see the module docstring); ``objective`` is to be minimised."""
    cameras = cameras.draw(cfg.views_per_iteration, generator)
    frames = render_frames(renderer, cameras, views.image_hw)  # rgb (B, 3, H, W)
    if progress < cfg.warm_start:
        # Consistent but blurry targets first: the field takes the denoiser's 3D shape and colours, so
        # the low-noise denoising that follows sharpens one object instead of averaging many.
        sigma, weight = 0.0, 1.0
        target = denoiser.regression_render(cond, cameras, views.image_hw)["rgb"]
    else:
        sigma = draw_sigma((progress - cfg.warm_start) / (1 - cfg.warm_start), cfg, generator)
        target = denoiser.denoise_to_clean(frames["rgb"].detach(), sigma, cameras, cond, steps=cfg.denoise_steps,
                                           sampler=cfg.sampler, generator=generator)
        weight = distill_weight(sigma, denoiser.sigma_data, cfg.weight_power)
    loss_distill = (frames["rgb"] - target.to(frames["rgb"].dtype)).square().mean()
    origins, directions, rgb = inputs.draw(cfg.input_rays, generator)
    loss_input = (render_rays(renderer, origins, directions)["rgb"] - rgb).square().mean()
    loss_opacity = frames["opacity"].mean()
    loss_tv = total_variation(renderer.field)
    objective = (cfg.distill_weight * weight * loss_distill + cfg.input_weight * loss_input
                 + cfg.opacity_weight * loss_opacity + cfg.tv_weight * loss_tv)
    return {"objective": objective, "loss_distill": loss_distill, "loss_input": loss_input,
            "loss_opacity": loss_opacity, "loss_tv": loss_tv, "sigma": torch.tensor(sigma),
            "weight": torch.tensor(weight)}


# ------------------------------------------------------------------------------------- the loop


def make_optimizer(renderer: VolumeRenderer, cfg: DistillConfig) -> torch.optim.Optimizer:
    """Adam: the grid at ``lr`` (grids want large steps), the decoding MLP at ``lr_mlp``."""
    field = renderer.field
    return torch.optim.Adam([{"params": field.grid.parameters(), "lr": cfg.lr},
                             {"params": field.mlp.parameters(), "lr": cfg.lr_mlp}])


def save_checkpoint(path: Path, renderer, optimizer, iteration: int, seconds: float, views: SceneViews) -> None:
    """The field, its optimiser state and the progress, written atomically."""
    state = {"field": renderer.field.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
             "seconds": seconds, "input_frames": views.input_frames}
    with open_atomic(Path(path)) as stream:
        torch.save(state, stream)


def distill_scene(renderer: VolumeRenderer, denoiser: ViewConditionedDenoiser, views: SceneViews, cfg: DistillConfig,
                  seed: int, checkpoint: Optional[Path] = None, progress_bar: bool = True) -> Dict[str, Any]:
    """Optimises ``renderer.field`` on one scene; resumes from ``checkpoint`` when it exists and saves to
    it every ``checkpoint_every`` iterations and at the end. Returns iterations, seconds, last losses."""
    optimizer = make_optimizer(renderer, cfg)
    start, seconds = 0, 0.0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=views.input_rgb.device, weights_only=True)
        renderer.field.load_state_dict(state["field"])
        optimizer.load_state_dict(state["optimizer"])
        start, seconds = int(state["iteration"]), float(state["seconds"])
        logger.info("resuming from %s at iteration %d", checkpoint, start)
    generator = torch.Generator(device=views.input_rgb.device).manual_seed(seed + start)  # resume: fresh stream
    cond = denoiser.condition(views.input_rgb, views.input_fg, views.input_cameras)
    inputs, cameras = InputRays(views), CameraDistribution(views, cfg)
    renderer.train()
    losses: Dict[str, float] = {}
    it, began = start, time.perf_counter() - seconds
    with tqdm(total=cfg.iterations, initial=start, desc="distilling", unit="it", leave=False,
              disable=not progress_bar) as bar:
        while it < cfg.iterations and not (cfg.max_seconds > 0 and time.perf_counter() - began >= cfg.max_seconds):
            progress = it / cfg.iterations
            if cfg.max_seconds > 0:
                progress = max(progress, (time.perf_counter() - began) / cfg.max_seconds)
            out = distillation_step(renderer, denoiser, cond, views, inputs, cameras, cfg, progress, generator)
            optimizer.zero_grad(set_to_none=True)
            out["objective"].backward()
            optimizer.step()
            it += 1
            bar.update(1)
            if it % 25 == 0 or it == start + 1:
                losses = {k: float(v.detach()) for k, v in out.items()}
                bar.set_postfix(distill=f"{losses['loss_distill']:.4f}", inputs=f"{losses['loss_input']:.4f}",
                                sigma=f"{losses['sigma']:.2f}")
            if checkpoint is not None and it % cfg.checkpoint_every == 0:
                save_checkpoint(checkpoint, renderer, optimizer, it, time.perf_counter() - began, views)
    seconds = time.perf_counter() - began
    if checkpoint is not None:
        save_checkpoint(checkpoint, renderer, optimizer, it, seconds, views)
    renderer.eval()
    return {"iterations": it, "seconds": seconds, "last_losses": losses}


# ------------------------------------------------------------------------------------- evaluation


def nearest_neighbours(cameras: CamerasBase) -> List[int]:
    """For each camera, the index of the nearest other camera (by camera centre)."""
    centres = cameras.get_camera_center().float()  # (T, 3)
    dist = torch.cdist(centres, centres)
    dist.fill_diagonal_(float("inf"))
    return dist.argmin(dim=1).tolist()


@torch.no_grad()
def reprojection_error(rgb: torch.Tensor, depth: torch.Tensor, opacity: torch.Tensor, cameras: CamerasBase,
                       tolerance: float) -> torch.Tensor:
    """Multi-view consistency of T views rgb (T, 3, H, W) with z-depth / opacity (T, 1, H, W): every
    solid pixel of view j is lifted with its depth, projected into its nearest neighbour i and compared
    with view i's colour there (mean absolute error over the pixels that land inside view i, on its
    solid part, unoccluded: |projected z - depth_i| < tolerance). Returns (T,), NaN where none land."""
    t, hw = rgb.shape[0], rgb.shape[-2:]
    if t < 2:
        return torch.full((t,), float("nan"))
    neighbour = nearest_neighbours(cameras)
    rays = full_image_rays(cameras, hw)
    points = rays.origins + rays.directions * depth.flatten(2).transpose(1, 2)  # (T, H*W, 3) world
    other = cameras[neighbour]
    ndc = other.transform_points_ndc(points)  # (T, H*W, 3)
    z = other.get_world_to_view_transform().transform_points(points)[..., 2]  # (T, H*W)
    grid = ndc_to_grid_coords(ndc[..., :2], hw)[:, :, None]  # (T, H*W, 1, 2)
    stacked = torch.cat([rgb, depth, opacity], dim=1)[neighbour]  # (T, 5, H, W) of the neighbours
    seen = F.grid_sample(stacked.float(), grid.float(), align_corners=False).squeeze(-1)  # (T, 5, H*W)
    inside = (grid.squeeze(2).abs() <= 1).all(dim=-1) & (z > 0)  # (T, H*W)
    valid = (inside & (opacity.flatten(1) > 0.5) & (seen[:, 4] > 0.5)
             & ((z - seen[:, 3]).abs() < tolerance)).float()  # (T, H*W)
    error = (seen[:, :3] - rgb.flatten(2)).abs().mean(dim=1)  # (T, H*W)
    return (error * valid).sum(1) / valid.sum(1)  # NaN where nothing is valid


@torch.no_grad()
def evaluate_scene(renderer, denoiser: ViewConditionedDenoiser, views: SceneViews, cfg: DistillConfig, chunk: int,
                   volume_extent: float, generator: torch.Generator) -> Dict[str, Any]:
    """Renders of the T held-out views by (a) the denoiser's 3D render, (b) independent per-view samples,
    (c) the distilled field, and their metrics (per view, (T,)). Consistency of (b) uses the distilled
    field's depth (the samples have none), so it measures how well they agree across views on the
    same geometry as (c)."""
    hw, cams = views.image_hw, views.heldout_cameras
    cond = denoiser.condition(views.input_rgb, views.input_fg, views.input_cameras)
    field = render_field(renderer, cams, hw, chunk)
    regression = denoiser.regression_render(cond, cams, hw)
    samples = denoiser.independent_samples(cond, cams, hw, steps=cfg.sample_steps or None, sampler=cfg.sample_sampler,
                                           generator=generator)
    images = {"regression": regression["rgb"], "samples": samples, "distilled": field["rgb"]}
    geometry = {"regression": regression, "samples": field, "distilled": field}
    tolerance = 0.05 * volume_extent
    metrics = {}
    for name in METHODS:
        per_view = image_metrics(images[name].float(), views.heldout_rgb.float(), views.heldout_fg)
        per_view["consistency_l1"] = reprojection_error(images[name].float(), geometry[name]["depth"],
                                                        geometry[name]["opacity"], cams, tolerance)
        metrics[name] = per_view
    return {"images": {k: v.float().cpu() for k, v in images.items()}, "field": {k: v.cpu() for k, v in field.items()},
            "metrics": metrics}


# ------------------------------------------------------------------------------------- the driver


def check_settings(cfg: DistillConfig) -> None:
    """Every setting that cannot work, in one SettingsError naming the keys, before any work."""
    problems = []
    if cfg.split not in ("test", "val"):
        problems.append(f"split={cfg.split!r} (expected test or val)")
    if cfg.n_input_views < 2:
        problems.append(f"n_input_views={cfg.n_input_views} (distillation needs K >= 2 input views)")
    for key in ("max_scenes", "iterations", "views_per_iteration", "denoise_steps", "input_rays", "checkpoint_every",
                "grid_resolution", "grid_features", "hidden_dim", "n_pts_coarse", "n_frames", "fps"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 1)")
    for key in ("max_heldout_views", "max_seconds", "n_pts_fine", "sample_steps", "chunk_size", "weight_power",
                "distill_weight", "input_weight", "opacity_weight", "tv_weight"):
        if getattr(cfg, key) < 0:
            problems.append(f"{key}={getattr(cfg, key)} (must be >= 0)")
    if not 0.0 <= cfg.warm_start < 1.0:
        problems.append(f"warm_start={cfg.warm_start} (need 0 <= warm_start < 1)")
    if not 0 < cfg.sigma_min <= cfg.sigma_max_end <= cfg.sigma_max_start:
        problems.append(f"sigma_min={cfg.sigma_min}, sigma_max_end={cfg.sigma_max_end}, sigma_max_start="
                        f"{cfg.sigma_max_start} (need 0 < sigma_min <= sigma_max_end <= sigma_max_start)")
    if cfg.camera_distribution not in CAMERA_DISTRIBUTIONS:
        problems.append(f"camera_distribution={cfg.camera_distribution!r} (expected one of {CAMERA_DISTRIBUTIONS})")
    elevation = list(cfg.sphere_elevation_deg)
    if len(elevation) != 2 or not -90 <= elevation[0] <= elevation[1] <= 90:
        problems.append(f"sphere_elevation_deg={list(cfg.sphere_elevation_deg)} (expected [low, high] in [-90, 90])")
    if cfg.grid_type not in GRID_TYPES:
        problems.append(f"grid_type={cfg.grid_type!r} (expected one of {GRID_TYPES})")
    for key in ("sampler", "sample_sampler"):
        if getattr(cfg, key) not in ("euler", "heun", "dpmpp_2m"):
            problems.append(f"{key}={getattr(cfg, key)!r} (expected a sigma-space sampler: euler, heun, dpmpp_2m)")
        else:
            sampler_spec(getattr(cfg, key))
    if len(cfg.video_size) != 2 or min(cfg.video_size) < 1:
        problems.append(f"video_size={list(cfg.video_size)} (expected [H, W])")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))


def load_scene_views(dataset, name: str, cfg: DistillConfig, background, fg_threshold, device) -> SceneViews:
    """The scene's frames split into seeded inputs and held-out views (composited on the background)."""
    from holo3d.data.scene_batch import SceneBatch
    from holo3d.models.target_views import TargetViews
    from holo3d.sample.dataset_access import collate_frames, sequence_frames

    indices = sequence_frames(dataset, name)
    inputs, heldout = split_scene_views(len(indices), cfg.n_input_views, scene_seed(cfg.seed, name),
                                        cfg.max_heldout_views)
    order = [indices[i] for i in heldout + inputs]  # targets first, as TargetViews splits them
    batch = SceneBatch.from_frame_data(collate_frames(dataset, order).to(device), frames_per_scene=len(order))
    targets, sources = TargetViews.split(batch, len(heldout), background, fg_threshold)
    every = collate_frames(dataset, indices).camera.to(device)
    return SceneViews(input_rgb=sources.rgb[0].float(), input_fg=sources.fg[0].float(), input_cameras=sources.cameras,
                      heldout_rgb=targets.rgb[0].float(), heldout_fg=targets.fg[0].float(),
                      heldout_cameras=targets.cameras, all_cameras=every, background=tuple(background),
                      input_frames=inputs)


def scene_report(evaluation: Dict[str, Any], run: Dict[str, Any], views: SceneViews) -> Dict[str, Any]:
    """metrics.json of one scene: per method the means over held-out views, and the run's figures."""
    report = MetricsReport()
    for name in METHODS:
        report.add_sequence(name, evaluation["metrics"][name])
    return {"methods": report.per_sequence, "n_heldout_views": int(views.heldout_rgb.shape[0]),
            "input_frames": views.input_frames, "iterations": run["iterations"], "seconds": run["seconds"],
            "last_losses": run["last_losses"],
            "consistency": "mean |colour| error (0-1) of each held-out view reprojected into its nearest "
                           "neighbour with depth: the field's own for distilled and regression, the "
                           "distilled field's for samples"}


def write_scene_outputs(cfg: DistillConfig, renderer, views: SceneViews, evaluation, folder: Path, chunk: int,
                        volume_extent: float) -> None:
    """heldout_views.png (rows: GT | regression | samples | distilled) and, with write_videos, the
    held-out views and a turntable (render | depth) as mp4s."""
    from holo3d.sample.camera_path import make_turntable
    from holo3d.sample.contact_sheet import compose_sheet, write_png
    from holo3d.sample.frame_renderer import depth_image, resize_frames, side_by_side
    from holo3d.sample.video_writer import write_video

    gt, images = views.heldout_rgb.float().cpu(), evaluation["images"]
    rows = [torch.stack([gt[i], *(images[m][i] for m in METHODS)]) for i in range(gt.shape[0])]
    write_png(folder / "heldout_views.png", compose_sheet(rows))
    if not cfg.write_videos:
        return
    field = evaluation["field"]
    panels = side_by_side(gt, *(images[m] for m in METHODS), depth_image(field["depth"], field["opacity"]))
    write_video(folder / "heldout_views.mp4", panels, cfg.fps, cfg.gif)
    cameras, note = make_turntable(cfg, volume_extent, views.all_cameras, device=views.input_rgb.device)
    logger.info("%s", note)
    frames = render_field(renderer, cameras, views.image_hw, chunk)
    panels = side_by_side(resize_frames(frames["rgb"], cfg.video_size),
                          resize_frames(depth_image(frames["depth"], frames["opacity"]), cfg.video_size))
    write_video(folder / "turntable.mp4", panels, cfg.fps, cfg.gif)


def run_scene(cfg: DistillConfig, model, denoiser: ViewConditionedDenoiser, dataset, name: str, folder: Path,
              device: torch.device, progress_bar: bool = True) -> Dict[str, Any]:
    """Distills, evaluates and writes one scene (resuming from its checkpoint); returns its report
    (also written as folder/metrics.json, last) and the evaluation's images under ``evaluation``."""
    folder.mkdir(parents=True, exist_ok=True)
    views = load_scene_views(dataset, name, cfg, model.background, model.input_fg_threshold, device)
    seed = scene_seed(cfg.seed, name)
    torch.manual_seed(seed)  # the field's initialisation
    renderer = build_field_renderer(cfg, model.scene_extent, views.background).to(device)
    chunk = cfg.chunk_size if cfg.chunk_size > 0 else model.render_chunk_size
    # The denoiser's U-Net replayed as a CUDA graph: its batch is the same at every iteration.
    with model.sampling_accelerated(device.type == "cuda"):
        run = distill_scene(renderer, denoiser, views, cfg, seed, folder / CHECKPOINT_NAME, progress_bar)
        generator = torch.Generator(device=device).manual_seed(seed)
        evaluation = evaluate_scene(renderer, denoiser, views, cfg, chunk, model.scene_extent, generator)
    write_scene_outputs(cfg, renderer, views, evaluation, folder, chunk, model.scene_extent)
    report = scene_report(evaluation, run, views)
    write_metrics_json(folder / METRICS_NAME, report)
    return {**report, "evaluation": evaluation, "views": views}


def safe_name(name: str) -> str:
    """A folder name whatever the sequence is called."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def summary_row(report: Dict[str, Any]) -> Dict[str, float]:
    """One scene's figures flattened to ``<method>_<metric>`` (MetricsReport's flat layout)."""
    row = {f"{m}_{k}": v for m, values in report["methods"].items() for k, v in values.items() if k != "n_views"}
    row["seconds"] = report["seconds"]
    return row


def distill_scenes(cfg: DistillConfig) -> Path:
    """distill.py's driver; returns the output folder (EXP/distillation unless ``output_dir``)."""
    import json

    from holo3d.sample.experiment_loader import load_experiment, output_dir
    from holo3d.sample.dataset_access import sequence_frames
    from holo3d.sample.reconstruct import heldout_sequences
    from holo3d.sample.video_writer import video_backend

    check_settings(cfg)
    if cfg.write_videos:
        video_backend()
    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    denoiser = denoiser_for(loaded.model, cfg.guidance)
    dataset, names = heldout_sequences(loaded.config, SimpleNamespace(
        split=cfg.split, sequences=list(cfg.scenes), max_sequences=cfg.max_scenes))
    for name in names:  # every scene's frame count, before any scene is optimised
        n_frames = len(sequence_frames(dataset, name))
        if n_frames <= cfg.n_input_views:
            raise SettingsError(f"n_input_views={cfg.n_input_views}: scene {name!r} has only {n_frames} frames "
                                f"(need more than n_input_views, the rest are held out)")
    out_dir = ensure_writable_dir(output_dir(loaded, cfg.output_dir, "distillation"),
                                  "output_dir" if cfg.output_dir else "exp_dir (its distillation folder)")
    summary = MetricsReport()
    for name in tqdm(names, desc="scenes", unit="scene"):
        folder = out_dir / safe_name(name)
        if (folder / METRICS_NAME).is_file():
            logger.info("%s: done already (%s exists), skipped", name, folder / METRICS_NAME)
            report = json.loads((folder / METRICS_NAME).read_text())
        else:
            report = run_scene(cfg, loaded.model, denoiser, dataset, name, folder, loaded.device)
        row = summary_row(report)
        summary.add_sequence(name, {k: torch.tensor([v if v is not None else float("nan")]) for k, v in row.items()})
        logger.info("%s: %s", name, ", ".join(f"{m} PSNR {report['methods'][m]['psnr']:.2f}" for m in METHODS))
    info = {**loaded.info(), "split": cfg.split, "n_input_views": cfg.n_input_views, "iterations": cfg.iterations,
            "camera_distribution": cfg.camera_distribution, "seed": cfg.seed}
    write_metrics_json(out_dir / METRICS_NAME, summary.to_dict(info))
    return out_dir
