"""System figures: the training step and the sampler of every holo3d system besides HoloDiffusion.

    python -m holo3d.bench --model genvs                      # configs/genvs_srn_cars.yaml on the GPU
    python -m holo3d.bench --model viewfusion --scenes 8,32   # configs/viewfusion_nmr.yaml
    python -m holo3d.bench --model voxel_ldm --only train     # configs/voxel_ldm.yaml
    python -m holo3d.bench --model distill                    # distill.py's iteration on a GeNVS denoiser
    python -m holo3d.bench --model genvs --cpu                # tiny variant on CPU (CI: does it run?)

Each system is built from its real config (``compose_config``; ``--cpu`` shrinks widths and sizes with
the dotted overrides of ``TINY_OVERRIDES``, recorded in every line) with random weights, and fed a
batch drawn on the device with the shapes its configured data source yields (drawn, not read: the
sources' built-in data is rendered on first use, which takes minutes and would dominate the run):

    genvs       FrameData, scenes_per_batch x frames_per_scene (1 target + 1 input) at image_size
    viewfusion  FrameData, scenes_per_batch x frames_per_scene (target + up to 6 views) at image_size,
                with the NMR source's meta["view_azimuth_elevation"]
    voxel_ldm   TensorBatch of occupancy grids (B, 1, R, R, R) (random balls) and labels; the frozen
                stage-1 autoencoder (voxel_ae.yaml's architecture) has random weights, built in memory
                instead of being read from ``autoencoder_exp_dir`` (no stage-1 checkpoint needed)
    distill     one SparseFusion-style iteration of ``holo3d.sample.distillation`` (DistillConfig's
                defaults) on a GenvsModel denoiser of genvs_srn_cars.yaml with K = n_input_views
                input views on an orbit

Figures, one JSON line each through the Reporter (value in seconds):

    system.train   one training step: the loop's own step function for the config (``sync_free_step``
                   where the loop has that switch on, else ``optimization_step``; config field
                   ``train_step``) under an Accelerator: forward under autocast, backward, clipping,
                   Adam, schedule, EMA, with the config's optimizer, clipping and EMA; for distill
                   one iteration (render, denoise, backward, Adam) as ``distill_scene`` runs it.
                   Fields: model, item, items_per_step, items_per_s, step_s, peak_memory_gib, flops,
                   achieved_tflops, peak_tflops, mfu (null with mfu_reason when no peak is known).
    system.sample  ``model.sample(n, cond=..., sampler, steps)`` (GenerativeModel) with conditions from
                   a batch where the model needs them (GeNVS: each scene's input view and one target
                   camera; ViewFusion: the conditioning views and angles; voxel LDM: the first
                   category's label via ``conditions``); for distill the seconds per iteration.
                   n defaults to the training batch (--sample-n), steps to the config's sampler
                   default (--sample-steps; --cpu: 2), after a 1-step warm-up call.
                   Fields: model, item, n, sampler, steps, sample_s, items_per_s, peak_memory_gib, what.

MFU: the FLOPs of one training step (forward + backward + optimizer step) are counted by running it
once more under ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix multiplications,
convolutions and attention only (ray marching, grid sampling and elementwise work count zero, so
the MFU of rendering-heavy steps is a lower bound). achieved_tflops = flops / step_s / 1e12 and
mfu = achieved_tflops / peak_tflops, with the peak of ``PEAK_TFLOPS`` for the GPU and the precision
(bf16; fp32 with TF32 on: tf32; else fp32) or ``--peak-tflops``. Precision: the config's
``mixed_precision`` on CUDA (bf16 autocast, as the trainer), fp32 on CPU; ``--precisions`` overrides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from holo3d.bench.context import BenchContext
from holo3d.bench.model_setup import autocast, backend_flags, backend_state, randomise_zero_init
from holo3d.bench.report import Reporter
from holo3d.bench.settings import BenchSettings
from holo3d.bench.synthetic_batch import synthetic_frame_data
from holo3d.bench.timing import peak_memory_gib, reset_peak_memory, synchronize, time_fn
from holo3d.bench.train_step import bench_accelerator


SYSTEMS = ("genvs", "viewfusion", "voxel_ldm", "distill")
SYSTEM_FIGURES = ("train", "sample")
CONFIGS = {"genvs": "genvs_srn_cars", "viewfusion": "viewfusion_nmr", "voxel_ldm": "voxel_ldm",
           "distill": "genvs_srn_cars", "voxel_ae": "voxel_ae"}

_FACTORY = "model_factory_HoloModelFactory_args"
_GENVS = f"{_FACTORY}.model_GenvsModel_args"
_VIEWFUSION = f"{_FACTORY}.model_ViewFusionModel_args"
_LDM = f"{_FACTORY}.model_VoxelLDM_args"
_AE = f"{_FACTORY}.model_VoxelAutoencoderModel_args"
_LOADER = "data_source_Holo3DDataSource_args.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"
_VOXELS = "data_source_VoxelDataSource_args"

# --cpu: dotted keys of the composed config, applied after composition (typed: a bad key fails).
_TINY_GENVS = {
    f"{_GENVS}.image_size": 32, f"{_GENVS}.latent_size": 16, f"{_GENVS}.latent_channels": 4,
    f"{_GENVS}.feature_channels": 4, f"{_GENVS}.depth_bins": 8, f"{_GENVS}.field_hidden_dim": 16,
    f"{_GENVS}.cond_dim": 16, f"{_GENVS}.encoder_args.backbone": "small",
    f"{_GENVS}.encoder_args.small_channels": 8, f"{_GENVS}.encoder_args.decoder_channels": 16,
    f"{_GENVS}.unet_args.model_channels": 16, f"{_GENVS}.unet_args.channel_mult": [1, 2],
    f"{_GENVS}.unet_args.num_res_blocks": 1, f"{_GENVS}.unet_args.attention_resolutions": [16],
    f"{_GENVS}.renderer_args.n_pts_coarse": 8, f"{_GENVS}.renderer_args.n_pts_fine": 4,
}
TINY_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "genvs": _TINY_GENVS,
    "distill": _TINY_GENVS,
    "viewfusion": {
        f"{_VIEWFUSION}.image_size": 16, f"{_VIEWFUSION}.max_views": 2, f"{_LOADER}.frames_per_scene": 3,
        f"{_VIEWFUSION}.unet_args.model_channels": 16, f"{_VIEWFUSION}.unet_args.channel_mult": [1, 2],
        f"{_VIEWFUSION}.unet_args.num_res_blocks": 1, f"{_VIEWFUSION}.unet_args.attention_resolutions": [8],
    },
    "voxel_ldm": {
        f"{_VOXELS}.resolution": 16, f"{_LDM}.unet_args.model_channels": 16,
        f"{_LDM}.unet_args.channel_mult": [1, 2], f"{_LDM}.unet_args.attention_resolutions": [2],
        f"{_LDM}.unet_args.num_res_blocks": 1,
    },
    "voxel_ae": {f"{_AE}.resolution": 16, f"{_AE}.latent_channels": 4, f"{_AE}.latent_resolution": 4,
                 f"{_AE}.base_channels": 8},
}
# DistillConfig fields of the tiny distillation iteration.
TINY_DISTILL = {"grid_resolution": 16, "grid_features": 4, "hidden_dim": 16, "n_pts_coarse": 8,
                "n_pts_fine": 4, "input_rays": 128, "views_per_iteration": 2, "denoise_steps": 2}
TINY_SAMPLE_STEPS = 2
DISTILL_ORBIT_FRAMES = 24  # camera poses of a distilled scene (the "dataset" camera distribution)

# Dense peak TFLOP/s per precision, keyed by a substring of torch.cuda.get_device_name (first match).
PEAK_TFLOPS: Tuple[Tuple[str, Dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
)


# ------------------------------------------------------------------------------------- settings


@dataclass
class SystemSettings:
    """What a ``--model`` run measures. None fields take the system config's own value."""

    model: str
    tiny: bool = False
    device: str = "cuda"
    seed: int = 0
    warmup: int = 3
    repeats: int = 10
    figures: Tuple[str, ...] = SYSTEM_FIGURES
    # items per step: scenes (genvs, viewfusion), grids (voxel_ldm), rendered views (distill)
    batch: Optional[List[int]] = None
    precisions: Optional[List[str]] = None
    sample_n: Optional[int] = None
    sample_steps: Optional[int] = None
    sample_repeats: int = 1
    peak_tflops: Optional[float] = None
    threads: Optional[int] = None
    tf32: Optional[bool] = True
    cudnn_benchmark: bool = False
    # dotted config keys over the system config's (YAML values), e.g. to match another code's model size
    config_overrides: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "system-tiny-cpu" if self.tiny else "system"


