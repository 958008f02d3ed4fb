"""Typed configs of generate_samples.py and visualize_reconstruction.py, stored in Hydra's ConfigStore.

Both scripts work from ``exp_dir`` alone; every other key has a default, so e.g.

    python generate_samples.py exp_dir=EXP num_samples=15 sampler=ddim steps=50
    python visualize_reconstruction.py exp_dir=EXP n_source_views=5 sequences=[seq_a,seq_b]

A misspelt key or a wrong type is refused by Hydra before anything runs. Hydra writes nothing
(no outputs/ folder, no log file): every result goes under ``exp_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

# Hydra settings carried by both configs: run in the current folder and write nothing of its own.
HYDRA_DEFAULTS: List[Any] = ["_self_", {"override hydra/job_logging": "stdout"}]
HYDRA_SETTINGS = {"run": {"dir": "."}, "output_subdir": None}


@dataclass
class LoadConfig:
    """How to load the experiment: checkpoint epoch (-1 newest), EMA weights, device."""

    exp_dir: str = ""
    epoch: int = -1
    use_ema: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "bf16"  # bf16 | fp32: autocast for sampling and rendering on GPUs (CPU: fp32)
    seed: int = 0


@dataclass
class TurntableConfig:
    """Camera path of the videos.

    up: world up axis; empty -> estimated from the training cameras when the dataset is on disk,
        otherwise +Y (the run says which).
    distance: camera distance from the origin; 0 -> median training-camera distance when the
        dataset is on disk, otherwise 1.5 x the model's volume_extent.
    focal_length: NDC focal length (the shorter image side spans [-1, 1]).
    """

    n_frames: int = 75
    elevation_deg: float = 20.0
    distance: float = 0.0
    focal_length: float = 2.0
    up: List[float] = field(default_factory=list)
    fps: int = 25
    gif: bool = False


@dataclass
class SampleConfig(LoadConfig, TurntableConfig):
    """generate_samples.py: unconditional samples -> EXP/generated_samples/.

    sampler / steps / eta / s_churn: a name of ``holo3d.diffusion.SAMPLERS``: ddpm (all T steps unless
        ``steps``), ddim (eta), heun or euler (EDM sigma-space, optional stochastic churn
        ``s_churn``), dpmpp_2m (DPM-Solver++(2M)); steps=0 -> the sampler's default.
    batch_size: grids sampled together (one sampler call).
    render_size / video_size: frames are rendered at render_size (H, W), videos are written at
        video_size (resized).
    chunk_size: rays per rendering pass (0: the model's render_chunk_size).
    progressive_sampling_steps_per_render: k > 0 also writes sample_XXX_progressive.mp4, the
        current x0 estimate rendered every k sampler steps while the camera moves on, one frame
        per k steps over the whole chain.
    contact_sheet_views: views per sample in contact_sheet.png.
    cuda_graph: replay the U-Net as a CUDA graph while sampling (GPU only; ~2.5x faster chains).
    mesh_resolution / mesh_threshold: marching-cubes lattice size and density level (0: chosen
        per sample by Otsu's method, since density scales differ between trained models).
    max_videos: turntable videos (and contact-sheet rows) for the first K samples only (-1: all),
        e.g. for 1000 voxel samples written to samples.npy for the 3D metrics.
    label: the condition of conditional models (e.g. a category name); empty: unconditional.
    guidance: classifier-free guidance scale of conditional models (1: the conditional model alone).
    """

    defaults: List[Any] = field(default_factory=lambda: list(HYDRA_DEFAULTS))
    hydra: Any = field(default_factory=lambda: dict(HYDRA_SETTINGS))
    num_samples: int = 15
    batch_size: int = 16
    sampler: str = "ddpm"
    steps: int = 0
    eta: float = 0.0
    s_churn: float = 0.0
    render_size: List[int] = field(default_factory=lambda: [256, 256])
    video_size: List[int] = field(default_factory=lambda: [512, 512])
    chunk_size: int = 0
    save_voxel_features: bool = False
    export_mesh: bool = False
    mesh_resolution: int = 64
    mesh_threshold: float = 0.0
    progressive_sampling_steps_per_render: int = 0
    contact_sheet_views: int = 4
    cuda_graph: bool = True
    max_videos: int = -1
    label: str = ""
    guidance: float = 1.0
    output_dir: str = ""  # default EXP/generated_samples


@dataclass
class ReconstructionConfig(LoadConfig, TurntableConfig):
    """visualize_reconstruction.py: few-view reconstructions of held-out sequences -> EXP/reconstructions/.

    split: held-out split to use (test or val).
    sequences: sequence names (empty: the first ``max_sequences`` of the split).
    n_source_views: K views lifted into the grid, evenly spaced along the sequence.
    max_target_views: held-out views rendered and scored per sequence (0: all other frames).
    denoise_from_t / denoise_steps: diffusion models only: 0 renders the model's own
        reconstruction (the U-Net at t=0); t > 0 noises the lifted grid to t and runs
        ``denoise_steps`` DDIM steps back to 0.
    video_size: size of each panel of the turntable video (the side-by-side video of held-out
        views keeps the images' size).
    lpips_net: LPIPS backbone (alex | vgg | squeeze), used only when its weights are in TORCH_HOME.
    """

    defaults: List[Any] = field(default_factory=lambda: list(HYDRA_DEFAULTS))
    hydra: Any = field(default_factory=lambda: dict(HYDRA_SETTINGS))
    split: str = "test"
    sequences: List[str] = field(default_factory=list)
    max_sequences: int = 5
    n_source_views: int = 5
    max_target_views: int = 0
    denoise_from_t: int = 0
    denoise_steps: int = 10
    video_size: List[int] = field(default_factory=lambda: [256, 256])
    chunk_size: int = 0
    lpips_net: str = "alex"
    output_dir: str = ""  # default EXP/reconstructions
    n_frames: int = 48


def register_script_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="generate_samples", node=SampleConfig)
    store.store(name="visualize_reconstruction", node=ReconstructionConfig)


def optional_steps(steps: int) -> Optional[int]:
    """The sampler's step count: None (its default) for steps <= 0."""
    return steps if steps > 0 else None
