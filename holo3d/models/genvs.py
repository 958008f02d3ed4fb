"""GenvsModel: novel views from an EDM 2D denoiser conditioned on a frustum-aligned latent field
(GeNVS, Chan et al. 2023).

One training step, for S scenes of N frames (the first T are targets, the other K = N - T inputs):

    1. encode:   every input image -> 2D encoder-decoder -> a feature volume (F, Z, h, w) in its
                 camera's frustum (``FrustumEncoder``)
    2. render:   target rays through the volumes (``FrustumVolumeField``: points mapped into every
                 input frustum, sampled, averaged over the views that see them, two MLPs) ->
                 emission-absorption (``VolumeRenderer``) -> a C-channel latent image at h x w,
                 upsampled bilinearly to the image size
    3. denoise:  EDM (Karras et al. 2022) with its preconditioning: D(x; sigma) = c_skip x +
                 c_out F([c_in x, latent], c_noise, token) (eq. 7); ln sigma ~ N(P_mean, P_std^2);
                 with probability ``no_cond_prob`` the latent is replaced by noise and the token by
                 the learnt "no conditioning" one, so unconditional sampling and CFG work
    4. losses:   EDM loss (eq. 2, Table 1 weighting) + ``rgb_loss_weight`` x MSE of the latent's first
                 3 channels against the target (the pixelNeRF-style regression render) +
                 ``opacity_loss_weight`` x mean opacity (empty space stays empty)

Scenes. What the protocol calls a sample (``reconstruct_from_views``, ``sample``, ``render_samples``)
is a *scene code* (S, K, L): per view its frustum volume (F*Z*h*w numbers) and its NDC camera (R, T,
focal, principal point: 16 numbers), packed into one float32 tensor because the protocol passes
samples as tensors and a volume is meaningless without the camera it is aligned to.
``render_samples`` renders a scene from new cameras (the field's RGB, or denoised views with
``render_denoised``); ``generate_path`` samples views autoregressively along a camera path, each
conditioned on the inputs, up to ``path_context_views`` earlier generated views and the previous one.

Shapes: S scenes, K / V views, B = S*V images, F feature channels, Z depth bins, C latent channels,
H W image, h w latent image / volume.
"""

from __future__ import annotations

from dataclasses import field
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase, ImplicitronRender
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import enable_get_default_args, get_default_args_field, registry
from pytorch3d.renderer.cameras import CamerasBase, PerspectiveCameras
from torch import nn

from holo3d.data.scene_batch import SceneBatch
from holo3d.diffusion import EDMDiffusion, edm_denoise, guided_denoiser, sample, sampler_spec
from holo3d.models.cuda_graph_unet import graphed_unet
from holo3d.models.feature_lift import build_backbone
from holo3d.models.losses import psnr_from_mse
from holo3d.models.protocol import GenerativeModel, OutputKind, ReconstructionModel, TrainableModel
from holo3d.models.target_views import TargetViews
from holo3d.models.unet2d import UNet2D
from holo3d.render.fields import FrustumVolumeField
from holo3d.render.rays import full_image_rays
from holo3d.render.trajectories import turntable_cameras
from holo3d.render.volume_renderer import VolumeRenderer

_RESNET_CHANNELS = {"resnet18": (64, 64, 128, 256), "resnet34": (64, 64, 128, 256),
                    "resnet50": (64, 256, 512, 1024)}  # stem, layer1..3
CAMERA_NUMBERS = 16  # R (9), T (3), focal (2), principal point (2) per packed view
# VP sampler names the EDM model runs with their sigma-space counterpart: DDIM (eta 0) is the
# first-order probability-flow ODE step, i.e. Euler without churn (EDM sec. 3); ancestral DDPM is
# stochastic, i.e. Euler with churn. Lets generic callers (previews: "ddim", scripts: "ddpm") work.
SAMPLER_ALIASES = {"ddim": "euler", "ddpm": "euler"}


# ------------------------------------------------------------------------------------- leaves


def _conv_block(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
                         nn.GroupNorm(min(8, out_ch), out_ch), nn.ReLU(inplace=True))


