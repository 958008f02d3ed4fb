"""ViewFusionModel: composable diffusion over any number of unordered views (Spiegl et al. 2024).

A target view is denoised once per conditioning view, in parallel, and the per-view noise predictions
are composed with learnt per-pixel weights, so that any number of pose-free views conditions one target:

    1. pairs:    for every (sample b, conditioning view v): [cond_v, x_t] (6 channels), the noise level
                 gamma (the continuous alpha_bar, SR3-style) and the sin / cos of the target's viewing
                 angle relative to view v (or the target's absolute angle, ``angle_mode``)
    2. U-Net:    one batched call over all B*V pairs (padding views are left out of the call) -> 6
                 channels per pair: a noise prediction eps_v (3) and weight logits l_v (3)
    3. compose:  eps = sum_v softmax_v(l_v) eps_v per pixel and channel, padding views at -inf (exactly
                 zero weight); the "no weighting" ablation (``weighting=False``) takes the plain mean
    4. loss:     || eps - eps_true ||^2 on the composed prediction (DDPM eq. 14)

Training draws gamma uniformly between consecutive alpha_bars of the training schedule (SR3 / the
paper: linear betas 1e-6 .. 0.01 over 2000 steps); sampling runs any sampler of ``holo3d.diffusion``
on the test schedule (linear 1e-4 .. 0.09 over 1000 steps). As the network sees gamma itself, not a
step index, the two schedules need not agree.

Batches: S scenes x N frames (``SceneBatch``); frame 0 of each scene is the target, frames
1 .. min(N - 1, max_views) are the conditioning views, of which a random prefix (1 .. V views,
``random_view_mask``) is kept per sample in training, so one batch mixes view counts at static shapes.
View angles come from ``meta["view_azimuth_elevation"]`` (the NMR source) or the cameras.

Sampling: ``sample(n, cond=...)`` with ``cond`` a dict (see ``ViewFusionModel.sample``); ``turntable``
generates views autoregressively, each joining the conditioning set; ``view_weights`` returns the
per-view weight maps. Samples are images (n, 3, H, W) in [0, 1].

Shapes: B samples (= S scenes), V conditioning views, H W image, M = number of real (sample, view) pairs.
"""

from __future__ import annotations

from dataclasses import field
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import get_default_args_field, registry
from torch import nn

from holo3d.data.scene_batch import SceneBatch, random_view_mask, view_angles
from holo3d.diffusion import VPDiffusion, alpha_bar_at, sampler_spec, v_from_x0_eps
from holo3d.diffusion import sample as diffusion_sample
from holo3d.models.cuda_graph_unet import graphed_unet
from holo3d.models.protocol import GenerativeModel, OutputKind, TrainableModel
from holo3d.models.unet2d import UNet2D

ANGLE_MODES = ("relative", "absolute")
ANGLE_FEATURES = 4  # sin / cos of (azimuth, elevation)
AZEL_KEY = "view_azimuth_elevation"  # holo3d.data.nmr's per-frame view descriptor in FrameData.meta
COND_KEYS = ("views", "view_angles", "target_angles")


# ----------------------------------------------------------------------------- pure pieces


def angle_features(target_azel: torch.Tensor, view_azel: torch.Tensor, mode: str) -> torch.Tensor:
    """sin / cos of the target's angle relative to each view (or absolute): (B, 2), (B, V, 2) -> (B, V, 4).

    Relative: the (azimuth, elevation) differences target - view; absolute: the target's own angles.
    """
    target = target_azel[:, None].to(view_azel.dtype)  # (B, 1, 2)
    angle = target - view_azel if mode == "relative" else target.expand_as(view_azel)  # (B, V, 2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)  # (B, V, 4)


