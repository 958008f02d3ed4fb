"""Loads a trained experiment from its folder alone: config, model, and weights (EMA when present).

An experiment folder holds ``expconfig.yaml`` (the resolved training config) and
``checkpoints/epoch_NNNNN.pth``. Only the model is built here: no data is read, so unconditional
sampling works without the dataset. Whatever makes the folder unusable (missing folder, no
checkpoint, a config or checkpoint from another holo3d version, tensors of other shapes) raises
``ExperimentLoadError`` with one line naming what is missing or different.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch3d.implicitron.tools.config import get_default_args, registry

from holo3d.sample.input_checks import ExperimentLoadError, preflight_exp_dir
from holo3d.train.checkpoint import (
    CheckpointError,
    check_state_dict_compatible,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint_file,
    load_latest_checkpoint,
)
from holo3d.train.experiment import EXPCONFIG_NAME, Experiment, pruned_config

logger = logging.getLogger(__name__)


@dataclass
class LoadedExperiment:
    """A trained model ready for inference.

    Attributes:
        exp_dir: the experiment folder.
        config: its full training config (typed: merged onto the current default config).
        model: the model in eval mode on ``device``, with the chosen weights loaded.
        checkpoint_path: the checkpoint the weights come from.
        weights: "ema" or "model".
        epoch: the checkpoint's epoch.
    """

    exp_dir: Path
    config: DictConfig
    model: torch.nn.Module
    checkpoint_path: str
    weights: str
    epoch: int
    device: torch.device

    def info(self) -> Dict[str, Any]:
        """What identifies these weights, for manifests and reports."""
        return {
            "exp_dir": str(self.exp_dir),
            "checkpoint": self.checkpoint_path,
            "epoch": self.epoch,
            "weights": self.weights,
            "model": type(self.model).__name__,
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExperimentLoadError(f"device={name} requested but CUDA is not available here")
    return device


def load_experiment(
    exp_dir: str, epoch: int = -1, use_ema: bool = True, device: str = "auto"
) -> LoadedExperiment:
    """The experiment in ``exp_dir`` with the newest usable checkpoint (or exactly ``epoch``'s)."""
    folder = preflight_exp_dir(exp_dir)
    state = _checkpoint_state(folder, epoch)
    config = _typed_config(folder, state)
    model = build_model(config)
    weights_name = "ema" if use_ema and state.get("ema") else "model"
    weights = state[weights_name]
    try:
        check_state_dict_compatible(weights, model.state_dict(), source=state["path"])
    except CheckpointError as error:
        raise ExperimentLoadError(_one_line(error)) from None
    model.load_state_dict(weights)
    target = resolve_device(device)
    model = model.to(target).eval().requires_grad_(False)
    logger.info("loaded %s weights of %s", weights_name, state["path"])
    return LoadedExperiment(
        folder, config, model, state["path"], weights_name, int(state.get("epoch", -1)), target
    )


def _checkpoint_state(folder: Path, epoch: int) -> Dict[str, Any]:
    try:
        state = load_latest_checkpoint(folder, epoch=epoch if epoch >= 0 else None)
    except CheckpointError as error:
        raise ExperimentLoadError(_one_line(error)) from None
    if state is None and list_checkpoints(folder):
        # Every file was skipped as unusable: the newest one's reason is the one to report.
        try:
            load_checkpoint_file(list_checkpoints(folder)[-1])
        except CheckpointError as error:
            raise ExperimentLoadError(f"no usable checkpoint in {folder}: {_one_line(error)}") from None
    if state is None:
        raise ExperimentLoadError(
            f"exp_dir {folder} has no usable checkpoint (no {checkpoint_dir(folder)}/epoch_*.pth); "
            "train it first with experiment.py"
        )
    return state


def _typed_config(folder: Path, state: Dict[str, Any]) -> DictConfig:
    """expconfig.yaml (or the config stored in the checkpoint) merged onto today's defaults.

    The merge is what catches a config from another holo3d version: a key that no longer exists
    or a value of the wrong type fails here, named, before any model is built. Only the selected
    components are compared: the saved file also lists every other registered implementation's
    arguments (e.g. test-only ones), which need not exist here.
    """
    path = folder / EXPCONFIG_NAME
    if path.is_file():
        source, text = str(path), path.read_text()
    elif state.get("config"):
        source, text = f"{state['path']} (stored config)", state["config"]
    else:
        raise ExperimentLoadError(f"exp_dir {folder} has no {EXPCONFIG_NAME} and its checkpoint stores no config")
    try:
        saved = pruned_config(OmegaConf.create(text))
        return OmegaConf.merge(get_default_args(Experiment), saved)
    except Exception as error:  # noqa: BLE001 - YAML syntax, unknown keys, wrong types
        raise ExperimentLoadError(
            f"{source} does not fit this holo3d version: {_one_line(error)}"
        ) from None


def build_model(config: DictConfig) -> torch.nn.Module:
    """The configured model (random weights) without building data source or optimizer."""
    from holo3d.train.model_factory import ModelFactoryBase

    name = config.model_factory_class_type
    try:
        factory_cls = registry.get(ModelFactoryBase, name)
        factory = factory_cls(**config[f"model_factory_{name}_args"])
    except Exception as error:  # noqa: BLE001 - a component this version cannot build
        raise ExperimentLoadError(f"cannot build the model of this experiment: {_one_line(error)}") from None
    return factory.model


def _one_line(error: Exception) -> str:
    """A multi-line error message folded into one line."""
    text = ""
    for line in (line.strip() for line in str(error).splitlines()):
        if line:
            text += (" " if not text or text.endswith(":") else "; ") + line
    return text.strip() or type(error).__name__


def output_dir(loaded: LoadedExperiment, configured: str, name: str) -> Path:
    """``configured`` when given, else ``exp_dir/name``."""
    return Path(configured).expanduser().resolve() if configured else loaded.exp_dir / name