def system_settings(model: str, tiny: bool, **chosen: Any) -> SystemSettings:
    """The settings of ``--model`` (``--cpu``: tiny, CPU, 1 warm-up, 2 repeats, 1 thread, 2 sampler
    steps); ``chosen`` values that are None are left at those defaults."""
    if model not in SYSTEMS:
        raise ValueError(f"--model {model!r}: expected one of {SYSTEMS}")
    base = SystemSettings(model=model, tiny=tiny)
    if tiny:
        base = dataclasses.replace(base, device="cpu", warmup=1, repeats=2, threads=1, batch=[2],
                                   sample_steps=TINY_SAMPLE_STEPS)
    return dataclasses.replace(base, **{k: v for k, v in chosen.items() if v is not None})


# ------------------------------------------------------------------------------------- FLOPs and MFU


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as FlopCounterMode counts them (matmuls, convolutions, attention;
    forward and, when ``fn`` runs it, backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def peak_precision(precision: str) -> str:
    """The peak column for a step: bf16, else tf32 when TF32 may run matmuls or convolutions, else fp32."""
    if precision == "bf16":
        return "bf16"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return "tf32" if tf32 else "fp32"


def peak_tflops(gpu_name: str, precision: str, override: Optional[float] = None) -> Tuple[Optional[float], str]:
    """(peak dense TFLOP/s, where it came from, or why there is none)."""
    if override is not None:
        return float(override), "--peak-tflops"
    if gpu_name == "cpu":
        return None, "CPU: no peak table entry (pass --peak-tflops)"
    column = peak_precision(precision)
    for key, peaks in PEAK_TFLOPS:
        if key in gpu_name:
            return peaks[column], f"table: {key} {column} dense"
    return None, f"no peak table entry for {gpu_name!r} (pass --peak-tflops)"


def mfu_fields(flops: int, step_s: float, peak: Optional[float], source: str) -> Dict[str, Any]:
    """achieved_tflops = flops / step_s / 1e12; mfu = achieved / peak (null, with mfu_reason, without a peak)."""
    achieved = flops / step_s / 1e12
    return {"flops": flops, "achieved_tflops": achieved, "peak_tflops": peak,
            "mfu": achieved / peak if peak else None, "peak_source": source if peak else None,
            "mfu_reason": None if peak else source}


# ------------------------------------------------------------------------------------- configs and models


def system_config(name: str, tiny: bool, overrides: Optional[Mapping[str, Any]] = None) -> DictConfig:
    """The composed config of ``name`` (CONFIGS), interpolations resolved, with the tiny overrides,
    then ``overrides`` (dotted key -> value; a key the config lacks is refused, named)."""
    from holo3d.train.config_cli import compose_config

    cfg = compose_config(CONFIGS[name])
    OmegaConf.resolve(cfg)
    layers = [("tiny override", TINY_OVERRIDES.get(name, {}) if tiny else {}), ("--config-arg", overrides or {})]
    for what, changes in layers:
        for key, value in changes.items():
            if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
                raise KeyError(f"{what} {key}: no such key in configs/{CONFIGS[name]}.yaml")
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def build_model(cfg: DictConfig, device: torch.device, seed: int) -> nn.Module:
    """The config's model (HoloModelFactory, as the trainer builds it), seeded, zero-initialised
    layers randomised (non-degenerate outputs), on ``device`` in train mode."""
    from pytorch3d.implicitron.tools.config import expand_args_fields

    from holo3d.train.model_factory import HoloModelFactory

    torch.manual_seed(seed)
    expand_args_fields(HoloModelFactory)
    model = HoloModelFactory(**cfg[_FACTORY]).model
    randomise_zero_init(model, seed)
    return model.to(device).train()


@contextlib.contextmanager
def in_memory_autoencoder(tiny: bool, seed: int) -> Iterator[Dict[str, Any]]:
    """While a VoxelLDM is built, its frozen stage-1 autoencoder is a random-weight one of
    voxel_ae.yaml's architecture instead of ``load_frozen_autoencoder(autoencoder_exp_dir)``.
    Yields a description of it for the figures' config."""
    from holo3d.models import voxel_ldm

    args = system_config("voxel_ae", tiny)[_FACTORY]["model_VoxelAutoencoderModel_args"]
    torch.manual_seed(seed)
    autoencoder = voxel_ldm.build_autoencoder(args).eval().requires_grad_(False)
    note = "random weights, built in memory (voxel_ae.yaml's architecture; no stage-1 checkpoint)"
    original = voxel_ldm.load_frozen_autoencoder
    # VoxelLDM.__post_init__ looks the loader up in its module at build time: swap it there.
    voxel_ldm.load_frozen_autoencoder = lambda exp_dir: (autoencoder, note)
    try:
        yield {"autoencoder": note, "autoencoder_args": {k: args[k] for k in voxel_ldm.AE_ARCHITECTURE}}
    finally:
        voxel_ldm.load_frozen_autoencoder = original


def params_m(module: nn.Module, trainable: bool = False) -> float:
    """Parameters in millions (only those with gradients when ``trainable``)."""
    return round(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable) / 1e6, 3)


