"""Helpers of the sampling / reconstruction tests: the tiny experiment's config, and running the
entry points as users do (subprocesses).

Sizes are the smallest that still exercise every code path (grid 8^3 x 8 features, a 2-level U-Net
of 8 channels, 32 px images, 8 + 4 points per ray), so the whole folder runs in well under two
minutes on 2 CPU cores.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = "model_factory_HoloModelFactory_args.model_HoloDiffusionModel_args"
SOURCE = "data_source_Holo3DDataSource_args"
PROVIDER = f"{SOURCE}.dataset_map_provider_JsonIndexDatasetMapProviderV2_args"
LOADER = f"{SOURCE}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"
LOOP = "training_loop_HoloTrainingLoop_args"

TINY_MODEL = [
    f"{MODEL}.grid_resolution=8",
    f"{MODEL}.feature_size=8",
    f"{MODEL}.n_targets=1",
    f"{MODEL}.n_rays_per_target=64",
    f"{MODEL}.num_diffusion_steps=50",
    f"{MODEL}.chunk_size_eval=8192",
    f"{MODEL}.unet_args.model_channels=8",
    f"{MODEL}.unet_args.channel_mult=[1,2]",
    f"{MODEL}.unet_args.attention_resolutions=[]",
    f"{MODEL}.unet_args.num_res_blocks=1",
    f"{MODEL}.lifter_args.backbone=resnet18",
    f"{MODEL}.lifter_args.feature_image_size=32",
    f"{MODEL}.lifter_args.stages=[1]",
    f"{MODEL}.lifter_args.proj_dim=4",
    f"{MODEL}.renderer_args.n_pts_coarse=8",
    f"{MODEL}.renderer_args.n_pts_fine=4",
    f"{MODEL}.render_mlp_args.hidden_dim=16",
    f"{MODEL}.render_mlp_args.n_layers=2",
    f"{MODEL}.render_mlp_args.skip_layers=[]",
    f"{MODEL}.render_mlp_args.color_hidden_dim=16",
]


def make_tiny_dataset(root: Path) -> Path:
    """3 chair sequences x 8 frames at 32 px, in CO3Dv2 format (train / val / test sequences)."""
    import dataclasses

    from holo3d.data.synthetic.generate import generate_dataset
    from holo3d.data.synthetic.spec import get_preset

    spec = dataclasses.replace(get_preset("tiny"), categories=("chair",), sequences=3, frames=8,
                               image_size=(32, 32))
    return Path(generate_dataset(spec, str(root / "tiny"), progress=False))


def tiny_config(exp_dir: Path, data_root: Path, *overrides: str):
    """The composed training config of the tiny experiment (every setting it relies on is given
    here, so it does not change when base.yaml's GPU-sized defaults do)."""
    from holo3d.train.config_cli import compose_config

    cfg = compose_config("base", [
        f"exp_dir={exp_dir}", *TINY_MODEL,
        f"{PROVIDER}.dataset_root={data_root}",
        f"{PROVIDER}.category=chair",
        f"{PROVIDER}.dataset_Holo3DJsonIndexDataset_args.image_height=32",
        f"{PROVIDER}.dataset_Holo3DJsonIndexDataset_args.image_width=32",
        f"{PROVIDER}.num_load_workers=0",
        f"{LOADER}.scenes_per_batch=1",
        f"{LOADER}.frames_per_scene=3",
        f"{LOADER}.num_workers=0",
        f"{LOADER}.pin_memory=false",
        f"{LOADER}.dataset_length_train=2",
        f"{LOADER}.dataset_length_val=1",
        f"{LOOP}.max_epochs=1",
        f"{LOOP}.logger=none",
        f"{LOOP}.n_validation_batches=1",
        f"{LOOP}.ema_decay=0.5",
        f"{LOOP}.mixed_precision=no",
        f"{LOOP}.sample_video_interval_epochs=0",
        "optimizer_factory_HoloOptimizerFactory_args.lr=0.001",
        *overrides,
    ])
    return cfg


def run_script(script: str, *args: str, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    """``python <script> args...`` from the repository root, as a user runs it."""
    # One thread: see conftest._one_thread.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", **env_vars}
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess):
    """The script's own error lines (library warnings on stderr left out)."""
    return [line for line in result.stderr.splitlines() if ": error: " in line]