class FrustumEncoder(nn.Module):
    """Image -> feature volume in its camera's frustum: a 2D encoder-decoder whose output channels
    are reshaped into ``feature_channels`` x ``depth_bins``.

    Encoder: a torchvision ResNet's stem and layers 1-3 (strides 2, 4, 8, 16; ImageNet weights from
    TORCH_HOME when present) or, for CPU tests, ``small``: three stride-2 conv blocks. Decoder:
    U-Net style, top-down with additive skips (1x1 lateral projections, as an FPN), then resized to
    ``volume_size`` and a 3x3 head.
    forward(images (B, 3, H, W) in [0, 1]) -> (B, F, Z, volume_size, volume_size)
    """

    def __init__(self, feature_channels: int = 16, depth_bins: int = 32, volume_size: int = 64,
                 backbone: str = "resnet34", use_local_weights: bool = True, decoder_channels: int = 128,
                 small_channels: int = 32):
        super().__init__()
        self.feature_channels, self.depth_bins, self.volume_size = feature_channels, depth_bins, volume_size
        if backbone == "small":
            c = small_channels
            self.stages = nn.ModuleList([_conv_block(3, c, 2), _conv_block(c, 2 * c, 2),
                                         _conv_block(2 * c, 4 * c, 2)])
            widths: Sequence[int] = (c, 2 * c, 4 * c)
            self.normalize = False
        elif backbone in _RESNET_CHANNELS:
            net = build_backbone(backbone, use_local_weights)
            self.stages = nn.ModuleList([nn.Sequential(net.conv1, net.bn1, net.relu),
                                         nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3])
            widths = _RESNET_CHANNELS[backbone]
            self.normalize = True
        else:
            raise ValueError(f"FrustumEncoder backbone={backbone!r}; expected 'small' or one of "
                             f"{sorted(_RESNET_CHANNELS)}")
        self.lateral = nn.ModuleList(nn.Conv2d(w, decoder_channels, 1) for w in widths)
        self.smooth = nn.ModuleList(_conv_block(decoder_channels, decoder_channels) for _ in widths[:-1])
        self.head = nn.Conv2d(decoder_channels, feature_channels * depth_bins, 3, padding=1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = (images - self.mean) / self.std if self.normalize else images * 2 - 1
        skips = []
        for stage in self.stages:
            h = stage(h)
            skips.append(h)
        out = self.lateral[-1](skips[-1])
        for i in range(len(skips) - 2, -1, -1):  # top-down: upsample, add the skip, smooth
            skip = self.lateral[i](skips[i])
            up = F.interpolate(out, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            out = self.smooth[i](up + skip)
        size = (self.volume_size, self.volume_size)
        if tuple(out.shape[-2:]) != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        out = self.head(out)  # (B, F*Z, h, w)
        return out.view(out.shape[0], self.feature_channels, self.depth_bins, *size)  # (B, F, Z, h, w)


enable_get_default_args(FrustumEncoder)


# ------------------------------------------------------------------------------------- scene codes


def pack_scene(volumes: torch.Tensor, cameras: PerspectiveCameras) -> torch.Tensor:
    """Volumes (S, K, F, Z, h, w) and S*K NDC cameras (scene-major) -> scene code (S, K, L) float32."""
    s, k = volumes.shape[:2]
    cam = torch.cat([cameras.R.reshape(-1, 9), cameras.T.reshape(-1, 3), cameras.focal_length.reshape(-1, 2),
                     cameras.principal_point.reshape(-1, 2)], dim=1).float()  # (S*K, 16)
    return torch.cat([volumes.reshape(s, k, -1).float(), cam.view(s, k, CAMERA_NUMBERS)], dim=2)  # (S, K, L)


def unpack_scene(scene: torch.Tensor, volume_shape: Sequence[int]) -> Tuple[torch.Tensor, PerspectiveCameras]:
    """Scene code (S, K, L) -> volumes (S, K, *volume_shape) and S*K NDC cameras (scene-major)."""
    s, k, length = scene.shape
    n_vol = int(torch.tensor(volume_shape).prod())
    if length != n_vol + CAMERA_NUMBERS:
        raise ValueError(f"scene code has {length} numbers per view; this model's volume {tuple(volume_shape)} "
                         f"and camera need {n_vol + CAMERA_NUMBERS}")
    volumes = scene[..., :n_vol].reshape(s, k, *volume_shape)  # (S, K, F, Z, h, w)
    cam = scene[..., n_vol:].reshape(s * k, CAMERA_NUMBERS)
    cameras = PerspectiveCameras(R=cam[:, :9].view(-1, 3, 3), T=cam[:, 9:12], focal_length=cam[:, 12:14],
                                 principal_point=cam[:, 14:16], device=scene.device)
    return volumes, cameras


def path_context(i: int, n_inputs: int, k: int) -> List[int]:
    """Views conditioning step i of a path: the n_inputs inputs, the previous generated view and up
    to k earlier generated views, evenly spread (view n_inputs + j is generated view j)."""
    earlier = list(range(i - 1))
    if len(earlier) > k:
        earlier = sorted({round(x) for x in torch.linspace(0, i - 2, k).tolist()})
    previous = [i - 1] if i > 0 else []
    return list(range(n_inputs)) + [n_inputs + j for j in earlier + previous]


def _drop_encoder_derived(args: DictConfig) -> None:
    for key in ("feature_channels", "depth_bins", "volume_size"):
        args.pop(key, None)


def _unet_defaults(args: DictConfig) -> None:
    # Channel counts, the condition width and the image side are the model's; EDM's c_noise
    # (about [-2, 2]) suits the random Fourier featurisation.
    for key in ("in_channels", "out_channels", "cond_dim", "image_size"):
        args.pop(key, None)
    args.noise_embedding = "fourier"


def _drop_renderer_derived(args: DictConfig) -> None:
    for key in ("field", "volume_extent", "bg_color"):
        args.pop(key, None)


# ------------------------------------------------------------------------------------- the model


@registry.register
class GenvsModel(ImplicitronModelBase, TrainableModel, GenerativeModel, ReconstructionModel):  # pyre-ignore[13]
    """GeNVS as an Implicitron model (see the module docstring for the method).

    Fields (config keys):
        n_targets / n_targets_eval: target frames at the front of every scene in training /
            evaluation; the remaining frames of the scene are the input views.
        image_size: side of the square images the denoiser is built for (places its attention).
        latent_size: side of the rendered latent image (= the frustum volumes' h = w).
        latent_channels: C, channels of the latent image; the first 3 are supervised as colour.
        feature_channels / depth_bins: F and Z of each input view's frustum volume.
        near / far: camera depths the frustum volumes span; must bracket the object (the built-in
            set's cameras are 2.5-3.1 from the centre, objects within 0.8 of it; SRN cars 0.8 / 1.8).
        volume_extent: rays are clipped to the world cube [-e/2, e/2]^3.
        field_hidden_dim: width of the field's density and feature MLPs.
        bg_color: colour of empty space in renders (SRN: white).
        sigma_data / sigma_min / sigma_max / rho: EDM preconditioning and sampling schedule.
        P_mean / P_std: training ln(sigma) ~ N(P_mean, P_std^2) (EDM: -1.2 / 1.2; high noise 1.0 / 1.4).
        no_cond_prob: probability that a training sample loses its conditioning (CFG, unconditional).
        cond_dim: width of the learnt conditioning / no-conditioning tokens fed to the U-Net.
        denoiser_loss_weight / rgb_loss_weight / opacity_loss_weight: loss weights (0 denoiser
            weight: the field-only pre-training stage; the model then cannot sample).
        freeze_field: no gradients into the encoder and field (the denoiser-only stage).
        sampler_default / steps_default / churn_default: sampling when the caller gives none
            (churn is S_churn of the stochastic Euler sampler).
        guidance_scale_default: classifier-free guidance scale when the caller gives none.
        path_context_views: K, earlier generated views (besides the previous one) conditioning each
            step of an autoregressive path.
        render_denoised: ``render_samples`` returns denoised views (sampler_default, steps_default,
            seeded) instead of the field's RGB render.
        free_view_elevation_deg / free_view_distance / free_view_focal: the camera an unconditional
            first view is assumed to be seen from (``sample`` without inputs).
        chunk_size_eval: rays per batched pass in full-frame rendering.
        encoder_args / unet_args / renderer_args: leaf settings (derived sizes are set here).
    """

    n_targets: int = 1
    n_targets_eval: int = 1
    image_size: int = 128
    latent_size: int = 64
    latent_channels: int = 16
    feature_channels: int = 16
    depth_bins: int = 32
    near: float = 1.5
    far: float = 4.5
    volume_extent: float = 2.0
    field_hidden_dim: int = 64
    bg_color: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    P_mean: float = -1.2
    P_std: float = 1.2
    no_cond_prob: float = 0.1
    cond_dim: int = 64
    denoiser_loss_weight: float = 1.0
    rgb_loss_weight: float = 1.0
    opacity_loss_weight: float = 1e-3
    freeze_field: bool = False
    sampler_default: str = "heun"
    steps_default: int = 25
    churn_default: float = 40.0
    guidance_scale_default: float = 1.0
    path_context_views: int = 4
    render_denoised: bool = False
    free_view_elevation_deg: float = 20.0
    free_view_distance: float = 2.8
    free_view_focal: float = 2.2
    chunk_size_eval: int = 2**16

    encoder_args: DictConfig = get_default_args_field(FrustumEncoder, _hook=_drop_encoder_derived)
    unet_args: DictConfig = get_default_args_field(UNet2D, _hook=_unet_defaults)
    renderer_args: DictConfig = get_default_args_field(VolumeRenderer, _hook=_drop_renderer_derived)

    log_vars: List[str] = field(default_factory=lambda: [
        "objective", "loss_diffusion", "loss_rgb", "loss_opacity", "psnr", "sigma_mean", "dropped",
        "opacity_mean",
    ])
    output_kind = OutputKind.IMAGES

    def __post_init__(self) -> None:
        self._check_config()
        self.encoder = FrustumEncoder(feature_channels=self.feature_channels, depth_bins=self.depth_bins,
                                      volume_size=self.latent_size, **self.encoder_args)
        frustum = FrustumVolumeField(self.feature_channels, self.latent_channels, self.field_hidden_dim,
                                     self.near, self.far)
        self.renderer = VolumeRenderer(field=frustum, volume_extent=self.volume_extent, bg_color=tuple(self.bg_color),
                                       **self.renderer_args)
        self.unet = UNet2D(in_channels=3 + self.latent_channels, out_channels=3, cond_dim=self.cond_dim,
                           image_size=self.image_size, **self.unet_args)
        # Row 0: "conditioned on the latent image"; row 1: the learnt "no conditioning" token.
        self.tokens = nn.Parameter(torch.randn(2, self.cond_dim) * 0.1)
        self.edm = EDMDiffusion(self.sigma_data, self.sigma_min, self.sigma_max, self.rho, self.P_mean, self.P_std)
        self._cameras_checked = False

    def _check_config(self) -> None:
        problems = []
        if not 0 < self.near < self.far:
            problems.append(f"near={self.near}, far={self.far} (need 0 < near < far)")
        if not 0.0 <= self.no_cond_prob < 1.0:
            problems.append(f"no_cond_prob={self.no_cond_prob} (need [0, 1))")
        if self.latent_channels < 3:
            problems.append(f"latent_channels={self.latent_channels} (the first 3 are colour: need >= 3)")
        if self.image_size % self.latent_size:
            problems.append(f"latent_size={self.latent_size} must divide image_size={self.image_size}")
        if self.n_targets < 1 or self.n_targets_eval < 1:
            problems.append(f"n_targets={self.n_targets}, n_targets_eval={self.n_targets_eval} (need >= 1)")
        try:
            sampler_spec(SAMPLER_ALIASES.get(self.sampler_default, self.sampler_default))
        except ValueError as error:
            problems.append(f"sampler_default: {error}")
        if problems:
            raise ValueError("GenvsModel: " + "; ".join(problems))

    @property
    def min_frames_per_scene(self) -> int:
        """Targets plus at least one input view."""
        return max(self.n_targets, self.n_targets_eval) + 1

    @property
    def volume_shape(self) -> Tuple[int, int, int, int]:
        return (self.feature_channels, self.depth_bins, self.latent_size, self.latent_size)

    def _latent_hw(self, image_hw: Sequence[int]) -> Tuple[int, int]:
        factor = self.image_size // self.latent_size
        return (max(1, int(image_hw[0]) // factor), max(1, int(image_hw[1]) // factor))

    # ---------------------------------------------------------------- building blocks

    def encode(self, images: torch.Tensor, cameras: CamerasBase) -> torch.Tensor:
        """Input views (S, K, 3, H, W) in [0, 1] and their S*K cameras -> scene code (S, K, L)."""
        s, k = images.shape[:2]
        self._check_camera_depths(cameras)
        volumes = self.encoder(images.flatten(0, 1))  # (S*K, F, Z, h, w)
        return pack_scene(volumes.view(s, k, *volumes.shape[1:]), cameras)

    def _check_camera_depths(self, cameras: CamerasBase) -> None:
        """Once: the input cameras' distances to the world origin must lie between near and far,
        or the frustum volumes would not cover the object (a host sync, hence only once)."""
        if self._cameras_checked:
            return
        dist = cameras.get_camera_center().norm(dim=-1)
        low, high = float(dist.min()), float(dist.max())
        if not (self.near < low and high < self.far):
            raise ValueError(f"GenvsModel near={self.near} / far={self.far} do not bracket the input cameras' "
                             f"distances to the origin ({low:.3g} .. {high:.3g}); set near / far for this data")
        self._cameras_checked = True

    def render_latents(self, scene: torch.Tensor, cameras: CamerasBase, hw: Sequence[int],
                       stratified: bool = False, chunk_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """Latent images of S scenes (S, K, L) from V cameras each (S*V, scene-major), at hw.

        Returns latent (S*V, C, h, w), depth and opacity (S*V, 1, h, w). Chunked over rays when
        ``chunk_size`` is given (rendering without gradients).
        """
        volumes, in_cameras = unpack_scene(scene, self.volume_shape)
        s, (h, w) = scene.shape[0], (int(hw[0]), int(hw[1]))
        rays = full_image_rays(cameras, (h, w))
        origins = rays.origins.reshape(s, -1, 3)  # (S, V*h*w, 3)
        directions = rays.directions.reshape(s, -1, 3)
        step = origins.shape[1] if chunk_size is None else max(1, chunk_size // s)
        parts = [self.renderer(origins[:, i:i + step], directions[:, i:i + step], stratified=stratified,
                               volumes=volumes, view_cameras=in_cameras) for i in range(0, origins.shape[1], step)]
        out = {}
        for name, key in (("latent", "features_fine"), ("depth", "depth"), ("opacity", "opacity")):
            flat = torch.cat([p[key] for p in parts], dim=1)  # (S, V*h*w, ch)
            out[name] = rearrange(flat, "s (v h w) c -> (s v) c h w", h=h, w=w)
        return out

    def upsample(self, latent: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, H, W), bilinear (the denoiser's conditioning)."""
        if tuple(latent.shape[-2:]) == tuple(hw):
            return latent
        return F.interpolate(latent, size=tuple(hw), mode="bilinear", align_corners=False)

    def raw_denoiser(self, x_in: torch.Tensor, c_noise: torch.Tensor, *, latent: torch.Tensor,
                     drop: torch.Tensor) -> torch.Tensor:
        """F(c_in x, c_noise; latent, drop) of EDM eq. 7: x_in (B, 3, H, W), latent (B, C, H, W),
        drop (B,) in {0, 1} (1: the no-conditioning token) -> (B, 3, H, W)."""
        weight = drop.to(self.tokens.dtype)[:, None]  # (B, 1)
        token = self.tokens[0] + weight * (self.tokens[1] - self.tokens[0])  # (B, cond_dim)
        return self.unet(torch.cat([x_in, latent.to(x_in.dtype)], dim=1), c_noise, token)

    # ---------------------------------------------------------------- forward (TrainableModel)

    def forward(self, *, image_rgb: Optional[torch.Tensor], camera: CamerasBase,
                fg_probability: Optional[torch.Tensor] = None, mask_crop: Optional[torch.Tensor] = None,
                sequence_name: Optional[List[str]] = None,
                evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION, iteration: Optional[int] = None,
                **kwargs) -> Dict[str, Any]:
        """Implicitron model contract: S*N frames, scene-major, targets first in each scene.

        Returns ``objective``, every ``log_vars`` key, ``implicitron_render``; in evaluation also
        the field's renders ``images_render`` / ``depths_render`` / ``masks_render`` and
        ``images_gt`` (S, T, C, H, W).
        """
        training = evaluation_mode == EvaluationMode.TRAINING
        n_targets = self.n_targets if training else self.n_targets_eval
        targets, inputs = self._split(image_rgb, camera, fg_probability, mask_crop, sequence_name, n_targets)
        image_hw = targets.image_size
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_field):
            scene = self.encode(inputs.rgb, inputs.cameras)  # (S, K, L)
            out = self.render_latents(scene, targets.cameras, self._latent_hw(image_hw), stratified=training)
        gt = targets.rgb.flatten(0, 1)  # (S*T, 3, H, W)
        preds = self._field_losses(out, gt)
        preds.update(self._diffusion_loss(out["latent"], gt))
        preds["objective"] = (self.denoiser_loss_weight * preds["loss_diffusion"]
                              + self.rgb_loss_weight * preds["loss_rgb"]
                              + self.opacity_loss_weight * preds["loss_opacity"])
        rgb = self.upsample(out["latent"][:, :3].detach().float(), image_hw)
        preds["implicitron_render"] = ImplicitronRender(image_render=rgb[:1], depth_render=None, mask_render=None)
        if not training:
            s = targets.rgb.shape[0]
            per_scene = lambda x: x.reshape(s, -1, *x.shape[1:])  # noqa: E731  (S*T, ...) -> (S, T, ...)
            preds.update(images_render=per_scene(rgb.clamp(0, 1)), images_gt=targets.rgb,
                         depths_render=per_scene(self.upsample(out["depth"].float(), image_hw)),
                         masks_render=per_scene(self.upsample(out["opacity"].float(), image_hw)))
        return preds

    def _split(self, image_rgb, camera, fg_probability, mask_crop, sequence_name, n_targets):
        """(targets, inputs) TargetViews; targets composited on the background."""
        if image_rgb is None:
            raise ValueError("GenvsModel.forward needs image_rgb (posed input and target views)")
        names = sequence_name if sequence_name is not None else ["scene"] * image_rgb.shape[0]
        fg = fg_probability if fg_probability is not None else torch.ones_like(image_rgb[:, :1])
        batch = SceneBatch.from_frame_data(SimpleNamespace(image_rgb=image_rgb, camera=camera, fg_probability=fg,
                                                           mask_crop=mask_crop, depth_map=None, sequence_name=names))
        if batch.n_frames < n_targets + 1:
            raise ValueError(f"each scene has {batch.n_frames} frames but GenvsModel needs at least {n_targets + 1} "
                             f"({n_targets} targets + 1 input view); raise frames_per_scene or lower n_targets")
        return TargetViews.split(batch, n_targets, self.bg_color, None)

    def _field_losses(self, out: Dict[str, torch.Tensor], gt: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Auxiliary RGB loss of the latent's colour channels against the target at the latent's
        resolution (antialiased), and the opacity penalty."""
        small = F.interpolate(gt.float(), size=out["latent"].shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)  # (B, 3, h, w)
        loss_rgb = (out["latent"][:, :3].float() - small).square().mean()
        opacity = out["opacity"].float()
        return {"loss_rgb": loss_rgb, "psnr": psnr_from_mse(loss_rgb), "loss_opacity": opacity.mean(),
                "opacity_mean": opacity.detach().mean()}

    def _diffusion_loss(self, latent: torch.Tensor, gt: torch.Tensor) -> Dict[str, torch.Tensor]:
        """EDM loss of the denoiser on the target x0 = 2 gt - 1, conditioned on the upsampled latent
        (replaced by noise, with the no-conditioning token, with probability no_cond_prob)."""
        zero = gt.new_zeros((), dtype=torch.float32)
        if self.denoiser_loss_weight == 0:
            return {"loss_diffusion": zero, "sigma_mean": zero, "dropped": zero}
        x0 = gt.float() * 2 - 1  # (B, 3, H, W)
        b = x0.shape[0]
        sigma = self.edm.sample_sigma(b, x0.device)  # (B,)
        drop = (torch.rand(b, device=x0.device) < self.no_cond_prob).float()  # (B,)
        cond = self.upsample(latent, x0.shape[-2:])
        cond = torch.where(drop[:, None, None, None] > 0, torch.randn_like(cond), cond)
        denoised = edm_denoise(self.raw_denoiser, self.edm.noise(x0, sigma), sigma, self.sigma_data,
                               latent=cond, drop=drop)
        loss = self.edm.loss(denoised.float(), x0, sigma).mean()
        return {"loss_diffusion": loss, "sigma_mean": sigma.mean(), "dropped": drop.mean()}

    # ---------------------------------------------------------------- denoising views

    def _sampler(self, sampler: Optional[str], options: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """The sigma-space sampler to run for ``sampler`` (aliases resolved) and its options."""
        name = sampler or self.sampler_default
        if name == "ddpm" and "S_churn" not in options:
            options = {**options, "S_churn": self.churn_default}
        return SAMPLER_ALIASES.get(name, name), options

    @torch.no_grad()
    def denoise_views(self, latent: Optional[torch.Tensor], n: int, image_hw: Sequence[int], *,
                      sampler: Optional[str] = None, steps: Optional[int] = None,
                      guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None,
                      callback=None, device=None, **sampler_kwargs) -> torch.Tensor:
        """n views (n, 3, H, W) in [0, 1] sampled from noise, conditioned on latent images
        (n, C, h, w), or unconditionally (the no-conditioning token) for latent None.

        ``sampler``: a sigma-space sampler name of ``holo3d.diffusion.SAMPLERS`` (heun, euler with
        ``S_churn``, dpmpp_2m; ddim / ddpm run as Euler without / with churn).
        """
        device = torch.device(device) if device is not None else self.tokens.device
        name, options = self._sampler(sampler, dict(sampler_kwargs))
        shape = (n, 3, int(image_hw[0]), int(image_hw[1]))
        draw_on = generator.device if generator is not None else device
        noise_latent = torch.randn((n, self.latent_channels, *shape[-2:]), generator=generator,
                                   device=draw_on).to(device)  # the "no conditioning" input
        if latent is None:
            cond, scale = {"latent": noise_latent, "drop": torch.ones(n, device=device)}, 1.0
        else:
            cond = {"latent": self.upsample(latent.float(), shape[-2:]), "drop": torch.zeros(n, device=device)}
            scale = self.guidance_scale_default if guidance_scale is None else float(guidance_scale)
        uncond = {"latent": noise_latent, "drop": torch.ones(1, device=device)}
        fn = guided_denoiser(self.edm.denoiser(self.raw_denoiser), scale, uncond)
        on_step = None if callback is None else (lambda i, x, x0: callback(i, x, ((x0 + 1) / 2).clamp(0, 1)))
        x = sample(name, fn, shape, self.edm.sigma_schedule, self.steps_default if steps is None else int(steps),
                   generator=generator, device=device, callback=on_step, cond=cond, **options)
        return ((x.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def novel_views(self, scene: torch.Tensor, cameras: CamerasBase, image_hw: Sequence[int],
                    **sampler_args) -> Dict[str, torch.Tensor]:
        """Denoised views of S scenes (S, K, L) from V cameras each (S*V, scene-major), one sampler
        call for all S*V views; ``sampler_args`` as ``denoise_views``.

        Returns images (S, V, 3, H, W) and the field's RGB render ``field_rgb`` (S, V, 3, H, W).
        """
        s = scene.shape[0]
        out = self.render_latents(scene, cameras, self._latent_hw(image_hw), chunk_size=self.chunk_size_eval)
        latent = out["latent"]  # (S*V, C, h, w)
        images = self.denoise_views(latent, latent.shape[0], image_hw, device=scene.device, **sampler_args)
        field_rgb = self.upsample(latent[:, :3].float(), image_hw).clamp(0, 1)
        per_scene = lambda x: x.reshape(s, -1, *x.shape[1:])  # noqa: E731
        return {"images": per_scene(images), "field_rgb": per_scene(field_rgb)}

    @torch.no_grad()
    def generate_path(self, scene: torch.Tensor, path_cameras: CamerasBase, image_hw: Sequence[int],
                      context_views: Optional[int] = None, callback=None, **sampler_args) -> Dict[str, torch.Tensor]:
        """Autoregressive sampling along a camera path of V cameras per scene (S*V, scene-major).

        View i is conditioned on the scene's K input views, the previous generated view and up to
        ``context_views`` (default ``path_context_views``) earlier generated ones (``path_context``);
        each generated view is encoded and joins the scene. ``callback(i, images (S, 3, H, W))``
        after each view.
        Returns images and field_rgb (S, V, 3, H, W), and the grown scene (S, K + V, L).
        """
        s, n_inputs = scene.shape[:2]
        v = len(path_cameras) // s
        k = self.path_context_views if context_views is None else int(context_views)
        images, field_rgb = [], []
        for i in range(v):
            cams = path_cameras[[b * v + i for b in range(s)]]  # (S,) the i-th camera of every scene
            out = self.novel_views(scene[:, path_context(i, n_inputs, k)], cams, image_hw, **sampler_args)
            images.append(out["images"][:, 0])
            field_rgb.append(out["field_rgb"][:, 0])
            scene = torch.cat([scene, self.encode(images[-1][:, None], cams)], dim=1)  # (S, K + i + 1, L)
            if callback is not None:
                callback(i, images[-1])
        return {"images": torch.stack(images, 1), "field_rgb": torch.stack(field_rgb, 1), "scene": scene}

    # ---------------------------------------------------------------- model protocol

    @property
    def scene_extent(self) -> float:
        return self.volume_extent

    @property
    def render_chunk_size(self) -> int:
        return self.chunk_size_eval

    @property
    def input_fg_threshold(self) -> Optional[float]:
        return None  # input views are used as they are (SRN: already on white)

    @property
    def background(self) -> Tuple[float, float, float]:
        return tuple(float(c) for c in self.bg_color)  # type: ignore[return-value]

    @property
    def can_sample(self) -> bool:
        return not self.cannot_sample_reason

    @property
    def cannot_sample_reason(self) -> str:
        if self.denoiser_loss_weight == 0:
            return ("a field-only stage (denoiser_loss_weight=0): its denoiser is untrained; use "
                    "visualize_reconstruction.py")
        if self.no_cond_prob == 0:
            return ("trained without the no-conditioning token (no_cond_prob=0): it needs input views; use "
                    "visualize_reconstruction.py or GenvsModel.generate_path")
        return ""

    @torch.no_grad()
    def sample(self, n: int, *, cond: Any = None, sampler: Optional[str] = None, steps: Optional[int] = None,
               eta: float = 0.0, guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None,
               callback=None, device: Optional[torch.device] = None, **sampler_kwargs) -> torch.Tensor:
        """n scene codes (n, K, L).

        ``cond`` None (what generate_samples passes): a first view is sampled unconditionally (the
        no-conditioning token) and lifted as if seen from the free-view camera (``free_view_*``).
        ``cond`` = {"rgb": (n, K, 3, H, W), "cameras": n*K cameras[, "path_cameras": n*V cameras]}:
        the given views, grown by the views ``generate_path`` samples along the path when given.
        ``callback(i, x, x0)`` gets x0 as images in [0, 1]. ``eta`` is not used (EDM samplers).
        """
        device = torch.device(device) if device is not None else self.tokens.device
        args = dict(sampler=sampler, steps=steps, guidance_scale=guidance_scale, generator=generator,
                    **sampler_kwargs)
        if cond is None:
            if not self.can_sample:
                raise RuntimeError(f"GenvsModel cannot sample without input views: {self.cannot_sample_reason}")
            hw = (self.image_size, self.image_size)
            image = self.denoise_views(None, n, hw, callback=callback, device=device, **args)  # (n, 3, H, W)
            camera = turntable_cameras(1, self.free_view_elevation_deg, self.free_view_distance,
                                       focal_length=self.free_view_focal, device=device)
            cameras = camera[[0] * n]  # every free view seen from the same camera
            return self.encode(image[:, None], cameras)  # (n, 1, L)
        scene = self.encode(cond["rgb"].to(device), cond["cameras"].to(device))
        if cond.get("path_cameras") is None:
            return scene
        return self.generate_path(scene, cond["path_cameras"].to(device), cond["rgb"].shape[-2:], **args)["scene"]

    def sampling_accelerated(self, enabled: bool = True):
        """The EDM U-Net replayed as a CUDA graph while sampling (no-op off CUDA)."""
        return graphed_unet(self, enabled)

    @torch.no_grad()
    def render_samples(self, samples: torch.Tensor, cameras: Optional[CamerasBase], image_size: Sequence[int],
                       chunk_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """Frames of B scene codes (B, K, L) from B*V cameras: the field's RGB (upsampled from the
        latent resolution), or with ``render_denoised`` views denoised from it (seeded, so the same
        call renders the same frames). Images (B, 3, H, W) in [0, 1] (sampler x0 estimates) are shown
        as they are. Returns rgb (B, V, 3, H, W); scenes also depth and opacity (B, V, 1, H, W).
        """
        hw = (int(image_size[0]), int(image_size[1]))
        b = samples.shape[0]
        if samples.ndim == 4:  # an image: the same frame from every camera
            v = 1 if cameras is None else max(1, len(cameras) // b)
            return {"rgb": self.upsample(samples.float(), hw).clamp(0, 1)[:, None].expand(-1, v, -1, -1, -1)}
        if cameras is None:
            raise ValueError("GenvsModel.render_samples needs cameras for scene codes (B, K, L)")
        out = self.render_latents(samples, cameras, self._latent_hw(hw),
                                  chunk_size=chunk_size or self.chunk_size_eval)
        if self.render_denoised:
            generator = torch.Generator(device=samples.device).manual_seed(0)
            rgb = self.denoise_views(out["latent"], out["latent"].shape[0], hw, generator=generator,
                                     device=samples.device)
        else:
            rgb = self.upsample(out["latent"][:, :3].float(), hw).clamp(0, 1)
        per_scene = lambda x: x.reshape(b, -1, *x.shape[1:])  # noqa: E731
        return {"rgb": per_scene(rgb), "depth": per_scene(self.upsample(out["depth"].float(), hw)),
                "opacity": per_scene(self.upsample(out["opacity"].float(), hw))}

    @torch.no_grad()
    def reconstruct_from_views(self, rgb: torch.Tensor, fg: torch.Tensor, cameras: CamerasBase,
                               crop: Optional[torch.Tensor] = None, *, denoise_from_t: int = 0,
                               denoise_steps: int = 10, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The scene code (S, K, L) of input views rgb (S, K, 3, H, W) and their S*K cameras.

        GeNVS denoises views, not scenes: ``denoise_from_t`` must be 0 (set ``render_denoised`` for
        denoised renders instead).
        """
        if denoise_from_t > 0:
            raise ValueError(f"denoise_from_t={denoise_from_t}: GenvsModel denoises rendered views, not the scene; "
                             f"use denoise_from_t=0 with model render_denoised=true")
        return self.encode(rgb, cameras)