def model_precision(cfg: DictConfig, device: torch.device) -> str:
    """The trainer's precision for this config on this device: its mixed_precision on CUDA, fp32 on CPU."""
    mixed = cfg["training_loop_HoloTrainingLoop_args"]["mixed_precision"]
    return "bf16" if device.type == "cuda" and mixed == "bf16" else "fp32"


# ------------------------------------------------------------------------------------- batches


def synthetic_voxels(n: int, side: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, side, side, side) occupancy in {0, 1}: a ball of random centre and radius per grid."""
    centres = (torch.rand(n, 3, generator=generator) - 0.5) * 0.4  # in [-0.2, 0.2]^3
    radii = 0.3 + 0.4 * torch.rand(n, generator=generator)
    coords = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1  # voxel centres in [-1, 1]
    grid = torch.stack(torch.meshgrid(coords, coords, coords, indexing="ij"), dim=-1)  # (R, R, R, 3)
    d2 = (grid[None] - centres[:, None, None, None]).square().sum(-1)  # (n, R, R, R)
    return (d2 <= radii[:, None, None, None].square()).float()[:, None].to(device)


def frame_batch(scenes: int, frames: int, size: int, device: torch.device, seed: int, azel: bool = False):
    """A FrameData of scenes x frames (scene-major) on orbits; ``azel`` adds the NMR source's
    meta["view_azimuth_elevation"] (S*N, 2) that ViewFusion reads."""
    batch = synthetic_frame_data(scenes, frames, size, device, seed=seed)
    if azel:
        from holo3d.data.scene_batch import view_angles
        from holo3d.models.view_fusion import AZEL_KEY

        batch = dataclasses.replace(batch, meta={AZEL_KEY: view_angles(batch.camera)})
    return batch


# ------------------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    """One system ready to measure: a training step and a sample call, and what they are."""

    model: nn.Module
    precision: str  # fp32 | bf16 (autocast)
    step: Callable[[], object]  # one training step (what the loop runs per batch)
    items_per_step: int
    item: str
    sample: Callable[[], object]  # one timed sample call
    warm_sample: Callable[[], object]  # a short call that warms kernels before timing ``sample``
    sample_info: Dict[str, Any]  # item, n, sampler, steps, what
    info: Dict[str, Any] = field(default_factory=dict)  # config, overrides, batch shapes, notes


def loop_step_function(cfg: DictConfig) -> Callable[..., Any]:
    """The loop's own step function for this config: ``sync_free_step`` where the training loop has
    that switch and it is on, else ``optimization_step`` (both share one signature)."""
    from holo3d.train import training_loop

    if cfg["training_loop_HoloTrainingLoop_args"].get("sync_free_step", False):
        return training_loop.sync_free_step
    return training_loop.optimization_step


def trainer_step(model: nn.Module, batch: Any, cfg: DictConfig, precision: str,
                 device: torch.device) -> Tuple[Callable[[], object], str]:
    """The loop's step (``loop_step_function``) on a fixed batch, with the config's optimizer
    factory, gradient clipping, EMA and compile_model, under a fresh single-process Accelerator of
    ``precision``.
    Returns the zero-argument step and the step function's name."""
    from pytorch3d.implicitron.tools.config import expand_args_fields

    from holo3d.train.ema import EMA
    from holo3d.train.optimizer_factory import HoloOptimizerFactory

    loop = cfg["training_loop_HoloTrainingLoop_args"]
    expand_args_fields(HoloOptimizerFactory)
    optimizer, scheduler = HoloOptimizerFactory(**cfg["optimizer_factory_HoloOptimizerFactory_args"])(
        model, iterations_per_epoch=1, max_epochs=1)
    ema = EMA(model, loop.ema_decay, loop.ema_start_iteration) if loop.ema_decay > 0 else None
    accelerator = bench_accelerator(precision, device)
    counter = itertools.count()
    train_step = loop_step_function(cfg)
    forward = None
    if loop.get("compile_model", False):  # as the loop does: the model's compile_target compiled
        from holo3d.train.step import compiled_training_forward

        forward = compiled_training_forward(model, loop.get("compile_mode", "default"))

    def step() -> object:
        return train_step(model, batch, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler,
                          ema=ema, clip_grad_norm=loop.clip_grad_norm, iteration=next(counter), forward=forward)

    return step, train_step.__name__