def compose_views(
    eps_views: torch.Tensor, logits: torch.Tensor, view_mask: torch.Tensor, weighting: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel composition of per-view noise predictions (ViewFusion eq. 6), in float32.

    Args:
        eps_views, logits: (B, V, C, H, W).  view_mask: (B, V) bool, True for real views (>= 1 each).
        weighting: softmax over the views of the logits; False: the plain mean of the real views.
    Returns:
        eps (B, C, H, W) and weights (B, V, C, H, W) (exactly 0 at padding views, summing to 1).
    """
    mask = view_mask[:, :, None, None, None]  # (B, V, 1, 1, 1)
    if weighting:
        weights = torch.softmax(logits.float().masked_fill(~mask, float("-inf")), dim=1)
    else:
        weights = (mask / view_mask.sum(1).clamp_min(1)[:, None, None, None, None]).float()
        weights = weights.expand(eps_views.shape)
    # masked_fill, not a multiply: padding content (even non-finite) must contribute exactly nothing
    eps = (weights * eps_views.float().masked_fill(~mask, 0.0)).sum(dim=1)  # (B, C, H, W)
    return eps, weights


class PairPacking(NamedTuple):
    """Which (sample, view) pairs go through the U-Net: ``index`` (M_pad,) long flat indices into the
    B*V pairs (None: all of them) of which the first ``real`` are the real pairs."""

    index: Optional[torch.Tensor]
    real: int


def pair_packing(view_mask: torch.Tensor, bucket: int = 1) -> PairPacking:
    """The packing of view_mask (B, V) bool (read on the host: pass the host copy when there is one).

    The M real pairs are padded to a multiple of ``bucket`` by repeating the first one, so that the
    U-Net's batch takes few distinct sizes while view counts vary (each new size costs cuDNN a fresh
    algorithm choice, and a compiled or graphed U-Net a new capture); when the padded count would
    reach B*V, every pair runs (the padding views' outputs are masked in ``compose_views``).
    """
    flat = view_mask.detach().flatten().cpu()  # (B*V,)
    real, bucket = int(flat.sum()), max(bucket, 1)
    padded = -(-real // bucket) * bucket
    if padded >= flat.numel():
        return PairPacking(None, flat.numel())
    index = flat.nonzero().squeeze(1)  # (M,)
    index = torch.cat([index, index[:1].expand(padded - real)])  # (M_pad,)
    return PairPacking(index.pin_memory() if torch.cuda.is_available() else index, real)


class ViewConditionedUNet(nn.Module):
    """The denoiser leaf: a UNet2D over [cond view, noisy target] with the noise level and the angle
    features packed in one (M, 1 + 4) vector, so that the call has the (x, t) form that
    ``cuda_graph_unet.graphed_unet`` replays as a CUDA graph.

    forward(x (M, 6, H, W), level_and_angles (M, 5)) -> (M, 6, H, W): eps (3) and weight logits (3).
    """

    def __init__(self, **unet_args: Any):
        super().__init__()
        self.net = UNet2D(in_channels=6, out_channels=6, cond_dim=ANGLE_FEATURES, **unet_args)

    def forward(self, x: torch.Tensor, level_and_angles: torch.Tensor) -> torch.Tensor:
        return self.net(x, level_and_angles[:, 0], level_and_angles[:, 1:])


def _drop_unet_derived(args: DictConfig) -> None:
    # Channels and the condition width are ViewFusion's; the paper's small model is the default.
    for key in ("in_channels", "out_channels", "cond_dim", "image_size"):
        args.pop(key, None)


# ----------------------------------------------------------------------------- the model


@registry.register
class ViewFusionModel(ImplicitronModelBase, TrainableModel, GenerativeModel):  # pyre-ignore[13]
    """ViewFusion as a registered model (see the module docstring for the method).

    Fields (config keys):
        image_size: side of the (square) images; places the U-Net's attention.
        max_views: conditioning views per training sample at most (the paper: 6); the loader's
            frames_per_scene - 1 caps it.
        min_views: fewest conditioning views a training sample keeps (random prefix mask).
        angle_mode: "relative" (target vs. each conditioning view) or "absolute" (target's angles).
        weighting: learnt per-pixel softmax weights; False is the "no weighting" ablation (mean).
        train_num_steps / train_beta_start / train_beta_end: linear training schedule (gammas drawn
            between its consecutive alpha_bars).
        test_num_steps / test_beta_start / test_beta_end: linear sampling schedule.
        sample_min_alpha_bar: sampling skips the test schedule's timesteps with alpha_bar below this
            (0: all of them, as the paper); e.g. 1e-4 spends few-step samplers' steps where the
            signal is (the paper's test schedule is at alpha_bar < 1e-4 after ~45 % of its steps).
        noise_level_scale: gamma is multiplied by this before the U-Net's sinusoidal embedding (its
            frequencies suit inputs spread over ~[0, 1000]).
        clip_x0: clamp x0 estimates to [-1, 1] while sampling.
        prediction: what the composed network output is: "eps" (the paper) or "v" (Salimans & Ho
            2022). With eps, x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) multiplies the eps error by
            1/sqrt(ab) (16x at ab = 0.004): measured on a small CPU model that denoised well at
            ab = 0.7 (23 dB) but gave 5 dB x0 estimates at ab = 0.004, so sampling from pure noise
            failed early in training; v keeps x0 estimates bounded at every noise level.
        pair_bucket: the U-Net's batch of real (sample, view) pairs is padded to a multiple of this
            (``pair_packing``), so varying view counts give few distinct batch sizes; 1: no padding.
        sampler_default / steps_default: what ``sample`` uses when not told (steps 0: the sampler's
            own default).
        unet_args: the U-Net (the paper's small model: 64 x [1, 2, 3, 5], 3 res blocks, attention at 16).
    """

    image_size: int = 64
    max_views: int = 6
    min_views: int = 1
    angle_mode: str = "relative"
    weighting: bool = True
    train_num_steps: int = 2000
    train_beta_start: float = 1e-6
    train_beta_end: float = 0.01
    test_num_steps: int = 1000
    test_beta_start: float = 1e-4
    test_beta_end: float = 0.09
    sample_min_alpha_bar: float = 0.0
    noise_level_scale: float = 1000.0
    clip_x0: bool = True
    prediction: str = "eps"
    pair_bucket: int = 16
    sampler_default: str = "ddim"
    steps_default: int = 50
    unet_args: DictConfig = get_default_args_field(UNet2D, _hook=_drop_unet_derived)
    log_vars: List[str] = field(default_factory=lambda: ["objective", "mean_views", "gamma"])
    output_kind = OutputKind.IMAGES

    def __post_init__(self) -> None:
        self._check_config()
        self.unet = ViewConditionedUNet(image_size=self.image_size, **self.unet_args)
        if self.image_size % self.unet.net.downsample_factor:
            raise ValueError(f"ViewFusionModel.image_size={self.image_size} must be divisible by the U-Net's "
                             f"downsample factor {self.unet.net.downsample_factor} (unet_args.channel_mult)")
        self.train_diffusion = VPDiffusion(self.train_num_steps, "linear", self.train_beta_start,
                                           self.train_beta_end, prediction=self.prediction)
        self.test_diffusion = VPDiffusion(self.test_num_steps, "linear", self.test_beta_start,
                                          self.test_beta_end, prediction=self.prediction,
                                          clip_x0=1.0 if self.clip_x0 else None)

    def _check_config(self) -> None:
        if self.angle_mode not in ANGLE_MODES:
            raise ValueError(f"ViewFusionModel.angle_mode={self.angle_mode!r}: expected one of {ANGLE_MODES}")
        if not 1 <= self.min_views <= self.max_views:
            raise ValueError(f"ViewFusionModel.min_views={self.min_views}, max_views={self.max_views}: "
                             "need 1 <= min_views <= max_views")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"ViewFusionModel.prediction={self.prediction!r}: expected 'eps' or 'v'")
        if self.pair_bucket < 1:
            raise ValueError(f"ViewFusionModel.pair_bucket={self.pair_bucket} must be >= 1")
        if self.train_num_steps < 2:
            raise ValueError(f"ViewFusionModel.train_num_steps={self.train_num_steps} must be >= 2")
        if not 0.0 <= self.sample_min_alpha_bar < 1.0:
            raise ValueError(f"ViewFusionModel.sample_min_alpha_bar={self.sample_min_alpha_bar} must be in [0, 1)")
        sampler_spec(self.sampler_default)  # names the valid samplers when misspelt

    @property
    def min_frames_per_scene(self) -> int:
        """A target and at least min_views conditioning views."""
        return self.min_views + 1

    # ---------------------------------------------------------------- the denoiser

    def composed_eps(
        self,
        x_t: torch.Tensor,
        gamma: torch.Tensor,
        views: torch.Tensor,
        features: torch.Tensor,
        view_mask: torch.Tensor,
        packing: Optional[PairPacking] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Composed noise prediction of x_t (B, 3, H, W) at noise level gamma (B,) given conditioning
        views (B, V, 3, H, W) in [-1, 1], angle features (B, V, 4) and view_mask (B, V) bool.

        ``packing``: ``pair_packing(view_mask)`` when the caller has it (computed from a host copy of
        the mask, or once per sampling chain); otherwise it is computed here (one host read of the mask).
        Returns eps (B, 3, H, W) float32 and the weights (B, V, 3, H, W) of ``compose_views``.
        """
        b, v = views.shape[:2]
        if packing is None:
            packing = pair_packing(view_mask, self.pair_bucket)
        pairs = torch.cat([views, x_t[:, None].to(views.dtype).expand(-1, v, -1, -1, -1)], dim=2)  # (B, V, 6, H, W)
        level = (gamma.float() * self.noise_level_scale)[:, None, None].expand(b, v, 1)  # (B, V, 1)
        level_and_angles = torch.cat([level, features.float()], dim=-1)  # (B, V, 5)
        out = self._unet_on_pairs(pairs, level_and_angles, packing)  # (B, V, 6, H, W)
        return compose_views(out[:, :, :3], out[:, :, 3:], view_mask, self.weighting)

    def _unet_on_pairs(self, pairs: torch.Tensor, level_and_angles: torch.Tensor,
                       packing: PairPacking) -> torch.Tensor:
        """The U-Net on the pairs that ``packing`` selects; the others get zeros (masked later).

        Packing the real pairs (M of B*V) skips the padding's compute (~40 % of it with prefix masks
        drawn from 1..6). (B, V, 6, H, W) in, (B, V, 6, H, W) out.
        """
        flat_pairs, flat_levels = pairs.flatten(0, 1), level_and_angles.flatten(0, 1)  # (B*V, ...)
        if packing.index is None:
            out = self.denoise_pairs(flat_pairs, flat_levels)  # (B*V, 6, H, W)
        else:
            index = packing.index.to(pairs.device, non_blocking=True)  # (M_pad,)
            packed = self.denoise_pairs(flat_pairs.index_select(0, index), flat_levels.index_select(0, index))
            out = packed.new_zeros(flat_pairs.shape[0], *packed.shape[1:])  # (B*V, 6, H, W)
            out = out.index_copy(0, index[: packing.real], packed[: packing.real])
        return out.view(*pairs.shape[:2], *out.shape[1:])

    def denoise_pairs(self, pairs: torch.Tensor, level_and_angles: torch.Tensor) -> torch.Tensor:
        """The U-Net on M packed pairs: (M, 6, H, W), (M, 5) -> (M, 6, H, W). Tensor-only, so it is
        ``compile_target``: the mask, the packing and its host reads stay eager, and the compiled
        call sees one batch size per multiple of ``pair_bucket``."""
        return self.unet(pairs, level_and_angles)

    def compile_target(self):
        """``denoise_pairs``, for the training loop's ``compile_model``."""
        return self.denoise_pairs

    def draw_gamma(self, n: int, device: torch.device) -> torch.Tensor:
        """Training noise levels (n,) float32: t ~ U{1..T-1}, gamma ~ U(alpha_bar_t, alpha_bar_{t-1})
        (SR3's continuous noise-level sampling, which ViewFusion trains with)."""
        alpha_bars = self.train_diffusion.schedule(device)  # (T,) float64
        t = torch.randint(1, self.train_num_steps, (n,), device=device)
        u = torch.rand(n, device=device, dtype=torch.float64)
        return (alpha_bars[t] + u * (alpha_bars[t - 1] - alpha_bars[t])).float()

    # ---------------------------------------------------------------- training

    def training_terms(
        self,
        target: torch.Tensor,
        views: torch.Tensor,
        target_azel: torch.Tensor,
        view_azel: torch.Tensor,
        view_mask: torch.Tensor,
        packing: Optional[PairPacking] = None,
    ) -> Dict[str, torch.Tensor]:
        """The eps- (or v-) MSE objective of one batch: target (B, 3, H, W) and views (B, V, 3, H, W) in [0, 1],
        angles (B, 2) / (B, V, 2) in radians, view_mask (B, V) bool (``packing`` as ``composed_eps``).
        Returns objective and log_vars."""
        x0 = target * 2 - 1  # (B, 3, H, W)
        gamma = self.draw_gamma(x0.shape[0], x0.device)  # (B,)
        eps = torch.randn_like(x0, dtype=torch.float32)
        g = gamma[:, None, None, None]
        x_t = g.sqrt() * x0.float() + (1 - g).sqrt() * eps  # SR3 / DDPM eq. 4 at gamma
        features = angle_features(target_azel, view_azel, self.angle_mode)  # (B, V, 4)
        out, _ = self.composed_eps(x_t, gamma, views * 2 - 1, features, view_mask, packing)
        # The composition is linear, so it composes v predictions as it does eps ones.
        target_out = eps if self.prediction == "eps" else v_from_x0_eps(x0.float(), eps, gamma)
        loss = F.mse_loss(out, target_out)
        return {"objective": loss, "mean_views": view_mask.float().sum(1).mean(), "gamma": gamma.mean()}

    def forward(
        self,
        *,
        image_rgb: torch.Tensor,
        camera: Any = None,
        sequence_name: Optional[List[str]] = None,
        meta: Optional[Mapping[str, Any]] = None,
        evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION,
        iteration: Optional[int] = None,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """Implicitron model contract: S*N frames, scene-major (frame 0 target, 1..V conditioning).

        Training keeps a random prefix of 1..V conditioning views per scene; evaluation keeps all.
        """
        batch, azel = self._scenes(image_rgb, camera, sequence_name, meta)
        n_views = min(batch.n_frames - 1, self.max_views)
        if n_views < 1:
            raise ValueError(f"ViewFusionModel: scenes of {batch.n_frames} frames; it needs a target and at "
                             "least one conditioning view (raise the data loader's frames_per_scene)")
        if evaluation_mode == EvaluationMode.TRAINING:
            mask = random_view_mask(batch.n_scenes, n_views, min(self.min_views, n_views))
        else:
            mask = torch.ones(batch.n_scenes, n_views, dtype=torch.bool)
        images = batch.image_rgb
        packing = pair_packing(mask, self.pair_bucket)  # from the host mask: no device sync
        return self.training_terms(images[:, 0], images[:, 1 : n_views + 1], azel[:, 0],
                                   azel[:, 1 : n_views + 1], mask.to(images.device), packing)

    def _scenes(self, image_rgb, camera, sequence_name, meta) -> Tuple[SceneBatch, torch.Tensor]:
        """The (S, N, ...) view of the batch and the view angles (S, N, 2)."""
        if image_rgb is None:
            raise ValueError("ViewFusionModel.forward needs image_rgb (a target and conditioning views)")
        names = sequence_name if sequence_name is not None else ["scene"] * image_rgb.shape[0]
        frames = SimpleNamespace(image_rgb=image_rgb, camera=camera, fg_probability=None, mask_crop=None,
                                 depth_map=None, sequence_name=names)
        batch = SceneBatch.from_frame_data(frames)
        if meta is not None and AZEL_KEY in meta:
            azel = torch.as_tensor(meta[AZEL_KEY]).to(image_rgb.device, torch.float32)  # (S*N, 2)
        elif camera is not None:
            azel = view_angles(camera).to(image_rgb.device, torch.float32)  # (S*N, 2)
        else:
            raise ValueError(f"ViewFusionModel.forward needs view angles: meta[{AZEL_KEY!r}] or camera")
        return batch, azel.view(batch.n_scenes, batch.n_frames, 2)

    # ---------------------------------------------------------------- sampling (GenerativeModel)

    @property
    def scene_extent(self) -> float:
        return 0.0  # images: no camera path

    @property
    def can_sample(self) -> bool:
        """False: every sample is conditioned on input views, which ``conditions()`` cannot provide
        (generate_samples and the training monitor's previews have none); use ``sample(n, cond=...)``,
        ``turntable`` or ``python -m holo3d.bench.viewfusion_run``."""
        return False

    @property
    def cannot_sample_reason(self) -> str:
        return ("a view-conditioned model (ViewFusion): it generates views of an object from input views, "
                "which generate_samples cannot supply; call model.sample(n, cond={'views', 'view_angles', "
                "'target_angles'}) or model.turntable(...), or run python -m holo3d.bench.viewfusion_run")

    def sampling_schedule(self) -> torch.Tensor:
        """The test schedule's alpha_bars (T',) float64, cut where alpha_bar < sample_min_alpha_bar."""
        alpha_bars = self.test_diffusion.alpha_bars
        keep = int((alpha_bars >= self.sample_min_alpha_bar).sum())
        return alpha_bars[: max(keep, 2)]

    def checked_cond(self, cond: Any, n: int, device: torch.device) -> Dict[str, torch.Tensor]:
        """``cond`` validated and moved to ``device`` (see ``sample`` for the keys)."""
        if not isinstance(cond, Mapping) or any(key not in cond for key in COND_KEYS):
            got = sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__
            raise ValueError(f"ViewFusionModel.sample: cond must be a dict with keys {COND_KEYS}; got {got}")
        views = torch.as_tensor(cond["views"]).to(device, torch.float32)
        size = (self.image_size, self.image_size)
        if views.ndim != 5 or views.shape[0] != n or views.shape[2] != 3 or tuple(views.shape[3:]) != size:
            raise ValueError(f"ViewFusionModel.sample: cond['views'] has shape {tuple(views.shape)}; expected "
                             f"({n}, V, 3, {size[0]}, {size[1]})")
        v = views.shape[1]
        out = {"views": views,
               "view_angles": torch.as_tensor(cond["view_angles"]).to(device, torch.float32),
               "target_angles": torch.as_tensor(cond["target_angles"]).to(device, torch.float32)}
        mask = cond.get("view_mask")
        out["view_mask"] = (torch.ones(n, v, dtype=torch.bool) if mask is None else torch.as_tensor(mask)).to(device)
        for key, shape in (("view_angles", (n, v, 2)), ("target_angles", (n, 2)), ("view_mask", (n, v))):
            if tuple(out[key].shape) != shape:
                raise ValueError(f"ViewFusionModel.sample: cond[{key!r}] has shape {tuple(out[key].shape)}; "
                                 f"expected {shape}")
        if not bool(out["view_mask"][:, 0].all()):
            raise ValueError("ViewFusionModel.sample: cond['view_mask'] must keep view 0 of every sample")
        return out

    def eps_fn(self, cond: Dict[str, torch.Tensor]):
        """``model_fn(x_t, t) -> eps`` over the test schedule for checked ``cond`` (the samplers' network)."""
        views = cond["views"] * 2 - 1  # (n, V, 3, H, W)
        features = angle_features(cond["target_angles"], cond["view_angles"], self.angle_mode)  # (n, V, 4)
        alpha_bars = {}
        packing = pair_packing(cond["view_mask"], self.pair_bucket)  # once per chain, not per step

        def model_fn(x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
            if t.device not in alpha_bars:
                alpha_bars[t.device] = self.test_diffusion.alpha_bars.to(t.device)
            gamma = alpha_bar_at(t, alpha_bars[t.device])  # (n,) exact for fractional t too
            eps, _ = self.composed_eps(x_t, gamma, views.to(x_t.dtype), features, cond["view_mask"], packing)
            return eps.to(x_t.dtype)

        return model_fn

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        cond: Any = None,
        sampler: Optional[str] = None,
        steps: Optional[int] = None,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        generator: Optional[torch.Generator] = None,
        callback=None,
        device: Optional[torch.device] = None,
        **sampler_kwargs,
    ) -> torch.Tensor:
        """n target views (n, 3, H, W) in [0, 1] given their conditioning views.

        ``cond`` (a dict; tensors on any device):
            views: (n, V, 3, H, W) in [0, 1], any V >= 1 (unordered).
            view_angles: (n, V, 2) (azimuth, elevation) of each view in radians (``view_angles``).
            target_angles: (n, 2) the angles of the views to generate.
            view_mask: optional (n, V) bool, True for real views (a prefix per sample; view 0 kept),
                so samples with different view counts share one call.
        ``sampler`` / ``steps``: any name of ``holo3d.diffusion.SAMPLERS`` (default ``sampler_default``
        / ``steps_default``) over the test schedule (``sampling_schedule``).
        """
        if guidance_scale != 1.0:
            raise ValueError("ViewFusionModel has no classifier-free guidance: guidance_scale must be 1")
        device = torch.device(device) if device is not None else next(self.parameters()).device
        cond = self.checked_cond(cond, n, device)
        name = sampler or self.sampler_default
        steps = steps if steps is not None else (self.steps_default or None)
        options = {"eta": eta} if sampler_spec(name).accepts("eta") else {}
        schedule = self.sampling_schedule()
        x = self._run_sampler(name, cond, (n, 3, self.image_size, self.image_size), schedule, steps,
                                       generator=generator, callback=callback, device=device,
                                       **options, **sampler_kwargs)
        return ((x.float() + 1) / 2).clamp(0, 1)

    def _run_sampler(self, name, cond, shape, schedule, steps, **kwargs) -> torch.Tensor:
        """``holo3d.diffusion.sample`` of ``eps_fn(cond)`` over ``schedule`` (steps capped to its length)."""
        if steps is not None and sampler_spec(name).vp_only:
            steps = min(int(steps), len(schedule))
        denoise = self.test_diffusion.denoiser(self.eps_fn(cond))
        return diffusion_sample(name, denoise, shape, schedule, steps, **kwargs)

    @torch.no_grad()
    def turntable(
        self,
        views: torch.Tensor,
        view_azel: torch.Tensor,
        target_azel: torch.Tensor,
        *,
        max_cond_views: int = 0,
        generator: Optional[torch.Generator] = None,
        **sample_kwargs,
    ) -> torch.Tensor:
        """Autoregressive generation: views (n, K, 3, H, W) in [0, 1] with angles (n, K, 2) condition
        the first target (angles target_azel (n, T, 2)); every generated view joins the conditioning
        set of the next. ``max_cond_views`` > 0 keeps the K inputs plus the most recent generated
        views up to that many. ``sample_kwargs`` go to ``sample``. Returns (n, T, 3, H, W) in [0, 1].
        """
        cond_views, cond_azel, frames = list(views.unbind(1)), list(view_azel.unbind(1)), []
        k = len(cond_views)
        for i in range(target_azel.shape[1]):
            keep = list(range(len(cond_views)))
            if max_cond_views > 0 and len(keep) > max_cond_views:
                keep = keep[:k] + keep[len(keep) - max(max_cond_views - k, 0):]
            cond = {"views": torch.stack([cond_views[j] for j in keep], 1),
                    "view_angles": torch.stack([cond_azel[j] for j in keep], 1),
                    "target_angles": target_azel[:, i]}
            frame = self.sample(views.shape[0], cond=cond, generator=generator, **sample_kwargs)
            frames.append(frame)
            cond_views.append(frame.to(views.device))
            cond_azel.append(target_azel[:, i].to(view_azel.device))
        return torch.stack(frames, dim=1)  # (n, T, 3, H, W)

    @torch.no_grad()
    def view_weights(self, cond: Any, target: torch.Tensor, alpha_bar: float = 0.5,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-view weight maps (n, V, H, W) (mean over channels) when denoising ``target`` (n, 3, H, W)
        in [0, 1] noised to ``alpha_bar``: which conditioning view the model trusts where."""
        cond = self.checked_cond(cond, target.shape[0], target.device)
        x0 = target.float() * 2 - 1
        noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator else x0.device)
        gamma = torch.full((x0.shape[0],), float(alpha_bar), device=x0.device)
        x_t = alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise.to(x0.device)
        features = angle_features(cond["target_angles"], cond["view_angles"], self.angle_mode)
        _, weights = self.composed_eps(x_t, gamma, cond["views"] * 2 - 1, features, cond["view_mask"])
        return weights.mean(dim=2)  # (n, V, H, W)

    def sampling_accelerated(self, enabled: bool = True):
        """The U-Net replayed as a CUDA graph while sampling (no-op off CUDA)."""
        return graphed_unet(self, enabled)

    @torch.no_grad()
    def render_samples(self, samples, cameras, image_size, chunk_size=None) -> Dict[str, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] as one frame each: rgb (B, 1, 3, H', W') at ``image_size``."""
        rgb = samples.float()
        if tuple(rgb.shape[-2:]) != tuple(image_size):
            rgb = F.interpolate(rgb, size=tuple(image_size), mode="bilinear", align_corners=False)
        return {"rgb": rgb.clamp(0, 1)[:, None]}  # (B, 1, 3, H, W)
