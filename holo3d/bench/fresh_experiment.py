"""A freshly initialised experiment folder, as the trainer leaves it after its first checkpoint.

``expconfig.yaml`` is the composed ``base.yaml`` config (with the benchmark's model settings), written
the way ``Experiment.run`` writes it, and ``checkpoints/epoch_00000.pth`` is a trainer checkpoint
(``save_checkpoint``: model, optimizer and scheduler state, RNG states, loop position, config) of
the model with random weights. Its zero-initialised output layers get small random weights, so the
sampled grids are not constant and the renders exercise the same code a trained model does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from holo3d.bench.model_setup import randomise_zero_init
from holo3d.bench.train_step import make_optimizer
from holo3d.models.holo_diffusion import HoloDiffusionModel
from holo3d.io.atomic_file import write_text_atomic
from holo3d.train.checkpoint import save_checkpoint
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import EXPCONFIG_NAME
from holo3d.train.rng_state import capture_rng_state

MODEL_NODE = "model_factory_HoloModelFactory_args.model_HoloDiffusionModel_args"


def experiment_config(exp_dir: Path, model_overrides: Mapping[str, Any], seed: int) -> DictConfig:
    """base.yaml composed as experiment.py composes it, with the model keys set (dotted)."""
    cfg = compose_config("base", [f"exp_dir={exp_dir}", f"seed={seed}"])
    for key, value in model_overrides.items():
        OmegaConf.update(cfg, f"{MODEL_NODE}.{key}", value, merge=False)
    return cfg


def write_fresh_experiment(exp_dir: str | Path, model_overrides: Mapping[str, Any], seed: int = 0) -> Path:
    """Writes expconfig.yaml and a random-weight epoch-0 checkpoint; returns the folder."""
    folder = Path(exp_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    cfg = experiment_config(folder, model_overrides, seed)
    torch.manual_seed(seed)
    model = HoloDiffusionModel(**OmegaConf.select(cfg, MODEL_NODE))
    randomise_zero_init(model, seed)
    optimizer, scheduler = make_optimizer(model)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    write_text_atomic(folder / EXPCONFIG_NAME, config_yaml)
    state = {
        "model": model.state_dict(),
        "ema": None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "epoch": 0,
        "batch_in_epoch": 0,
        "iteration": 0,
        "config": config_yaml,
    }
    save_checkpoint(folder, 0, state, keep_last=1)
    return folder
