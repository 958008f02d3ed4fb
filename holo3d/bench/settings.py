"""BenchSettings: what the benchmark measures, at the base (GPU) config or the tiny CPU config.

The base settings pin the performance anchor of docs (../shared/DESIGN.md, "Performance anchor"):
16 frames per scene (6 targets x 1024 rays + 10 sources), 800 px frames rescaled to 256 for a
ResNet-34, grid 16^3 x 64, U-Net 64 x [1,1,2,4,8] with attention at 4 and 8, 64 coarse + 16 fine
points. They are written out as explicit overrides (equal to today's defaults) so that a change of
a model default cannot silently change what the benchmark compares with the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

# Dotted keys into HoloDiffusionModel's config (get_default_args), e.g. "unet_args.channel_mult".
BASE_MODEL: Dict[str, Any] = {
    "n_targets": 6,
    "n_rays_per_target": 1024,
    "grid_resolution": 16,
    "feature_size": 64,
    "num_diffusion_steps": 1000,
    "unet_args.model_channels": 64,
    "unet_args.channel_mult": [1, 1, 2, 4, 8],
    "unet_args.num_res_blocks": 2,
    "unet_args.attention_resolutions": [4, 8],
    "lifter_args.backbone": "resnet34",
    "lifter_args.feature_image_size": 256,
    "renderer_args.n_pts_coarse": 64,
    "renderer_args.n_pts_fine": 16,
}

# A few-second CPU configuration: only checks that every figure runs (CI), never compared.
TINY_MODEL: Dict[str, Any] = {
    "n_targets": 2,
    "n_rays_per_target": 64,
    "grid_resolution": 8,
    "feature_size": 8,
    "num_diffusion_steps": 10,
    "unet_args.model_channels": 16,
    "unet_args.channel_mult": [1, 2],
    "unet_args.num_res_blocks": 1,
    "unet_args.attention_resolutions": [2],
    "lifter_args.backbone": "resnet18",
    "lifter_args.feature_image_size": 32,
    "lifter_args.stages": [1, 2],
    "lifter_args.proj_dim": 8,
    "renderer_args.n_pts_coarse": 16,
    "renderer_args.n_pts_fine": 8,
    "render_mlp_args.hidden_dim": 64,
    "render_mlp_args.color_hidden_dim": 32,
}

ALL_FIGURES = ("numerics", "train", "unet", "sample", "render", "e2e")


@dataclass
class BenchSettings:
    """Everything a benchmark run depends on; recorded (in part) in every figure's ``config``."""

    name: str = "base"
    device: str = "cuda"
    model: Dict[str, Any] = field(default_factory=lambda: dict(BASE_MODEL))
    seed: int = 0
    warmup: int = 3
    repeats: int = 10
    # training step
    scenes: List[int] = field(default_factory=lambda: [1, 4, 8])
    frames_per_scene: int = 16
    image_size: int = 800
    precisions: List[str] = field(default_factory=lambda: ["fp32", "bf16"])
    bootstrap: List[bool] = field(default_factory=lambda: [False, True])
    # the training loop's per-step extras as configs/base.yaml sets them (0 turns one off)
    clip_grad_norm: float = 1.0
    ema_decay: float = 0.999
    # the step's fixed-cost levers (holo3d/train/step.py): "free" is the loop's sync_free_step
    # (its default), "every" reads the logged scalars every step; compile_step is the loop's
    # compile_model; model_finite_check is HoloDiffusionModel.check_finite (one sync per forward)
    step_sync: List[str] = field(default_factory=lambda: ["free"])
    compile_step: bool = False
    compile_step_mode: str = "default"
    model_finite_check: bool = True
    # U-Net step and sampling
    unet_batches: List[int] = field(default_factory=lambda: [1, 15])
    sample_n: int = 15
    sample_repeats: int = 1
    # (sampler, steps); steps None = the model's whole chain (num_diffusion_steps)
    sample_samplers: List[Tuple[str, Optional[int]]] = field(
        default_factory=lambda: [("ddpm", None), ("ddim", 50)])
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    cuda_graph: bool = False
    # full-frame rendering; chunk 0 means "all rays in one pass"
    render_size: int = 256
    render_views: List[int] = field(default_factory=lambda: [1])
    chunk_sizes: List[int] = field(default_factory=lambda: [4096, 65536, 262144, 0])
    # end to end (generate_samples.py)
    e2e_samples: int = 15
    e2e_frames: int = 75
    e2e_render_size: int = 256
    e2e_video_size: int = 256
    e2e_samplers: List[Tuple[str, int]] = field(default_factory=lambda: [("ddpm", 1000), ("ddim", 50)])
    e2e_extra: List[str] = field(default_factory=list)
    e2e_dir: Optional[str] = None
    e2e_timeout_s: float = 3600.0
    # numerics
    numerics_batch: int = 2
    # CPU threads for torch (and OMP_NUM_THREADS of the e2e subprocess); None: torch's default.
    # The CPU mode uses 1: on a shared 2-core CI machine, OpenMP threads spinning against other
    # processes made a tiny training step 10x slower (0.7 s instead of 0.07 s).
    threads: Optional[int] = None
    # backend switches: None keeps PyTorch's defaults (the training loop sets none of them)
    tf32: Optional[bool] = None
    cudnn_benchmark: bool = False

    def with_overrides(self, **changes: Any) -> "BenchSettings":
        """A copy with the given fields replaced (None values are ignored: flag not given)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def base_settings() -> BenchSettings:
    """The GPU benchmark at the anchor config."""
    return BenchSettings()


def tiny_cpu_settings() -> BenchSettings:
    """The CI mode: tiny model and batches on CPU, one warm-up and two repeats."""
    return BenchSettings(
        name="tiny-cpu",
        device="cpu",
        model=dict(TINY_MODEL),
        warmup=1,
        repeats=2,
        threads=1,
        scenes=[1, 2],
        frames_per_scene=4,
        image_size=48,
        unet_batches=[1, 3],
        sample_n=3,
        sample_samplers=[("ddpm", None), ("ddim", 3)],
        render_size=32,
        chunk_sizes=[256, 0],
        e2e_samples=2,
        e2e_frames=4,
        e2e_render_size=32,
        e2e_video_size=32,
        # One script run: the interpreter start and imports are most of it, whatever the sampler.
        e2e_samplers=[("ddim", 3)],
        e2e_timeout_s=600.0,
    )