def sampler_call(model: nn.Module, n: int, cond: Any, sampler: str, steps: int, precision: str,
                 device: torch.device, seed: int) -> Callable[[], torch.Tensor]:
    """A zero-argument seeded ``model.sample(n, cond=cond, sampler, steps)`` under the precision's autocast
    and the model's ``sampling_accelerated`` (CUDA graphs on CUDA), as generate_samples.py runs it."""

    def call() -> torch.Tensor:
        model.eval()  # the training step left it in train mode
        generator = torch.Generator(device=device).manual_seed(seed)
        with autocast(precision, device), model.sampling_accelerated(device.type == "cuda"):
            return model.sample(n, cond=cond, sampler=sampler, steps=steps, generator=generator, device=device)

    return call


def with_sampling(w: Dict[str, Any], model: nn.Module, n: int, cond: Any, sampler: str, steps: int,
                  precision: str, device: torch.device, seed: int) -> Dict[str, Any]:
    """Workload fields of a GenerativeModel's sampler: the timed call and a 1-step warm-up."""
    return {**w, "sample": sampler_call(model, n, cond, sampler, steps, precision, device, seed),
            "warm_sample": sampler_call(model, n, cond, sampler, 1, precision, device, seed)}


def genvs_workload(s: SystemSettings, batch: Optional[int], precision: Optional[str],
                   device: torch.device) -> Workload:
    """GeNVS: 1 target + 1 input view per scene; samples one novel view per scene from its input view."""
    cfg = system_config("genvs", s.tiny, s.config_overrides)
    precision = precision or model_precision(cfg, device)
    model = build_model(cfg, device, s.seed)
    loader, args = OmegaConf.select(cfg, _LOADER), OmegaConf.select(cfg, _GENVS)
    scenes, frames, size = batch or loader.scenes_per_batch, loader.frames_per_scene, args.image_size
    batch_frames = frame_batch(scenes, frames, size, device, s.seed)
    step, step_name = trainer_step(model, batch_frames, cfg, precision, device)
    n = s.sample_n or scenes
    views = frame_batch(n, 2, size, device, s.seed + 1)  # per scene: frame 0 the target, frame 1 the input
    rgb = views.image_rgb.view(n, 2, 3, size, size)[:, 1:]  # (n, 1, 3, H, W)
    cond = {"rgb": rgb, "cameras": views.camera[list(range(1, 2 * n, 2))],
            "path_cameras": views.camera[list(range(0, 2 * n, 2))]}
    steps = s.sample_steps or model.steps_default
    info = {"batch": {"scenes": scenes, "frames_per_scene": frames, "image_size": size}, "train_step": step_name}
    sample_info = {"item": "novel views", "n": n, "sampler": model.sampler_default, "steps": steps,
                   "what": "GenvsModel.sample with cond rgb / cameras / path_cameras: one view per scene along "
                           "a 1-camera path, conditioned on its input view (render latents + sampler + encode)"}
    w = dict(model=model, precision=precision, step=step, items_per_step=scenes * model.n_targets,
             item="target views", info=info, sample_info=sample_info)
    return Workload(**with_sampling(w, model, n, cond, model.sampler_default, steps, precision, device, s.seed))


