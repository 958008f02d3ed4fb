"""HoloDiffusionModel: a 3D diffusion model trained with posed 2D images only (Karnewar et al. 2023).

One training step, for S scenes of N frames (the first T are targets, the other K = N - T sources):

    1. lift:     sources -> ResNet features -> angle-weighted pooling onto voxel centres -> V0 (S, F, D, H, W)
    2. diffuse:  t ~ U{0..T-1} per scene, x_t = q_sample(V0, t); x0_hat = clip(UNet(x_t, t)) (x0-prediction;
                 eps / v predictions are converted to x0 first)
                 bootstrapped with probability ``bootstrap_prob``: x0_hat is noised again at a new t'
                 and denoised a second time (HoloDiffusion Sec. 3.4)
    3. render:   target rays through x0_hat with the two-pass voxel radiance field
    4. losses:   fine + coarse RGB MSE against targets masked onto the background (optional mask BCE,
                 optional direct x0 loss)

``grid_scale`` (as latent diffusion rescales its latents): the process runs on V0 / scale, so a V0 with
a small spread (lifted features are far from unit variance) meets the noise schedule at the
signal-to-noise ratios it was made for; every grid that is rendered is the x0 estimate times the scale.
"auto" measures the scale once, as the standard deviation of the first training batch's V0; "running"
follows V0's standard deviation as the lifter trains (holo3d.models.grid_scale). Both keep it in a
persistent buffer (``grid_scale_value``) that checkpoints and the EMA copy carry.

Samples are the chain's final x0, or (``sample_decode="unet_t0"``, as the official code renders them)
tanh(UNet(x, t=0)) of it. configs/holo_official.yaml switches on every official-code behaviour
(bootstrap through both passes, training density noise, ReLU densities, a 1e10 last interval, the
nearly affine RenderMLP, the extra decode).

Baselines are configs of the same model: ``use_diffusion=False`` applies the U-Net at t=0 to V0
(few-view reconstruction without diffusion), ``use_unet=False`` renders V0 directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from einops import rearrange
from omegaconf import DictConfig
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase, ImplicitronRender
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import get_default_args_field, registry
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.data.scene_batch import SceneBatch
from holo3d.diffusion import PREDICTIONS, q_sample, sample_ddim
from holo3d.models.feature_lift import FeatureLifter
from holo3d.models.grid_diffusion import GridDiffusion
from holo3d.models.grid_scale import GRID_SCALE_MODES, grid_scale_problems, measured_std, update_running_scale_
from holo3d.models.numerics import FiniteCheck
from holo3d.models.target_views import TargetViews, eval_render_size, render_losses
from holo3d.models.unet3d import UNet3D
from holo3d.render.rays import rays_need_replacement, sample_images_at_rays, sample_training_rays
from holo3d.models.protocol import (
    FieldModel,
    GenerativeModel,
    OutputKind,
    ReconstructionModel,
    TrainableModel,
)
from holo3d.models.cuda_graph_unet import graphed_unet
from holo3d.render.fields import VoxelGridField
from holo3d.render.render_mlp import RenderMLP
from holo3d.render.volume_renderer import VolumeRenderer


SAMPLE_DECODES = ("none", "unet_t0")
logger = logging.getLogger(__name__)


def _drop_unet_derived(args: DictConfig) -> None:
    # Channel counts follow the model's feature_size.
    for key in ("in_channels", "out_channels"):
        args.pop(key, None)


def _drop_lifter_derived(args: DictConfig) -> None:
    # The grid's size, extent and channels are the model's.
    for key in ("feature_size", "resolution", "volume_extent"):
        args.pop(key, None)


def _drop_renderer_derived(args: DictConfig) -> None:
    # The field is built here (render_mlp_args is its own typed block below, so its keys can be
    # overridden and checked); extent and background are the model's.
    for key in ("field", "volume_extent", "bg_color"):
        args.pop(key, None)


def _drop_render_mlp_derived(args: DictConfig) -> None:
    args.pop("in_features", None)


@registry.register
class HoloDiffusionModel(  # pyre-ignore[13]
    ImplicitronModelBase, TrainableModel, GenerativeModel, ReconstructionModel, FieldModel
):
    """HoloDiffusion as an Implicitron model (see the module docstring for the method).

    Fields (config keys):
        n_targets / n_targets_eval: target frames at the front of every scene in training /
            evaluation (the rest are sources); Implicitron's evaluation protocol has 1 target.
        n_rays_per_target: rays rendered per target frame in training.
        ray_fg_weight: training rays are drawn inside the mask crop with probability proportional
            to ``(1 - w) + w * fg``: 0 is uniform over the crop (Implicitron's mask_sample), 1 only
            foreground.
        grid_resolution / feature_size / volume_extent: the grid V0 is (F, R, R, R) over the world
            cube [-e/2, e/2]^3.
        use_unet / use_diffusion: see the baselines in the module docstring.
        num_diffusion_steps / beta_start / beta_end: linear-beta DDPM schedule.
        prediction: what the U-Net outputs: "x0" (the paper's), "eps" or "v"; ``denoise`` converts
            to x0 either way.
        x0_clip: x0 estimates, samples and rendered grids are clamped to [-x0_clip, x0_clip]
            (V0 lies in [-1, 1]; in the diffusion's units the bound is x0_clip / grid scale);
            None: no clamp.
        grid_scale: the diffusion runs on V0 / grid_scale (see the module docstring): a number > 0
            (1.0: V0 as lifted), "auto" (V0's standard deviation, measured on the first training
            batch) or "running" (a moving average of V0's per-batch standard deviation, updated by
            every training step, frozen in eval mode). The reconstruction baselines
            (use_diffusion=False) have no diffusion and ignore it.
        sample_decode: "none" renders a sample as drawn; "unet_t0" renders tanh(UNet(sample, t=0))
            (one more denoising pass, as the official code does at evaluation; x0 prediction only).
        bootstrap_prob: probability of the bootstrapped second denoising pass per training step.
        bootstrap_detach_first: no gradient through the first pass of a bootstrapped step (as in
            the paper); False backpropagates through both passes (as the official code does).
        x0_loss_weight / mask_loss_weight / coarse_loss_weight: loss weights (fine RGB has 1). The
            x0 loss is the MSE of the (clipped) first-pass x0 against V0 for x0 prediction, and the
            parameterisation's own DDPM loss (against eps or v) otherwise, both in the diffusion's
            units (V0 / grid scale).
        bg_color: background colour of renders and of the masked targets.
        mask_images: composite all input images on ``bg_color`` with their (thresholded) masks.
        mask_threshold: foreground masks are binarised at this value (0 keeps soft masks).
        render_size_eval: longer side of evaluation renders (0: the images' own size).
        chunk_size_eval: rays per batched pass in full-frame rendering.
        check_finite: raise on non-finite grids / renders (costs one host sync per step).
        unet_args / lifter_args / renderer_args: leaf settings (derived sizes are set here).
    """

    n_targets: int = 6
    n_targets_eval: int = 1
    n_rays_per_target: int = 1024
    ray_fg_weight: float = 0.0
    grid_resolution: int = 16
    feature_size: int = 64
    volume_extent: float = 2.0
    use_unet: bool = True
    use_diffusion: bool = True
    num_diffusion_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "x0"
    x0_clip: Optional[float] = 1.0
    grid_scale: Any = 1.0  # a number, "auto" or "running" (OmegaConf has no float-or-str type)
    sample_decode: str = "none"
    bootstrap_prob: float = 0.5
    bootstrap_detach_first: bool = True
    x0_loss_weight: float = 0.0
    mask_loss_weight: float = 0.0
    coarse_loss_weight: float = 1.0
    bg_color: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    mask_images: bool = True
    mask_threshold: float = 0.5
    render_size_eval: int = 0
    chunk_size_eval: int = 2**18
    check_finite: bool = True

    unet_args: DictConfig = get_default_args_field(UNet3D, _hook=_drop_unet_derived)
    lifter_args: DictConfig = get_default_args_field(FeatureLifter, _hook=_drop_lifter_derived)
    renderer_args: DictConfig = get_default_args_field(VolumeRenderer, _hook=_drop_renderer_derived)
    render_mlp_args: DictConfig = get_default_args_field(RenderMLP, _hook=_drop_render_mlp_derived)

    log_vars: List[str] = field(
        default_factory=lambda: [
            "objective",
            "loss_rgb_fine",
            "loss_rgb_coarse",
            "loss_mask",
            "loss_x0",
            "psnr",
            "psnr_coarse",
            "timestep",
            "bootstrapped",
            "grid_abs_mean",
            "grid_std",
            "opacity_mean",
        ]
    )

    def __post_init__(self) -> None:
        # Implicitron's config system calls nn.Module.__init__ before this (see
        # pytorch3d.implicitron.tools.config._fixup_class_init); the leaves are built here from
        # their *_args plus the derived sizes, passed explicitly.
        self._check_config()
        self.lifter = FeatureLifter(
            feature_size=self.feature_size,
            resolution=self.grid_resolution,
            volume_extent=self.volume_extent,
            **self.lifter_args,
        )
        self.unet = (
            UNet3D(in_channels=self.feature_size, out_channels=self.feature_size, **self.unet_args)
            if self.use_unet
            else None
        )
        # With a grid scale the x0 clip bound is a buffer, so the model clips in ``denoise`` itself.
        self.diffusion = GridDiffusion(self.num_diffusion_steps, self.beta_start, self.beta_end,
                                       prediction=self.prediction,
                                       clip_x0=None if self._scaled else self.x0_clip)
        self._register_grid_scale()
        field = VoxelGridField(self.feature_size, self.volume_extent, dict(self.render_mlp_args))
        self.renderer = VolumeRenderer(
            field=field, volume_extent=self.volume_extent, bg_color=tuple(self.bg_color), **self.renderer_args
        )
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)
        if self.unet is not None and self.grid_resolution % self.unet.downsample_factor:
            raise ValueError(
                f"grid_resolution={self.grid_resolution} must be divisible by the U-Net's "
                f"downsample factor {self.unet.downsample_factor} (2 ** (len(channel_mult) - 1))"
            )

    def _check_config(self) -> None:
        """Refuses values that would fail late (deep in a step, naming no key) or train nonsense."""
        if self.n_targets < 1 or self.n_targets_eval < 1:
            raise ValueError(f"n_targets={self.n_targets}, n_targets_eval={self.n_targets_eval}: need >= 1")
        problems = [f"{key}={getattr(self, key)} (must be >= 1)"
                    for key in ("grid_resolution", "feature_size", "n_rays_per_target", "num_diffusion_steps",
                                "chunk_size_eval") if getattr(self, key) < 1]
        problems += [f"{key}={getattr(self, key)} (must be >= 0)"
                     for key in ("render_size_eval", "x0_loss_weight", "mask_loss_weight", "coarse_loss_weight")
                     if getattr(self, key) < 0]
        problems += [f"{key}={getattr(self, key)} (must be in [0, 1])"
                     for key in ("bootstrap_prob", "ray_fg_weight", "mask_threshold") if not 0.0 <= getattr(self, key) <= 1.0]
        if self.x0_clip is not None and not self.x0_clip > 0:
            problems.append(f"x0_clip={self.x0_clip} (must be > 0, or null for no clamp)")
        if self.prediction not in PREDICTIONS:
            problems.append(f"prediction={self.prediction!r} (expected one of {list(PREDICTIONS)})")
        problems += grid_scale_problems(self.grid_scale)
        if self.sample_decode not in SAMPLE_DECODES:
            problems.append(f"sample_decode={self.sample_decode!r} (expected one of {list(SAMPLE_DECODES)})")
        elif self.sample_decode == "unet_t0" and self.prediction != "x0":
            problems.append(f"sample_decode='unet_t0' needs prediction='x0' (got {self.prediction!r}): "
                            "tanh of an eps / v output is not a grid")
        if self.volume_extent <= 0:
            problems.append(f"volume_extent={self.volume_extent} (must be > 0)")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            problems.append(f"beta_start={self.beta_start}, beta_end={self.beta_end} (need 0 < beta_start <= beta_end < 1)")
        if problems:
            raise ValueError("model_HoloDiffusionModel_args: " + "; ".join(problems))
        if self.use_diffusion and not self.use_unet:
            raise ValueError("use_diffusion=True needs use_unet=True (the U-Net is the denoiser)")

    # ---------------------------------------------------------------- grid scale

    @property
    def _scaled(self) -> bool:
        """Whether the diffusion runs on V0 / scale rather than on V0 itself."""
        return self.use_diffusion and (self._grid_scale_measured or float(self.grid_scale) != 1.0)

    @property
    def _grid_scale_measured(self) -> bool:
        """Whether the scale is measured from V0 ("auto" or "running") rather than a number."""
        return isinstance(self.grid_scale, str) and self.grid_scale in GRID_SCALE_MODES

    def _register_grid_scale(self) -> None:
        """The scale as a 0-d buffer: persistent when measured (so checkpoints and the EMA copy carry
        it; 0 until the first training batch), a constant of the config otherwise."""
        measured = self._grid_scale_measured
        self._grid_scale_known = not measured
        if self._scaled:
            value = 0.0 if measured else float(self.grid_scale)
            self.register_buffer("grid_scale_value", torch.tensor(value), persistent=measured)

    def to_diffusion_units(self, grid: torch.Tensor) -> torch.Tensor:
        """A grid in V0's units (B, F, D, H, W) divided by the grid scale (the process's data)."""
        return grid / self._scale_as(grid.dtype) if self._scaled else grid

    def from_diffusion_units(self, x: torch.Tensor) -> torch.Tensor:
        """A grid in the diffusion's units (B, F, D, H, W) times the grid scale (what is rendered)."""
        return x * self._scale_as(x.dtype) if self._scaled else x

    def _scale_as(self, dtype: torch.dtype) -> torch.Tensor:
        """The scale (0-d) as a copy: autograd saves it, and a running update changes the buffer in place."""
        return self.grid_scale_value.to(dtype, copy=True)

    def _clip_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """x in the diffusion's units clamped to [-x0_clip, x0_clip] / scale (identity unscaled, where
        the process clips)."""
        if not self._scaled or self.x0_clip is None:
            return x
        bound = self.x0_clip / self._scale_as(x.dtype)
        return x.clamp(-bound, bound)

    @torch.no_grad()
    def _measure_grid_scale(self, sources: "TargetViews") -> None:
        """grid_scale "auto": V0's standard deviation over the first training batch (summed over ranks
        when distributed), once; a host read until it is known."""
        if self._grid_scale_known:
            return
        if float(self.grid_scale_value) <= 0:
            std = measured_std(self.lift(sources.rgb, sources.fg, sources.cameras, sources.crop))
            if not std > 1e-6:
                raise ValueError(f"model_HoloDiffusionModel_args.grid_scale='auto': the first training "
                                 f"batch's V0 has standard deviation {std:.3g}; give grid_scale a number")
            self.grid_scale_value.fill_(std)
            logger.info("grid_scale='auto': V0 standard deviation %.4g on the first training batch", std)
        self._grid_scale_known = True

    def _require_grid_scale(self) -> None:
        """Refuses to sample or evaluate with a measured scale that no training batch has set yet."""
        if self._scaled and not self._grid_scale_known:
            if not float(self.grid_scale_value) > 0:
                raise RuntimeError(f"model_HoloDiffusionModel_args.grid_scale={self.grid_scale!r} is not "
                                   "measured yet "
                                   "(the first training batch sets it; a checkpoint carries it)")
            self._grid_scale_known = True

    @property
    def min_frames_per_scene(self) -> int:
        """Frames every scene of a training batch needs: the targets plus at least one source."""
        return max(self.n_targets, self.n_targets_eval) + 1

    # ---------------------------------------------------------------- public grid API

    def lift(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        cameras: CamerasBase,
        crops: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Clean feature grid V0 from source views.

        Args:
            images: (S, K, 3, H, W) in [0, 1] (already masked if ``mask_images``).
            masks: (S, K, 1, H, W) foreground.  cameras: S*K, scene-major.
            crops: (S, K, 1, H, W) valid-pixel masks or None.
        Returns:
            (S, F, D, H, W) in [-1, 1].
        """
        return self.lifter(images, masks, cameras, crops)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 estimate clipped to ``x0_clip``: x_t (B, F, D, H, W), t (B,) int or float -> (B, F, D, H, W).

        Both in the diffusion's units (V0 / grid scale; ``from_diffusion_units`` gives the grid to
        render). Without a U-Net this is the identity (clipped), so ``render_mlp_only`` renders V0 itself.
        """
        return self._denoise_with_output(x_t, t)[1]

    def _denoise_with_output(self, x_t: torch.Tensor, t: torch.Tensor) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        """(the U-Net's raw output in its parameterisation or None, the clipped x0 estimate)."""
        if self.unet is None:
            return None, self.clip_grid(x_t)
        out = self.unet(x_t, t.to(torch.float32))
        return out, self._clip_scaled(self.diffusion.to_x0(out, x_t, t)).to(x_t.dtype)

    def clip_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """``grid`` clamped to [-x0_clip, x0_clip] (unchanged when x0_clip is None)."""
        return grid if self.x0_clip is None else grid.clamp(-self.x0_clip, self.x0_clip)

    def decode_sample(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid to render (B, F, D, H, W) for a drawn sample in the diffusion's units: the clipped
        sample times the grid scale, or tanh(UNet(sample, 0) times the grid scale)."""
        grid = self._clip_scaled(grid) if self._scaled else self.clip_grid(grid)
        if self.sample_decode == "none":
            return self.from_diffusion_units(grid)
        t0 = torch.zeros(grid.shape[0], device=grid.device)
        return torch.tanh(self.from_diffusion_units(self.unet(grid, t0))).to(grid.dtype)

    def reconstruct(self, v0: torch.Tensor) -> torch.Tensor:
        """The grid to render for a lifted V0 without sampling: the U-Net at t=0 (or V0 itself).

        The no-diffusion baseline squashes the U-Net output with tanh instead of clipping (as the
        official code does): clipping would stop gradients where the output leaves [-1, 1].
        """
        if self.unet is None:
            return v0
        t0 = torch.zeros(v0.shape[0], device=v0.device)
        if self.use_diffusion:
            return self.from_diffusion_units(self.denoise(self.to_diffusion_units(v0), t0))
        return torch.tanh(self.unet(v0, t0)).to(v0.dtype)

    # ---------------------------------------------------------------- model protocol

    output_kind = OutputKind.RADIANCE_GRID

    @property
    def scene_extent(self) -> float:
        return self.volume_extent

    @property
    def render_chunk_size(self) -> int:
        return self.chunk_size_eval

    @property
    def can_sample(self) -> bool:
        return self.use_unet and self.use_diffusion

    @property
    def cannot_sample_reason(self) -> str:
        if self.can_sample:
            return ""
        return ("a reconstruction baseline (use_diffusion=False or use_unet=False): it cannot sample "
                "from noise; use visualize_reconstruction.py")

    @property
    def input_fg_threshold(self) -> Optional[float]:
        return self._fg_threshold

    @property
    def max_denoise_from_t(self) -> int:
        return self.num_diffusion_steps - 1 if self.can_sample else 0

    @property
    def background(self) -> Tuple[float, float, float]:
        return tuple(float(c) for c in self.bg_color)  # type: ignore[return-value]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        cond: Any = None,
        sampler: str = "ddpm",
        steps: Optional[int] = None,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        generator: Optional[torch.Generator] = None,
        callback=None,
        device: Optional[torch.device] = None,
        **sampler_kwargs,
    ) -> torch.Tensor:
        """Draws n grids (n, F, D, H, W) in [-x0_clip, x0_clip] from noise with ``sampler`` (see
        GridDiffusion), decoded by ``decode_sample``."""
        if not self.can_sample:
            raise RuntimeError(f"sample() is not available: {self.cannot_sample_reason}")
        if cond is not None or guidance_scale != 1.0:
            raise ValueError("HoloDiffusionModel is unconditional: cond and guidance_scale are not used")
        self._require_grid_scale()
        device = device or next(self.parameters()).device
        res = self.grid_resolution
        shape = (n, self.feature_size, res, res, res)
        if callback is not None and self._scaled:  # callbacks render: they get V0's units
            on_step, callback = callback, (lambda i, x, x0: on_step(i, self.from_diffusion_units(x),
                                                                    self.from_diffusion_units(x0)))
        grid = self.diffusion.sample(
            self.denoise, shape, sampler=sampler, steps=steps, eta=eta, generator=generator,
            callback=callback, device=device, **sampler_kwargs,
        )
        return self.decode_sample(grid)

    def sampling_accelerated(self, enabled: bool = True):
        """The U-Net replayed as a CUDA graph while sampling (no-op off CUDA)."""
        return graphed_unet(self, enabled)

    def render_samples(
        self,
        samples: torch.Tensor,
        cameras: CamerasBase,
        image_size: Tuple[int, int],
        chunk_size: Optional[int] = None,
    ) -> Dict[str, torch.Tensor]:
        """Full frames of B grids (B, F, D, H, W) from B*V cameras (grid-major), no grad.

        Returns dict of rgb (B, V, 3, H, W), depth (B, V, 1, H, W), opacity (B, V, 1, H, W).
        """
        out = self.renderer.render_image(
            cameras, image_size, chunk_size or self.chunk_size_eval, n_scenes=samples.shape[0],
            grid=self.clip_grid(samples),
        )
        return {"rgb": out["features"], "depth": out["depth"], "opacity": out["opacity"]}

    @torch.no_grad()
    def reconstruct_from_views(
        self,
        rgb: torch.Tensor,
        fg: torch.Tensor,
        cameras: CamerasBase,
        crop: Optional[torch.Tensor] = None,
        *,
        denoise_from_t: int = 0,
        denoise_steps: int = 10,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Lifts the sources (composited inputs, see the protocol) into V0 and returns the grid to
        render: ``reconstruct(V0)``, or V0 noised to ``denoise_from_t`` and denoised back with DDIM."""
        self._require_grid_scale()
        v0 = self.lift(rgb, fg, cameras, crop)  # (S, F, D, H, W)
        if denoise_from_t <= 0:
            return self.reconstruct(v0)
        if not self.can_sample:
            raise ValueError(f"denoise_from_t > 0 needs a diffusion model; this one is {self.cannot_sample_reason}")
        return self._denoise_from(v0, denoise_from_t, denoise_steps, generator)

    def _denoise_from(self, v0: torch.Tensor, t_start: int, steps: int,
                      generator: Optional[torch.Generator]) -> torch.Tensor:
        """Noises V0 (B, F, D, H, W) to timestep ``t_start`` and runs ``steps`` DDIM steps back to 0
        (in the diffusion's units; the result is in V0's).

        DDIM over the schedule truncated at t_start starts from its last entry, so passing x_t as the
        sampler's starting "noise" continues the reverse chain from t_start (timesteps keep their scale).
        """
        schedule = self.diffusion.schedule(v0.device)
        t_start = min(int(t_start), len(schedule) - 1)
        t = torch.full((v0.shape[0],), t_start, device=v0.device, dtype=torch.long)
        noise = torch.randn(v0.shape, generator=generator, device=generator.device if generator else v0.device)
        x_t = q_sample(self.to_diffusion_units(v0).float(), t, schedule, noise.to(v0.device)).to(v0.dtype)
        steps = max(1, min(int(steps), t_start + 1))
        x0 = sample_ddim(self.denoise, v0.shape, schedule[: t_start + 1], steps=steps, eta=0.0, noise=x_t)
        return self.from_diffusion_units(x0)

    def query_field(self, sample, points, directions):
        """Density (M,) and rgb (M, 3) of one grid (F, D, H, W) through the RenderMLP, no grad."""
        density, rgb = self.renderer.field.query(self.clip_grid(sample), points, directions)
        return density.float(), rgb.float()

    # ---------------------------------------------------------------- forward

    def forward(
        self,
        *,
        image_rgb: Optional[torch.Tensor],
        camera: CamerasBase,
        fg_probability: Optional[torch.Tensor] = None,
        mask_crop: Optional[torch.Tensor] = None,
        depth_map: Optional[torch.Tensor] = None,
        sequence_name: Optional[List[str]] = None,
        evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION,
        iteration: Optional[int] = None,
        **kwargs,
    ) -> Dict[str, Any]:
        """Implicitron model contract (docs/ARCHITECTURE.md): batch of S*N frames, scene-major.

        Returns preds with ``objective``, every ``log_vars`` key (0-d tensors), ``implicitron_render``
        (first target of the first scene), ``grid`` (S, F, D, H, W) detached, and in evaluation
        ``images_render`` / ``depths_render`` / ``masks_render`` / ``images_gt`` (S, T, C, H, W).
        """
        training = evaluation_mode == EvaluationMode.TRAINING
        n_targets = self.n_targets if training else self.n_targets_eval
        batch = self._scene_batch(image_rgb, camera, fg_probability, mask_crop, sequence_name, n_targets)
        checks = FiniteCheck(iteration, enabled=self.check_finite)
        targets, sources = TargetViews.split(batch, n_targets, self.background, self._fg_threshold)
        if training:
            if self._scaled and self.grid_scale == "auto":
                self._measure_grid_scale(sources)
            preds = self.training_core(targets, sources, self._training_plan(targets), checks)
        else:
            self._require_grid_scale()
            v0 = checks("lifted grid V0", self.lift(sources.rgb, sources.fg, sources.cameras, sources.crop))
            grid, stats = self.reconstruct(v0), self._zero_stats(v0)
            preds = self._render_evaluation(checks("denoised grid", grid), targets, checks)
            preds = self._finish({**preds, **stats}, v0, grid)
        checks.raise_if_any()  # the forward's one host sync (check_finite)
        return preds

    def compile_target(self):
        """``training_core``: the tensor-only part of a training step, for ``compile_model``."""
        return self.training_core

    def training_core(self, targets: "TargetViews", sources: "TargetViews", plan: "_TrainingPlan",
                      checks: FiniteCheck) -> Dict[str, Any]:
        """Lift, diffuse, render and score one training batch: no host reads and no Python-object
        decisions (those are in ``plan``), so torch.compile makes one graph per ``plan.bootstrap``.

        ``forward`` calls it as ``self.training_core``: ``compile_model`` puts a compiled version in
        its place for the duration of a compiled step (see holo3d.train.step). ``checks`` collects
        finiteness flags; the caller raises on them.
        """
        v0 = checks("lifted grid V0", self.lift(sources.rgb, sources.fg, sources.cameras, sources.crop))
        if plan.update_grid_scale:  # before the diffusion: the first step has no other value
            update_running_scale_(self.grid_scale_value, v0)
        grid, stats = self._grid_for_training(v0, plan)
        checks("denoised grid", grid)
        preds = self._render_training(grid, targets, plan, checks)
        preds.update(stats)
        return self._finish(preds, v0, grid)

    @property
    def _fg_threshold(self) -> Optional[float]:
        return self.mask_threshold if self.mask_images and self.mask_threshold > 0 else None

    def _scene_batch(self, image_rgb, camera, fg_probability, mask_crop, sequence_name, n_targets):
        if image_rgb is None:
            raise ValueError("HoloDiffusionModel.forward needs image_rgb (posed source and target views)")
        names = sequence_name if sequence_name is not None else ["scene"] * image_rgb.shape[0]
        batch = SceneBatch.from_frame_data(
            _FrameView(image_rgb, camera, fg_probability, mask_crop, None, names)
        )
        if batch.n_frames < n_targets + 1:
            raise ValueError(
                f"each scene in the batch has {batch.n_frames} frames but the model needs at least "
                f"{n_targets + 1} ({n_targets} targets + 1 source view); raise the data loader's "
                f"frames_per_scene or lower n_targets"
            )
        return batch

    def _training_plan(self, targets: "TargetViews") -> "_TrainingPlan":
        """What a training step decides outside ``training_core``: the ray-sampling weights, whether
        rays are drawn with replacement (a host read) and the bootstrap coin.

        The coin is the step's one draw from the CPU generator. On CUDA every other draw uses the
        device's generator, so drawing it first leaves a fixed-seed step's numbers as they were; on
        the CPU it now precedes t and eps (the same distribution, other numbers).
        """
        weights = targets.crop * ((1.0 - self.ray_fg_weight) + self.ray_fg_weight * targets.fg)
        weights = weights.flatten(0, 1)  # (S*T, 1, H, W)
        bootstrap = (self.use_diffusion and self.bootstrap_prob > 0
                     and float(torch.rand(())) < self.bootstrap_prob)
        if self.use_diffusion:
            # Fills the schedule's per-device cache here: a miss inside the core would be a guard
            # that fails once the first step has filled it (a recompile).
            self.diffusion.schedule(weights.device)
        update_scale = self._scaled and self.grid_scale == "running" and self.training
        return _TrainingPlan(weights, rays_need_replacement(weights, self.n_rays_per_target), bootstrap,
                             update_scale)

    @staticmethod
    def _zero_stats(v0: torch.Tensor) -> Dict[str, torch.Tensor]:
        zero = v0.new_zeros(()).float()
        return {"timestep": zero, "bootstrapped": zero, "loss_x0": zero}

    def _grid_for_training(self, v0: torch.Tensor, plan: "_TrainingPlan") -> Tuple[torch.Tensor, Dict]:
        """The grid the renderer sees, and diffusion stats for logging.

        With diffusion: V0 noised at a random t per scene, x0 predicted (and, when the plan's coin
        says so, noised at a new t' and denoised again), all in the diffusion's units, and the result
        brought back to V0's. Without: ``reconstruct`` (U-Net at t=0, or V0).
        """
        stats = self._zero_stats(v0)
        if not self.use_diffusion:
            return self.reconstruct(v0), stats
        t = self.diffusion.sample_t(v0.shape[0], v0.device)
        eps = torch.randn_like(v0)
        z0 = self.to_diffusion_units(v0)
        out, x0 = self._denoise_with_output(q_sample(z0, t, self.diffusion.schedule(v0.device), eps), t)
        if self.x0_loss_weight > 0:
            stats["loss_x0"] = self._x0_loss(out, x0, z0.detach(), eps, t)
        if plan.bootstrap:
            first = x0.detach() if self.bootstrap_detach_first else x0
            t = self.diffusion.sample_t(v0.shape[0], v0.device)
            x0 = self.denoise(self.diffusion.noise(first, t), t)
        stats["timestep"] = t.float().mean()
        stats["bootstrapped"] = stats["bootstrapped"] + float(plan.bootstrap)
        return self.from_diffusion_units(x0), stats

    def _x0_loss(self, out, x0, v0, eps, t) -> torch.Tensor:
        """The direct diffusion loss of the first pass (see x0_loss_weight), a 0-d float32 tensor."""
        if self.prediction == "x0":
            return (x0.float() - v0.float()).square().mean()
        return self.diffusion.process.loss(out.float(), v0.float(), eps.float(), t).mean()

    def _render_training(self, grid: torch.Tensor, targets: TargetViews, plan: "_TrainingPlan",
                         checks: FiniteCheck) -> Dict:
        """Renders n_rays_per_target rays of every target and compares them with the masked targets."""
        n_scenes = targets.rgb.shape[0]
        rays = sample_training_rays(
            targets.cameras, self.n_rays_per_target, targets.image_size, plan.ray_weights,
            replacement=plan.rays_with_replacement,
        )
        # One ray batch per scene: all its targets' rays go through that scene's grid together.
        origins = rearrange(rays.origins, "(s t) r c -> s (t r) c", s=n_scenes)  # (S, T*R, 3)
        directions = rearrange(rays.directions, "(s t) r c -> s (t r) c", s=n_scenes)  # (S, T*R, 3)
        out = self.renderer(origins, directions, stratified=True, grid=grid)  # each (S, T*R, C)
        out["rgb_fine"], out["rgb_coarse"] = out.pop("features_fine"), out.pop("features_coarse")
        for key in ("rgb_fine", "rgb_coarse", "opacity"):
            checks(f"rendered {key}", out[key])
        gt = sample_images_at_rays(targets.stacked().flatten(0, 1), rays.xys_grid)  # (S*T, R, 5)
        gt = rearrange(gt, "(s t) r c -> s (t r) c", s=n_scenes)  # (S, T*R, 5)
        preds = render_losses(out["rgb_fine"], out["rgb_coarse"], out["opacity"], gt)
        first = slice(0, self.n_rays_per_target)  # the first target of the first scene
        preds["implicitron_render"] = ImplicitronRender(
            image_render=out["rgb_fine"][0, first].T[None, :, :, None].detach(),  # (1, 3, R, 1)
            depth_render=out["depth"][0, first].T[None, :, :, None].detach(),
            mask_render=out["opacity"][0, first].T[None, :, :, None].detach(),
        )
        return preds

    def _render_evaluation(self, grid: torch.Tensor, targets: TargetViews, checks: FiniteCheck) -> Dict:
        """Full frames of every target at the evaluation size, compared with the masked targets."""
        size = eval_render_size(targets.image_size, self.render_size_eval)
        targets = targets.resized(size)
        out = self.render_samples(grid, targets.cameras, size)  # each (S, T, C, H, W)
        for key in ("rgb", "opacity"):
            checks(f"rendered {key}", out[key])
        gt = _pixels_as_rays(targets.stacked())  # (S, T*H*W, 5)
        rgb, opacity = _pixels_as_rays(out["rgb"]), _pixels_as_rays(out["opacity"])
        # Full frames are rendered with the fine pass only: the coarse loss repeats the fine one.
        preds = render_losses(rgb, rgb, opacity, gt)
        preds.update(
            images_render=out["rgb"], depths_render=out["depth"], masks_render=out["opacity"],
            images_gt=targets.rgb,
        )
        preds["implicitron_render"] = ImplicitronRender(  # first target of the first scene
            image_render=out["rgb"][0, :1],  # (1, 3, H, W)
            depth_render=out["depth"][0, :1],
            mask_render=out["opacity"][0, :1],
        )
        return preds

    def _finish(self, preds: Dict, v0: torch.Tensor, grid: torch.Tensor) -> Dict:
        """Objective from the weighted losses, grid statistics, detached grid for visualisation."""
        objective = preds["loss_rgb_fine"] + self.coarse_loss_weight * preds["loss_rgb_coarse"]
        if self.mask_loss_weight > 0:
            objective = objective + self.mask_loss_weight * preds["loss_mask"]
        if self.x0_loss_weight > 0:
            objective = objective + self.x0_loss_weight * preds["loss_x0"]
        if objective.requires_grad:
            # A bootstrapped step with a detached first pass leaves the lifter out of the graph;
            # a zero-weighted term keeps every parameter in it, so DDP never waits for missing grads.
            objective = objective + 0.0 * v0.float().mean()
        grid_f = grid.detach().float()
        preds.update(
            objective=objective,
            grid=grid.detach(),
            grid_abs_mean=grid_f.abs().mean(),
            grid_std=grid_f.std(),
        )
        return preds


@dataclass
class _TrainingPlan:
    """A training step's decisions taken outside ``training_core`` (see ``_training_plan``).

    ray_weights: (S*T, 1, H, W) ray-sampling weights of the targets. rays_with_replacement and
    bootstrap (the second denoising pass) are Python bools: torch.compile specialises on them
    (rays_with_replacement is fixed by the data and n_rays_per_target; bootstrap makes two graphs).
    update_grid_scale: whether the step moves a "running" grid scale (fixed by the config and the
    module's train / eval mode).
    """

    ray_weights: torch.Tensor
    rays_with_replacement: bool
    bootstrap: bool
    update_grid_scale: bool = False


def _pixels_as_rays(images: torch.Tensor) -> torch.Tensor:
    """(S, T, C, H, W) -> (S, T*H*W, C), the layout of rendered rays."""
    return rearrange(images, "s t c h w -> s (t h w) c")


class _FrameView:
    """The attributes of a FrameData that SceneBatch.from_frame_data reads (no FrameData needed)."""

    def __init__(self, image_rgb, camera, fg_probability, mask_crop, depth_map, sequence_name):
        self.image_rgb, self.camera = image_rgb, camera
        self.fg_probability, self.mask_crop = fg_probability, mask_crop
        self.depth_map, self.sequence_name = depth_map, sequence_name


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before fields were pluggable hold the RenderMLP at ``renderer.mlp``."""
    old = f"{prefix}renderer.mlp."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[f"{prefix}renderer.field.mlp." + key[len(old):]] = state_dict.pop(key)
