"""Checkpoints: atomic writes, keep-last-K, fallback to the previous good file, compatibility checks.

A checkpoint is one ``torch.save`` dict at ``<exp_dir>/checkpoints/epoch_<NNNNN>.pth`` holding model,
EMA, optimizer and scheduler state, RNG states and the loop position. It is written to a temporary
name, fsync'd and renamed, so a crash mid-write never leaves a file that looks like a checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from holo3d.io.atomic_file import open_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
_NAME_PATTERN = re.compile(r"^epoch_(\d{5,})\.pth$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, from another version, or of another model."""


def checkpoint_dir(exp_dir: str | os.PathLike) -> Path:
    return Path(exp_dir) / "checkpoints"


def checkpoint_path(exp_dir: str | os.PathLike, epoch: int) -> Path:
    return checkpoint_dir(exp_dir) / f"epoch_{epoch:05d}.pth"


def list_checkpoints(exp_dir: str | os.PathLike) -> List[Path]:
    """Checkpoint files of an experiment, oldest epoch first (temporary files are ignored)."""
    folder = checkpoint_dir(exp_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file that is renamed over ``path`` only when complete."""
    with open_atomic(path) as stream:
        torch.save(obj, stream)


def save_checkpoint(exp_dir: str | os.PathLike, epoch: int, state: Dict[str, Any], keep_last: int) -> Path:
    """Writes ``state`` as the checkpoint of ``epoch`` and deletes all but the newest ``keep_last``."""
    path = checkpoint_path(exp_dir, epoch)
    atomic_torch_save({"format_version": CHECKPOINT_FORMAT_VERSION, **state}, path)
    if keep_last > 0:
        for old in list_checkpoints(exp_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint_file(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Loads one checkpoint, raising CheckpointError that names the file when it is unusable."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # truncated zip, pickle garbage, permission...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {error}") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'model' entry; not a holo3d checkpoint")
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this holo3d reads version "
            f"{CHECKPOINT_FORMAT_VERSION}"
        )
    return state


def load_latest_checkpoint(
    exp_dir: str | os.PathLike, epoch: Optional[int] = None, map_location: Any = "cpu"
) -> Optional[Dict[str, Any]]:
    """The newest usable checkpoint (or exactly ``epoch``'s); None when the experiment has none.

    A corrupt newest file is reported and skipped in favour of the previous good one; a requested
    epoch that is missing or corrupt is an error.
    """
    if epoch is not None and epoch >= 0:
        path = checkpoint_path(exp_dir, epoch)
        if not path.is_file():
            available = [p.name for p in list_checkpoints(exp_dir)]
            raise CheckpointError(f"no checkpoint {path}; available: {available or 'none'}")
        return {**load_checkpoint_file(path, map_location), "path": str(path)}
    for path in reversed(list_checkpoints(exp_dir)):
        try:
            return {**load_checkpoint_file(path, map_location), "path": str(path)}
        except CheckpointError as error:
            logger.warning("%s; falling back to the previous checkpoint", error)
    return None


def check_state_dict_compatible(
    model_state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raises CheckpointError naming every missing, unexpected or reshaped tensor."""
    missing = sorted(set(expected) - set(model_state))
    unexpected = sorted(set(model_state) - set(expected))
    reshaped = [
        f"{name}: checkpoint {tuple(model_state[name].shape)} vs model {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in model_state and tuple(model_state[name].shape) != tuple(tensor.shape)
    ]
    if missing or unexpected or reshaped:
        lines = [f"{source} does not match the configured model:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)):
            if items:
                shown = ", ".join(items[:12]) + (f" (+{len(items) - 12} more)" if len(items) > 12 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