def viewfusion_workload(s: SystemSettings, batch: Optional[int], precision: Optional[str],
                        device: torch.device) -> Workload:
    """ViewFusion: a target + up to max_views conditioning views per scene; samples targets from all views."""
    from holo3d.data.scene_batch import view_angles
    from holo3d.diffusion import sampler_spec

    cfg = system_config("viewfusion", s.tiny, s.config_overrides)
    precision = precision or model_precision(cfg, device)
    model = build_model(cfg, device, s.seed)
    loader, args = OmegaConf.select(cfg, _LOADER), OmegaConf.select(cfg, _VIEWFUSION)
    scenes, frames, size = batch or loader.scenes_per_batch, loader.frames_per_scene, args.image_size
    batch_frames = frame_batch(scenes, frames, size, device, s.seed, azel=True)
    step, step_name = trainer_step(model, batch_frames, cfg, precision, device)
    n, v = s.sample_n or scenes, min(frames - 1, model.max_views)
    views = frame_batch(n, v + 1, size, device, s.seed + 1)
    angles = view_angles(views.camera).view(n, v + 1, 2)
    cond = {"views": views.image_rgb.view(n, v + 1, 3, size, size)[:, 1:], "view_angles": angles[:, 1:],
            "target_angles": angles[:, 0]}
    steps = s.sample_steps or model.steps_default or sampler_spec(model.sampler_default).default_steps
    info = {"batch": {"scenes": scenes, "frames_per_scene": frames, "image_size": size}, "train_step": step_name}
    sample_info = {"item": "target views", "n": n, "sampler": model.sampler_default, "steps": steps,
                   "views_per_target": v, "what": "ViewFusionModel.sample conditioned on every view of a scene"}
    w = dict(model=model, precision=precision, step=step, items_per_step=scenes,
             item="targets (1..max_views conditioning views each)", info=info, sample_info=sample_info)
    return Workload(**with_sampling(w, model, n, cond, model.sampler_default, steps, precision, device, s.seed))


