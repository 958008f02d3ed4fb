"""Typed config of distill.py (SparseFusion-style distillation), stored in Hydra's ConfigStore.

    python distill.py exp_dir=DENOISER_EXP n_input_views=2 iterations=2000 max_scenes=5
    python distill.py exp_dir=DENOISER_EXP scenes=[obj_a,obj_b] max_seconds=60 camera_distribution=sphere

``exp_dir`` is a trained view-conditioned denoiser (a GenvsModel experiment). Every other key has a
default; a misspelt key or a wrong type is refused by Hydra before anything runs, and values that
cannot work (e.g. n_input_views=1) by the driver before any scene is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from hydra.core.config_store import ConfigStore

from holo3d.sample.script_config import HYDRA_DEFAULTS, HYDRA_SETTINGS, LoadConfig, TurntableConfig

CAMERA_DISTRIBUTIONS = ("dataset", "sphere")
GRID_TYPES = ("VMFactorizedVoxelGrid", "FullResolutionVoxelGrid")


@dataclass
class DistillConfig(LoadConfig, TurntableConfig):
    """distill.py: one optimised 3D field per held-out scene -> EXP/distillation/<scene>/.

    Scenes and views:
        split: held-out split whose sequences are distilled (test or val).
        scenes: sequence names (empty: the first ``max_scenes`` of the split).
        max_scenes: how many scenes when ``scenes`` is empty.
        n_input_views: K >= 2 input views per scene, a seeded random choice (seed + scene name).
        max_heldout_views: held-out views rendered and scored per scene (0: all other frames).
    Optimisation (per scene):
        iterations: distillation iterations (the annealing runs over them).
        max_seconds: stop a scene after this many seconds of optimisation (0: no limit); the
            annealing then follows whichever of iterations / seconds is further along.
        views_per_iteration: random cameras rendered (full frames) and denoised per iteration.
        camera_distribution: dataset (the scene's own camera poses) or sphere (random azimuth,
            elevation in ``sphere_elevation_deg``, the scene cameras' median distance and focal).
        sphere_elevation_deg: [low, high] elevation range of the sphere distribution.
        warm_start: fraction of the run (iterations or seconds) that regresses the field onto the
            denoiser's own 3D render (a) before any denoising: a consistent start, which the noise
            range below then sharpens (0: distil from the first iteration).
        sigma_max_start / sigma_max_end: the upper end of the noise range (EDM sigma, images in
            [-1, 1]) anneals log-linearly from start to end over the run after the warm start; each
            iteration draws one sigma log-uniformly between ``sigma_min`` and it.
        sigma_min: lower end of the noise range.
        denoise_steps / sampler: steps of the denoiser's sampler (euler, heun, dpmpp_2m) from the
            noised render back to a clean image (multi-step, not one-step SDS).
        guidance: classifier-free guidance scale of the denoiser (1: the conditional model).
        weight_power: time-dependent weight w(sigma) = (sigma_data^2 / (sigma^2 + sigma_data^2))^p of
            the distillation loss (0: uniform); high-noise targets vary most, so they weigh least.
        distill_weight / input_weight: loss weights of the distillation term and of the
            reconstruction of the K input views.
        input_rays: random input-view pixels rendered per iteration for the reconstruction loss.
        opacity_weight: mean rendered opacity of the random views (keeps empty space empty).
        tv_weight: total variation of the grid's spatial parameters (smooth, no floaters).
        lr / lr_mlp: Adam learning rates of the grid and of the decoding MLP.
        checkpoint_every: iterations between field checkpoints (a killed run resumes from them).
    Field:
        grid_type: VMFactorizedVoxelGrid or FullResolutionVoxelGrid (Implicitron's voxel grids).
        grid_resolution / grid_features / hidden_dim: grid side, channels, MLP width.
        n_pts_coarse / n_pts_fine: samples per ray of the two rendering passes.
    Evaluation and outputs:
        sample_steps / sample_sampler: the denoiser's independent per-view samples (b) compared
            against the distilled field (0 steps: the model's default).
        chunk_size: rays per rendering pass at evaluation (0: the model's render_chunk_size).
        video_size: size of each panel of the turntable video.
        write_videos: turntable and held-out mp4s (false: metrics, checkpoint and PNG only).
    """

    defaults: List[Any] = field(default_factory=lambda: list(HYDRA_DEFAULTS))
    hydra: Any = field(default_factory=lambda: dict(HYDRA_SETTINGS))
    split: str = "test"
    scenes: List[str] = field(default_factory=list)
    max_scenes: int = 5
    n_input_views: int = 2
    max_heldout_views: int = 8
    iterations: int = 1000
    max_seconds: float = 0.0
    views_per_iteration: int = 4
    camera_distribution: str = "dataset"
    sphere_elevation_deg: List[float] = field(default_factory=lambda: [0.0, 50.0])
    warm_start: float = 0.0
    sigma_max_start: float = 5.0
    sigma_max_end: float = 0.5
    sigma_min: float = 0.05
    denoise_steps: int = 4
    sampler: str = "euler"
    guidance: float = 1.0
    weight_power: float = 1.0
    distill_weight: float = 1.0
    input_weight: float = 1.0
    input_rays: int = 2048
    opacity_weight: float = 1e-3
    tv_weight: float = 1e-2
    lr: float = 0.02
    lr_mlp: float = 0.005
    checkpoint_every: int = 250
    grid_type: str = "VMFactorizedVoxelGrid"
    grid_resolution: int = 64
    grid_features: int = 16
    hidden_dim: int = 64
    n_pts_coarse: int = 64
    n_pts_fine: int = 32
    sample_steps: int = 25
    sample_sampler: str = "heun"
    chunk_size: int = 0
    video_size: List[int] = field(default_factory=lambda: [128, 128])
    write_videos: bool = True
    n_frames: int = 48
    output_dir: str = ""  # default EXP/distillation


def register_distill_config() -> None:
    ConfigStore.instance().store(name="distill", node=DistillConfig)
