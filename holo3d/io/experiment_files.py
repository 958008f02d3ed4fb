"""Where an experiment folder keeps its files, for readers below train/ and sample/ (e.g. a model
that loads another experiment's weights, as the voxel LDM loads its frozen autoencoder).

    <exp_dir>/expconfig.yaml                 the resolved training config (written by Experiment.run)
    <exp_dir>/checkpoints/epoch_NNNNN.pth    one torch.save dict per saved epoch (train/checkpoint.py)
    <exp_dir>/checkpoints/epoch_NNNNN_iter_IIIIIIII.pth   a stop in the middle of epoch NNNNN

Pure path and YAML helpers: no torch.load here, no holo3d imports (io/ sits below every package).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Tuple

from omegaconf import DictConfig, OmegaConf

EXPCONFIG_NAME = "expconfig.yaml"  # the same name as holo3d.train.experiment.EXPCONFIG_NAME
# The names holo3d.train.checkpoint writes (it imports these): end-of-epoch and mid-epoch (stop) files.
CHECKPOINT_NAME = re.compile(r"^epoch_(\d{5,})(?:_iter_(\d{8,}))?\.pth$")


class ExperimentFilesError(FileNotFoundError):
    """An experiment folder that lacks what a reader needs; the message names the path."""


def read_experiment_config(exp_dir: str | os.PathLike, what: str = "exp_dir") -> DictConfig:
    """``<exp_dir>/expconfig.yaml`` as a DictConfig; ``what`` names the setting in errors."""
    folder = Path(exp_dir).expanduser()
    if not str(exp_dir) or not folder.is_dir():
        raise ExperimentFilesError(f"{what}={str(exp_dir)!r} is not an experiment folder (no such folder)")
    path = folder / EXPCONFIG_NAME
    if not path.is_file():
        raise ExperimentFilesError(f"{what}={str(exp_dir)!r} has no {EXPCONFIG_NAME}: train it with "
                                   "experiment.py first")
    try:
        return OmegaConf.load(path)
    except Exception as error:  # noqa: BLE001 - YAML syntax
        raise ExperimentFilesError(f"{path} is not readable YAML: {error}") from None


def checkpoint_order_key(path: Path) -> Optional[Tuple[int, int]]:
    """(epoch, iteration) for ordering; end-of-epoch files sort before mid-epoch ones of the same
    epoch, which continue from them. None for files that are not checkpoints."""
    match = CHECKPOINT_NAME.match(path.name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else -1


def newest_checkpoint(exp_dir: str | os.PathLike) -> Optional[Path]:
    """The newest checkpoint under ``<exp_dir>/checkpoints``, a stop's mid-epoch one included (None
    when there is none)."""
    folder = Path(exp_dir).expanduser() / "checkpoints"
    if not folder.is_dir():
        return None
    found = [(key, p) for p in folder.iterdir() if (key := checkpoint_order_key(p)) is not None]
    return max(found)[1] if found else None