def voxel_ldm_workload(s: SystemSettings, batch: Optional[int], precision: Optional[str],
                       device: torch.device) -> Workload:
    """The voxel LDM on a random-weight in-memory autoencoder; samples grids of the first category."""
    from holo3d.data.tensor_batch import TensorBatch
    from holo3d.diffusion import sampler_spec

    cfg = system_config("voxel_ldm", s.tiny, s.config_overrides)
    precision = precision or model_precision(cfg, device)
    with in_memory_autoencoder(s.tiny, s.seed) as autoencoder:
        model = build_model(cfg, device, s.seed)
    data = cfg[_VOXELS]
    n_grids, side = batch or data.batch_size, data.resolution
    generator = torch.Generator().manual_seed(s.seed)
    labels = torch.randint(len(model.category_names), (n_grids,), generator=generator)
    voxels = TensorBatch(voxels=synthetic_voxels(n_grids, side, device, generator), label=labels.to(device),
                         name=[f"bench_{i:04d}" for i in range(n_grids)])
    step, step_name = trainer_step(model, voxels, cfg, precision, device)
    step()  # the trainer's iteration 0: sets the latent statistics that sampling needs
    n, label = s.sample_n or n_grids, model.category_names[0]
    sampler = model.sampler_default
    steps = s.sample_steps or sampler_spec(sampler).default_steps or model.num_diffusion_steps
    info = {"batch": {"grids": n_grids, "resolution": side}, "train_step": step_name, **autoencoder}
    w = dict(model=model, precision=precision, step=step, items_per_step=n_grids, item="voxel grids", info=info,
             sample_info={"item": "voxel grids", "n": n, "sampler": sampler, "steps": steps, "label": label,
                          "guidance_scale": model.guidance_scale_default,
                          "what": "VoxelLDM.sample of one category (latents + decode to occupancy)"})
    return Workload(**with_sampling(w, model, n, model.conditions(n, label), sampler, steps, precision, device,
                                    s.seed))


