"""The 3D voxel latent diffusion system, two registered models trained in two stages through experiment.py:

    stage 1  VoxelAutoencoderModel  occupancy (B, 1, R, R, R) -> latent (B, C, r, r, r) -> logits at
             R_out (e.g. 64^3 -> 16 x 8^3 -> 64^3 or 128^3); BCE / class-balanced / focal loss; one
             autoencoder for all categories (configs/voxel_ae.yaml).
    stage 2  VoxelLDM  the stage-1 autoencoder, loaded frozen from its experiment folder
             (``autoencoder_exp_dir``), encodes every batch on the fly (a frozen 3D conv encoder on 8^3
             latents costs less than reading a cache back); a class-conditioned 3D U-Net learns DDPM
             noise prediction on per-channel normalised latents, the class label dropped to a learned
             null label with probability ``cond_drop_prob`` so that one network is both the
             conditional and the unconditional model of classifier-free guidance (Ho & Salimans
             2022); samples are drawn with any sampler of the engine (ddpm, ddim, dpmpp_2m, ...) and
             decoded to occupancy probabilities (configs/voxel_ldm.yaml).

The frozen autoencoder is part of the LDM's state dict: an LDM checkpoint carries the exact weights
its latents came from (training the stage-1 experiment further changes nothing for a trained LDM).
Building a VoxelLDM for training reads ``autoencoder_exp_dir`` (its expconfig.yaml for the
architecture, its newest checkpoint's EMA weights, else model weights). An export
(``python -m holo3d.export``) instead names the architecture in ``autoencoder_args`` and leaves
``autoencoder_exp_dir`` empty: the autoencoder is built empty and its weights come with the LDM's own,
so an export needs no stage-1 folder (``export_args`` gives those two keys).

Latent normalisation: z_n = (z - mean_c) / std_c per channel c, with mean and std measured on the
first training batch (all ranks' batches when distributed) by the frozen encoder and kept as
buffers, so checkpoints, resumes and samplers all use the same numbers. They are set at iteration 0:
keep ``ema_start_iteration >= 1`` (the EMA shadow then copies them before it starts averaging).

Shapes: B batch, C latent channels, r latent side, R input side, R_out decoded side.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase
from pytorch3d.implicitron.tools.config import get_default_args_field, registry
from torch import nn

from holo3d.diffusion import BETA_SCHEDULES, PREDICTIONS, VPDiffusion, guided_denoiser, sample, sampler_spec
from holo3d.io.experiment_files import newest_checkpoint, read_experiment_config
from holo3d.models.protocol import GenerativeModel, OutputKind, TrainableModel
from holo3d.models.unet3d import UNet3D
from holo3d.models.voxel_autoencoder import LOSS_KINDS, VoxelAutoencoder, iou, occupancy_loss
from holo3d.render.fields import OccupancyField
from holo3d.render.volume_renderer import VolumeRenderer

AE_MODEL = "VoxelAutoencoderModel"
AE_PREFIX = "autoencoder."  # both models keep the leaf under this name, so state dict keys agree
AE_ARCHITECTURE = ("resolution", "latent_channels", "latent_resolution", "base_channels", "output_resolution")


# ----------------------------------------------------------------------------- shared pieces


def _resize_occupancy(voxels: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 1, S, S, S) -> (B, 1, side, side, side): max-pooled down (an occupied fine voxel makes its
    coarse voxel occupied, as VoxelDataSource does) or nearest-upsampled."""
    if voxels.shape[-1] > side:
        return F.max_pool3d(voxels, voxels.shape[-1] // side)
    if voxels.shape[-1] < side:
        return F.interpolate(voxels, size=(side,) * 3, mode="nearest")
    return voxels


def encoder_input_and_target(voxels: torch.Tensor, autoencoder: VoxelAutoencoder) -> Tuple[torch.Tensor, torch.Tensor]:
    """The autoencoder's input (B, 1, R, R, R) and reconstruction target (B, 1, R_out, R_out, R_out)
    from a batch served at either R or R_out (a 128^3 dataset trains a 64^3 -> 128^3 autoencoder
    against its own 128^3 grids; a 64^3 dataset against nearest-upsampled ones)."""
    sides = (autoencoder.resolution, autoencoder.output_resolution)
    if voxels.ndim != 5 or voxels.shape[1] != 1 or voxels.shape[-1] not in sides:
        raise ValueError(
            f"voxels shape {tuple(voxels.shape)}: the autoencoder takes (B, 1, R, R, R) with R = its "
            f"resolution {sides[0]} or output_resolution {sides[1]}; set data_source_VoxelDataSource_args.resolution"
        )
    voxels = voxels.float()
    return _resize_occupancy(voxels, sides[0]), _resize_occupancy(voxels, sides[1])


def build_autoencoder(args: Any) -> VoxelAutoencoder:
    """The VoxelAutoencoder leaf of a VoxelAutoencoderModel config (attributes or a mapping)."""
    get = args.get if hasattr(args, "get") else lambda key: getattr(args, key)
    return VoxelAutoencoder(
        resolution=int(get("resolution")), latent_channels=int(get("latent_channels")),
        latent_resolution=int(get("latent_resolution")), base_channels=int(get("base_channels")),
        output_resolution=int(get("output_resolution")) or None,
    )


# ----------------------------------------------------------------------------- stage 1


@registry.register
class VoxelAutoencoderModel(ImplicitronModelBase, TrainableModel):  # pyre-ignore[13]
    """Stage 1: the occupancy autoencoder, trained on ``VoxelDataSource`` batches (voxels, label, name).

    Fields (config keys):
        resolution: R, side of the grids encoded (the data's resolution, or output_resolution).
        latent_channels / latent_resolution: the latent grid (C, r, r, r); R / r a power of two.
        base_channels: encoder width at full resolution, doubled at every halving.
        output_resolution: side of the decoded grid (0: R); 2R decodes 64^3 inputs at 128^3.
        loss_kind: "bce" | "balanced" (occupied and empty voxels weigh alike) | "focal".
        focal_gamma / focal_alpha: focal loss settings (alpha < 0: no class weight).
    """

    resolution: int = 64
    latent_channels: int = 16
    latent_resolution: int = 8
    base_channels: int = 32
    output_resolution: int = 0
    loss_kind: str = "bce"
    focal_gamma: float = 2.0
    focal_alpha: float = -1.0
    log_vars: List[str] = field(default_factory=lambda: ["objective", "iou", "occupied_fraction"])

    def __post_init__(self) -> None:
        if self.loss_kind not in LOSS_KINDS:
            raise ValueError(f"VoxelAutoencoderModel.loss_kind={self.loss_kind!r}: expected one of {LOSS_KINDS}")
        self.autoencoder = build_autoencoder(self)

    def forward(self, *, voxels: torch.Tensor, evaluation_mode=None, iteration=None,
                **kwargs) -> Dict[str, torch.Tensor]:
        """voxels (B, 1, R, R, R) in {0, 1} (label and name are ignored) -> objective and log_vars."""
        x, target = encoder_input_and_target(voxels, self.autoencoder)
        logits = self.autoencoder(x)  # (B, 1, R_out, R_out, R_out)
        alpha = self.focal_alpha if self.focal_alpha >= 0 else None
        loss = occupancy_loss(logits.float(), target, self.loss_kind, self.focal_gamma, alpha)
        occupied = torch.sigmoid(logits.detach().float()) > 0.5
        return {"objective": loss, "iou": iou(occupied, target).mean(),
                "occupied_fraction": occupied.float().mean()}


# ----------------------------------------------------------------------------- stage 2 leaves


def _drop_unet_derived(args: DictConfig) -> None:
    # Channels are the autoencoder's latent channels. Defaults sized for 8^3 latents: three levels
    # (8^3, 4^3, 2^3), attention on the two coarser ones.
    for key in ("in_channels", "out_channels"):
        args.pop(key, None)
    args.channel_mult = [1, 2, 4]
    args.attention_resolutions = [2, 4]


class ClassConditionedUNet3D(nn.Module):
    """UNet3D with a class label: a learned embedding (row ``num_classes`` is the null label of
    classifier-free guidance) passed as the U-Net's extra embedding, added to its timestep embedding,
    which FiLMs every block.

    forward(x (B, C, D, H, W), t (B,) float or int, label (B,) or (1,) int64) -> (B, C, D, H, W)
    """

    def __init__(self, num_classes: int, **unet_args: Any):
        super().__init__()
        self.unet = UNet3D(**unet_args)
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, 4 * self.unet.model_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        # A (1,) label gives a (1, E) embedding that UNet3D broadcasts over the batch.
        return self.unet(x, t, emb=self.label_embed(label))  # (B, C, D, H, W)


def load_frozen_autoencoder(exp_dir: str) -> Tuple[VoxelAutoencoder, str]:
    """The stage-1 autoencoder of ``exp_dir`` (its config's architecture, the newest checkpoint's EMA
    weights when present) in eval mode without gradients, and the checkpoint path."""
    what = "VoxelLDM.autoencoder_exp_dir"
    config = read_experiment_config(exp_dir, what)
    factory = config.get("model_factory_class_type", "HoloModelFactory")
    block = config.get(f"model_factory_{factory}_args", {})
    if block.get("model_class_type") != AE_MODEL:
        raise ValueError(f"{what}={exp_dir!r} is a {block.get('model_class_type')} experiment; stage 2 needs "
                         f"a {AE_MODEL} experiment (train one with configs/voxel_ae.yaml)")
    args = block.get(f"model_{AE_MODEL}_args", {})
    missing = [key for key in AE_ARCHITECTURE if key not in args]
    if missing:
        raise ValueError(f"{what}={exp_dir!r}: its expconfig.yaml lacks model_{AE_MODEL}_args.{missing[0]}")
    autoencoder = build_autoencoder(args)
    path = newest_checkpoint(exp_dir)
    if path is None:
        raise FileNotFoundError(f"{what}={exp_dir!r} has no checkpoints/epoch_*.pth: train stage 1 first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        weights = state.get("ema") or state["model"]
    except Exception as error:  # noqa: BLE001 - truncated file, not a holo3d checkpoint
        raise ValueError(f"{what}: checkpoint {path} is unreadable: {error}") from None
    _load_checked(autoencoder, {k[len(AE_PREFIX):]: v for k, v in weights.items() if k.startswith(AE_PREFIX)}, path)
    return autoencoder.eval().requires_grad_(False), str(path)


def autoencoder_architecture(autoencoder: VoxelAutoencoder) -> Dict[str, int]:
    """The AE_ARCHITECTURE keys that rebuild ``autoencoder`` (base_channels: its stem's width)."""
    return {"resolution": autoencoder.resolution, "latent_channels": autoencoder.latent_channels,
            "latent_resolution": autoencoder.latent_resolution,
            "base_channels": autoencoder.encoder[0][0].out_channels,
            "output_resolution": autoencoder.output_resolution}


def _load_checked(autoencoder: VoxelAutoencoder, weights: Dict[str, torch.Tensor], path) -> None:
    """load_state_dict, with one error naming every missing, unexpected or reshaped tensor."""
    expected = autoencoder.state_dict()
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [f"{k}: checkpoint {tuple(weights[k].shape)} vs config {tuple(v.shape)}"
                 for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        raise ValueError(f"VoxelLDM.autoencoder_exp_dir: {path} does not fit the autoencoder its expconfig.yaml "
                         f"describes ({len(problems)} problems): {'; '.join(problems[:6])}")
    autoencoder.load_state_dict(weights)


# ----------------------------------------------------------------------------- stage 2


@registry.register
class VoxelLDM(ImplicitronModelBase, TrainableModel, GenerativeModel):  # pyre-ignore[13]
    """Stage 2: class-conditional latent DDPM over the frozen stage-1 autoencoder's latents.

    Fields (config keys):
        autoencoder_exp_dir: stage 1's experiment folder (its config and newest checkpoint); needed to train.
        autoencoder_args: instead of autoencoder_exp_dir (exports): the autoencoder's architecture
            (resolution, latent_channels, latent_resolution, base_channels, output_resolution), its
            weights to be loaded with this model's state dict.
        categories: comma-separated category names in label order: the data source's ``categories``
            (or, when that is empty, the sorted names it finds). ``conditions`` maps names to labels.
        cond_drop_prob: probability of training a sample with the null label (0.1-0.2 in the paper).
        num_diffusion_steps / beta_schedule: the DDPM schedule (linear: 1e-4 .. 0.02).
        prediction: what the U-Net predicts: eps (DDPM), x0 or v.
        sampler_default / guidance_scale_default: used when ``sample`` is not told (previews).
        volume_extent: side of the world cube the grids fill (turntable cameras are scaled to it).
        unet_args: the 3D U-Net (in / out channels are the latent channels).
    """

    autoencoder_exp_dir: str = ""
    autoencoder_args: Dict[str, int] = field(default_factory=lambda: {})
    categories: str = ""
    cond_drop_prob: float = 0.1
    num_diffusion_steps: int = 1000
    beta_schedule: str = "linear"
    prediction: str = "eps"
    sampler_default: str = "ddim"
    guidance_scale_default: float = 1.0
    volume_extent: float = 2.0
    unet_args: DictConfig = get_default_args_field(UNet3D, _hook=_drop_unet_derived)
    log_vars: List[str] = field(default_factory=lambda: ["objective", "timestep", "dropped_labels"])
    output_kind = OutputKind.VOXELS

    def __post_init__(self) -> None:
        self._check_config()
        if self.autoencoder_args:
            self.autoencoder = build_autoencoder(self.autoencoder_args).eval().requires_grad_(False)
            self.autoencoder_checkpoint = "this model's own weights (autoencoder_args)"
        else:
            self.autoencoder, self.autoencoder_checkpoint = load_frozen_autoencoder(self.autoencoder_exp_dir)
        c, r = self.autoencoder.latent_channels, self.autoencoder.latent_resolution
        self.denoiser_net = ClassConditionedUNet3D(len(self.category_names), in_channels=c, out_channels=c,
                                                   **self.unet_args)
        if r % self.denoiser_net.unet.downsample_factor:
            raise ValueError(f"VoxelLDM: the autoencoder's latent_resolution={r} must be divisible by the U-Net's "
                             f"downsample factor {self.denoiser_net.unet.downsample_factor} (unet_args.channel_mult)")
        self.diffusion = VPDiffusion(self.num_diffusion_steps, self.beta_schedule, prediction=self.prediction)
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self.register_buffer("latent_stats_ready", torch.tensor(False))
        side = self.autoencoder.output_resolution
        # ~3 coarse samples per voxel along an axis, plus importance samples at the surface. Empty-space
        # skipping on the voxel lattice is exact here: OccupancyField's density is 0 wherever the
        # trilinear occupancy is below its ramp, and between voxel centres that are all below it too.
        self.renderer = VolumeRenderer(field=OccupancyField(self.volume_extent), volume_extent=self.volume_extent,
                                       n_pts_coarse=3 * side, n_pts_fine=side, bg_color=(1.0, 1.0, 1.0),
                                       skip_empty_density=1e-6, occupancy_resolution=side)

    def _check_config(self) -> None:
        if not self.category_names:
            raise ValueError("VoxelLDM.categories is empty: give the data's category names in label order, "
                             "e.g. categories=chair,airplane,table")
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise ValueError(f"VoxelLDM.cond_drop_prob={self.cond_drop_prob} must be in [0, 1]")
        if self.prediction not in PREDICTIONS or self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"VoxelLDM.prediction={self.prediction!r} / beta_schedule={self.beta_schedule!r}: "
                             f"expected one of {PREDICTIONS} / {BETA_SCHEDULES}")
        sampler_spec(self.sampler_default)  # names the valid samplers when misspelt
        if self.autoencoder_args and self.autoencoder_exp_dir:
            raise ValueError(f"VoxelLDM: give autoencoder_exp_dir={self.autoencoder_exp_dir!r} (training) or "
                             f"autoencoder_args={dict(self.autoencoder_args)} (an export), not both")
        missing = [key for key in AE_ARCHITECTURE if self.autoencoder_args and key not in self.autoencoder_args]
        if missing:
            raise ValueError(f"VoxelLDM.autoencoder_args lacks {missing} (it needs {list(AE_ARCHITECTURE)})")

    @property
    def category_names(self) -> List[str]:
        return [c.strip() for c in self.categories.split(",") if c.strip()]

    @property
    def null_label(self) -> int:
        return len(self.category_names)

    def export_args(self) -> Dict[str, Any]:
        """The config keys that make an export of this model buildable without autoencoder_exp_dir."""
        return {"autoencoder_exp_dir": "", "autoencoder_args": autoencoder_architecture(self.autoencoder)}

    def train(self, mode: bool = True) -> "VoxelLDM":
        super().train(mode)
        self.autoencoder.eval()  # frozen: its BatchNorms keep stage 1's running statistics
        return self

    # ---------------------------------------------------------------- latents

    @torch.no_grad()
    def encode(self, voxels: torch.Tensor) -> torch.Tensor:
        """Occupancy (B, 1, R, R, R) (or R_out) -> normalised latents (B, C, r, r, r), float32."""
        x, _ = encoder_input_and_target(voxels, self.autoencoder)
        z = self.autoencoder.encode(x).float()
        return (z - self.latent_mean[:, None, None, None]) / self.latent_std[:, None, None, None]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, r, r, r) -> occupancy probabilities (B, 1, R_out, R_out, R_out)."""
        z = z.float() * self.latent_std[:, None, None, None] + self.latent_mean[:, None, None, None]
        return torch.sigmoid(self.autoencoder.decode(z).float())

    @torch.no_grad()
    def _set_latent_stats(self, voxels: torch.Tensor) -> None:
        """Per-channel mean / std of the raw latents of this batch (summed over ranks when distributed)."""
        z = self.autoencoder.encode(encoder_input_and_target(voxels, self.autoencoder)[0]).double()
        dims = (0, 2, 3, 4)
        sums = torch.stack([z.sum(dims), (z**2).sum(dims), torch.full_like(z[0, :, 0, 0, 0], z[:, 0].numel())])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        mean = sums[0] / sums[2]
        std = (sums[1] / sums[2] - mean**2).clamp_min(0).sqrt().clamp_min(1e-4)  # a dead channel stays finite
        self.latent_mean.copy_(mean.float())
        self.latent_std.copy_(std.float())
        self.latent_stats_ready.fill_(True)

    # ---------------------------------------------------------------- training

    def _checked_labels(self, label: torch.Tensor) -> torch.Tensor:
        n = len(self.category_names)
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= n):
            raise ValueError(f"VoxelLDM: batch labels {sorted(set(label.tolist()))} outside [0, {n}) of "
                             f"categories={self.categories!r}; they must list every category of the data")
        return label.long()

    def forward(self, *, voxels: torch.Tensor, label: torch.Tensor, evaluation_mode=None, iteration=None,
                **kwargs) -> Dict[str, torch.Tensor]:
        """voxels (B, 1, R, R, R), label (B,) -> eps-MSE objective (DDPM eq. 14) on normalised latents."""
        label = self._checked_labels(label)
        if self.training and self.autoencoder_args:
            raise ValueError("VoxelLDM: training needs autoencoder_exp_dir (stage 1's folder); with "
                             "autoencoder_args (an export's config) the autoencoder is whatever weights were loaded")
        if self.training and not bool(self.latent_stats_ready):
            self._set_latent_stats(voxels)
        z = self.encode(voxels)  # (B, C, r, r, r)
        t = self.diffusion.sample_t(z.shape[0], z.device)
        eps = torch.randn_like(z)
        dropped = torch.zeros_like(label, dtype=torch.bool)
        if self.training:
            dropped = torch.rand(label.shape, device=label.device) < self.cond_drop_prob
        label = torch.where(dropped, torch.full_like(label, self.null_label), label)
        out = self.denoiser_net(self.diffusion.noise(z, t, eps), t, label)
        loss = self.diffusion.loss(out.float(), z, eps, t).mean()
        return {"objective": loss, "timestep": t.float().mean(), "dropped_labels": dropped.float().mean()}

    # ---------------------------------------------------------------- sampling (GenerativeModel)

    @property
    def scene_extent(self) -> float:
        return self.volume_extent

    def conditions(self, n: int, label: str = "") -> Optional[Dict[str, torch.Tensor]]:
        """{"label": (n,) int64} for a category name; None (unconditional) for ""."""
        if not label:
            return None
        if label not in self.category_names:
            raise ValueError(f"VoxelLDM: unknown label {label!r}; known categories: {self.category_names}")
        return {"label": torch.full((n,), self.category_names.index(label), dtype=torch.long)}

    def guided_x0_fn(self, guidance_scale: float) -> Callable[..., torch.Tensor]:
        """The samplers' ``denoise_fn(z_t, t, label=(B,)) -> z0`` with classifier-free guidance:
        z0_uncond + w (z0_cond - z0_uncond); w = 1 is the conditional model, w = 0 the unconditional."""
        null = torch.full((1,), self.null_label, dtype=torch.long, device=self.latent_mean.device)
        return guided_denoiser(self.diffusion.denoiser(self.denoiser_net), guidance_scale, {"label": null})

    @torch.no_grad()
    def sample(self, n: int, *, cond: Optional[Dict[str, torch.Tensor]] = None, sampler: Optional[str] = None,
               steps: Optional[int] = None, eta: float = 0.0, guidance_scale: Optional[float] = None,
               generator: Optional[torch.Generator] = None, callback=None, device=None,
               **sampler_kwargs) -> torch.Tensor:
        """n occupancy samples (n, 1, R_out, R_out, R_out) in [0, 1] (see GenerativeModel.sample).

        ``cond`` None samples unconditionally (the null label; guidance has no effect). ``callback(i,
        z_t, occupancy)`` gets the decoded x0 estimate, so progressive videos show shapes; that
        costs one decoder pass per step, only when a callback is given.
        """
        if not bool(self.latent_stats_ready):
            raise RuntimeError("VoxelLDM has not seen a training batch: its latent statistics are unset")
        name = sampler or self.sampler_default
        device = torch.device(device) if device is not None else self.latent_mean.device
        label = torch.full((n,), self.null_label, dtype=torch.long) if cond is None else cond["label"]
        scale = self.guidance_scale_default if guidance_scale is None else float(guidance_scale)
        options = {"eta": eta} if sampler_spec(name).accepts("eta") else {}
        on_step = None if callback is None else (lambda i, z, z0: callback(i, z, self.decode(z0)))
        c, r = self.autoencoder.latent_channels, self.autoencoder.latent_resolution
        z = sample(name, self.guided_x0_fn(1.0 if cond is None else scale), (n, c, r, r, r),
                   self.diffusion.alpha_bars, steps, generator=generator, device=device, callback=on_step,
                   cond={"label": label.to(device)}, **options, **sampler_kwargs)
        return self.decode(z)

    @torch.no_grad()
    def render_samples(self, samples: torch.Tensor, cameras, image_size, chunk_size: Optional[int] = None):
        """Occupancy (B, 1, R, R, R) seen by B*V cameras -> rgb (B, V, 3, H, W) of the shaded solid on
        white, depth and opacity (B, V, 1, H, W)."""
        if cameras is None:
            raise ValueError("VoxelLDM.render_samples needs cameras (its samples are 3D grids)")
        grid = OccupancyField.prepare(samples)  # (B, 4, R, R, R)
        out = self.renderer.render_image(cameras, image_size, chunk_size or self.render_chunk_size,
                                         n_scenes=samples.shape[0], grid=grid)
        return {"rgb": out["features"].clamp(0, 1), "depth": out["depth"], "opacity": out["opacity"]}
