"""The errors users get for unusable input, and the checks cheap enough to run before any import.

``ExperimentLoadError`` (the experiment folder), ``SettingsError`` (a script setting) and
``MissingDependencyError`` (this machine) carry one line naming what is missing or wrong; the entry points print it and exit with status 2.
``preflight_exp_dir`` checks what needs only the file system, so a wrong path is reported at once
instead of after seconds of importing torch; ``ensure_writable_dir`` proves an output folder
writable before any sample is computed.
"""

from __future__ import annotations

import os
from pathlib import Path

from holo3d.io.atomic_file import probe_writable
from holo3d.io.experiment_files import CHECKPOINT_NAME

# The checkpoint naming of holo3d.train.checkpoint (not imported: it pulls in torch).


class ExperimentLoadError(RuntimeError):
    """An experiment folder that cannot be used; the message is one line naming the problem."""


class SettingsError(ValueError):
    """A script setting that cannot work (named in the message); reported as one line."""


class MissingDependencyError(RuntimeError):
    """Something this machine lacks for the requested output (e.g. an mp4 encoder)."""


def preflight_exp_dir(exp_dir: str) -> Path:
    """The resolved experiment folder; ExperimentLoadError when it is not given, does not exist, or
    holds no checkpoint file. Whether the files are usable is checked when they are loaded."""
    if not exp_dir:
        raise ExperimentLoadError("exp_dir is required: pass exp_dir=PATH (a training experiment folder)")
    folder = Path(exp_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ExperimentLoadError(f"exp_dir {folder} does not exist")
    checkpoints = folder / "checkpoints"
    if not checkpoints.is_dir() or not any(CHECKPOINT_NAME.match(p.name) for p in checkpoints.iterdir()):
        raise ExperimentLoadError(
            f"exp_dir {folder} has no usable checkpoint (no {checkpoints}/epoch_*.pth); "
            "train it first with experiment.py"
        )
    return folder


def ensure_writable_dir(folder: Path, key: str) -> Path:
    """``probe_writable`` (holo3d.io): an unwritable destination is reported before minutes of
    sampling, as a SettingsError naming ``key``."""
    try:
        return probe_writable(folder)
    except OSError as error:
        raise SettingsError(f"{key}: {folder} is not writable ({error.strerror or error})") from None