def distill_scene_views(model: nn.Module, n_inputs: int, device: torch.device, seed: int):
    """SceneViews of one synthetic scene: K inputs (random images, disc masks) among an orbit of
    DISTILL_ORBIT_FRAMES cameras, the other orbit frames held out."""
    from holo3d.sample.distillation import SceneViews

    size = model.image_size
    frames = synthetic_frame_data(1, DISTILL_ORBIT_FRAMES, size, device, seed=seed)
    inputs = [i * DISTILL_ORBIT_FRAMES // n_inputs for i in range(n_inputs)]
    heldout = [i for i in range(DISTILL_ORBIT_FRAMES) if i not in inputs]
    rgb, fg = frames.image_rgb, frames.fg_probability
    return SceneViews(input_rgb=rgb[inputs], input_fg=fg[inputs], input_cameras=frames.camera[inputs],
                      heldout_rgb=rgb[heldout], heldout_fg=fg[heldout], heldout_cameras=frames.camera[heldout],
                      all_cameras=frames.camera, background=model.background, input_frames=inputs)


def distill_workload(s: SystemSettings, batch: Optional[int], precision: Optional[str],
                     device: torch.device) -> Workload:
    """One distillation iteration (``distill_scene``'s loop body) at mid-anneal (progress 0.5); bf16
    autocast on CUDA (distill.py's default precision), fp32 on CPU."""
    from holo3d.sample import distillation as d
    from holo3d.sample.distill_config import DistillConfig

    cfg = system_config("distill", s.tiny, s.config_overrides)
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    model = build_model(cfg, device, s.seed).eval().requires_grad_(False)  # the trained denoiser
    dcfg = dataclasses.replace(DistillConfig(), **(TINY_DISTILL if s.tiny else {}))
    dcfg = dataclasses.replace(dcfg, views_per_iteration=batch or dcfg.views_per_iteration)
    d.check_settings(dcfg)
    views = distill_scene_views(model, dcfg.n_input_views, device, s.seed)
    denoiser = d.denoiser_for(model, dcfg.guidance)
    torch.manual_seed(s.seed)
    renderer = d.build_field_renderer(dcfg, model.scene_extent, views.background).to(device).train()
    optimizer = d.make_optimizer(renderer, dcfg)
    with autocast(precision, device):
        cond = denoiser.condition(views.input_rgb, views.input_fg, views.input_cameras)
    inputs, cameras = d.InputRays(views), d.CameraDistribution(views, dcfg)
    generator = torch.Generator(device=device).manual_seed(s.seed)

    def iteration() -> None:
        with autocast(precision, device):  # distill.py runs the whole loop under inference_precision
            out = d.distillation_step(renderer, denoiser, cond, views, inputs, cameras, dcfg, 0.5, generator)
            optimizer.zero_grad(set_to_none=True)
            out["objective"].backward()
            optimizer.step()

    keys = ("views_per_iteration", "grid_type", "grid_resolution", "grid_features", "n_pts_coarse", "n_pts_fine",
            "input_rays", "n_input_views", "camera_distribution")
    info = {"distill": {k: getattr(dcfg, k) for k in keys}, "image_size": model.image_size,
            "field_params_m": params_m(renderer), "denoiser": "GenvsModel of genvs_srn_cars.yaml, random weights"}
    return Workload(model=model, precision=precision, step=iteration, items_per_step=1,
                    item="distillation iterations", info=info, sample=iteration, warm_sample=iteration,
                    sample_info={"item": "distillation iterations", "n": dcfg.views_per_iteration,
                                 "sampler": dcfg.sampler, "steps": dcfg.denoise_steps,
                                 "what": "seconds per distillation iteration: render n views, denoise them "
                                         "in `steps` sampler steps, backward, Adam; a scene takes "
                                         f"`iterations` ({dcfg.iterations}) of them"})


BUILDERS: Dict[str, Callable[[SystemSettings, Optional[int], Optional[str], torch.device], Workload]] = {
    "genvs": genvs_workload, "viewfusion": viewfusion_workload, "voxel_ldm": voxel_ldm_workload,
    "distill": distill_workload,
}
assert tuple(BUILDERS) == SYSTEMS


# ------------------------------------------------------------------------------------- measuring


def figure_config(ctx: BenchContext, s: SystemSettings, w: Optional[Workload], batch: Optional[int],
                  precision: Optional[str]) -> Dict[str, Any]:
    """A line's ``config``: the run's settings, backend switches, and the system's config and shapes."""
    system = {"config": f"configs/{CONFIGS[s.model]}.yaml",
              "overrides": {**(TINY_OVERRIDES.get(s.model, {}) if s.tiny else {}), **s.config_overrides},
              "batch_source": "synthetic, drawn on the device with the configured data source's shapes"}
    if w is not None:
        system.update(model_class=type(w.model).__name__, params_m=params_m(w.model),
                      trainable_params_m=params_m(w.model, trainable=True), **w.info)
    return {"precision": w.precision if w is not None else precision, "batch_size": batch, "warmup": s.warmup,
            "repeats": s.repeats, "bench": s.name, "device": str(ctx.device), **backend_state(), "system": system}


def measure_train(ctx: BenchContext, s: SystemSettings, w: Workload, config: Dict[str, Any]) -> None:
    """system.train: median step time, peak memory, then one more step under the FLOP counter."""
    precision = config["precision"]
    with ctx.guard([("system.train", "s")], config):
        reset_peak_memory(ctx.device)
        timing = time_fn(w.step, ctx.device, s.warmup, s.repeats)
        memory = peak_memory_gib(ctx.device)
        flops = count_flops(w.step)
        peak, source = peak_tflops(ctx.reporter.env["gpu"], precision, s.peak_tflops)
        ctx.emit("system.train", timing.median_s, "s", config, model=s.model, item=w.item,
                 items_per_step=w.items_per_step, items_per_s=w.items_per_step / timing.median_s,
                 step_s=timing.median_s, peak_memory_gib=memory["allocated_gib"],
                 reserved_gib=memory["reserved_gib"], **mfu_fields(flops, timing.median_s, peak, source),
                 **timing.stats())


def measure_sample(ctx: BenchContext, s: SystemSettings, w: Workload, config: Dict[str, Any]) -> None:
    """system.sample: a warm-up call, then ``sample_repeats`` timed calls."""
    info = w.sample_info
    with ctx.guard([("system.sample", "s")], config):
        w.warm_sample()
        synchronize(ctx.device)
        reset_peak_memory(ctx.device)
        timing = time_fn(w.sample, ctx.device, 0, s.sample_repeats)
        memory = peak_memory_gib(ctx.device)
        per_call_items = 1 if w.sample is w.step else info["n"]
        ctx.emit("system.sample", timing.median_s, "s", config, model=s.model, **info, sample_s=timing.median_s,
                 items_per_s=per_call_items / timing.median_s, peak_memory_gib=memory["allocated_gib"],
                 **timing.stats())


def measure_system(ctx: BenchContext, s: SystemSettings, batch: Optional[int],
                   precision: Optional[str]) -> None:
    """Builds the workload (a failure is reported on every figure of the run) and measures it;
    precision None: the system's own (see the builders)."""
    config = figure_config(ctx, s, None, batch, precision)
    workload: Optional[Workload] = None
    with ctx.guard([(f"system.{f}", "s") for f in s.figures], {**config, "model": s.model}):
        workload = BUILDERS[s.model](s, batch, precision, ctx.device)
    if workload is None:
        return
    config = figure_config(ctx, s, workload, batch, precision)
    if "train" in s.figures:
        measure_train(ctx, s, workload, config)
    if "sample" in s.figures:
        measure_sample(ctx, s, workload, config)


def run(settings: SystemSettings, reporter: Reporter) -> int:
    """Measures ``settings.model`` for every batch size and precision; returns the exit status."""
    from holo3d.bench.runner import exit_status

    unknown = [f for f in settings.figures if f not in SYSTEM_FIGURES]
    if unknown:
        raise ValueError(f"--model {settings.model}: figures {unknown} are HoloDiffusion's; "
                         f"systems have {SYSTEM_FIGURES}")
    torch.manual_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    ctx = BenchContext(BenchSettings(name=settings.name, device=settings.device, seed=settings.seed), reporter)
    with backend_flags(settings.tf32, settings.cudnn_benchmark):
        for batch, precision in itertools.product(settings.batch or [None], settings.precisions or [None]):
            measure_system(ctx, settings, batch, precision)
    return exit_status(reporter)
