"""Checkpoints: atomic writes, keep-last-K, fallback to the previous good file, compatibility checks.

A checkpoint is one ``torch.save`` dict at ``<exp_dir>/checkpoints/epoch_<NNNNN>.pth`` holding model,
EMA, optimizer and scheduler state, RNG states and the loop position. A run stopped by a signal in
the middle of an epoch writes ``epoch_<NNNNN>_iter_<IIIIIIII>.pth`` instead (N completed epochs, I
iterations), so it never replaces the validated end-of-epoch file of the same N. Files are written
to a temporary name, fsync'd and renamed, so a crash mid-write never leaves a file that looks like a
checkpoint; the hidden temporaries a kill -9 leaves are removed when training starts again.

Loading never mistakes an unreadable file for an absent one: a damaged (corrupt, truncated) newest
file falls back to the previous good one, but a file that cannot be read (permission, I/O error,
out of memory), or a folder where no file loads, is an error naming every file and its cause, so a
run never restarts at epoch 0 over good checkpoints.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from holo3d.io.atomic_file import open_atomic
from holo3d.io.experiment_files import checkpoint_order_key

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
# what open_atomic leaves behind when the process dies mid-write: ".<final name>.<random>.tmp"
_TEMPORARY_PATTERN = re.compile(r"^\.epoch_\d{5,}(?:_iter_\d{8,})?\.pth\..+\.tmp$")

# CheckpointError.kind values; only CORRUPT files are skipped in favour of an older checkpoint
CORRUPT, UNREADABLE, INCOMPATIBLE = "corrupt", "unreadable", "incompatible"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, from another version, or of another model.

    ``kind`` is CORRUPT (damaged content), UNREADABLE (permission, I/O error, out of memory: the
    file may well be good) or INCOMPATIBLE (another format version or model).
    """

    def __init__(self, message: str, kind: str = INCOMPATIBLE):
        super().__init__(message)
        self.kind = kind


def checkpoint_dir(exp_dir: str | os.PathLike) -> Path:
    return Path(exp_dir) / "checkpoints"


def checkpoint_path(exp_dir: str | os.PathLike, epoch: int, iteration: Optional[int] = None) -> Path:
    """The end-of-epoch checkpoint of ``epoch`` completed epochs, or with ``iteration`` the
    mid-epoch (stop) checkpoint written after that many iterations."""
    suffix = f"_iter_{iteration:08d}" if iteration is not None else ""
    return checkpoint_dir(exp_dir) / f"epoch_{epoch:05d}{suffix}.pth"


def list_checkpoints(exp_dir: str | os.PathLike) -> List[Path]:
    """Checkpoint files of an experiment, oldest first (temporary files are ignored)."""
    folder = checkpoint_dir(exp_dir)
    if not folder.is_dir():
        return []
    found = [(key, p) for p in folder.iterdir() if (key := checkpoint_order_key(p)) is not None]
    return [path for _, path in sorted(found)]


def remove_stale_temporaries(exp_dir: str | os.PathLike) -> List[Path]:
    """Deletes the hidden partial files of checkpoint writes a killed process left behind (they
    are as large as a checkpoint each). Call only where no other process is writing checkpoints
    of this experiment, i.e. at the start of training on the main process."""
    folder = checkpoint_dir(exp_dir)
    stale = [p for p in folder.iterdir() if _TEMPORARY_PATTERN.match(p.name)] if folder.is_dir() else []
    for path in stale:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        logger.info("removed %s (%.1f MB), left by an interrupted checkpoint write", path, size / 2**20)
    return stale


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file that is renamed over ``path`` only when complete."""
    with open_atomic(path) as stream:
        torch.save(obj, stream)


def save_checkpoint(exp_dir: str | os.PathLike, epoch: int, state: Dict[str, Any], keep_last: int) -> Path:
    """Writes ``state`` as the checkpoint of ``epoch`` and deletes all but the newest ``keep_last``.

    A state with ``batch_in_epoch > 0`` (a stop in the middle of an epoch) gets the mid-epoch name;
    an end-of-epoch checkpoint makes the older mid-epoch ones obsolete, so they are deleted.
    """
    mid_epoch = state.get("batch_in_epoch", 0) > 0
    path = checkpoint_path(exp_dir, epoch, state["iteration"] if mid_epoch else None)
    atomic_torch_save({"format_version": CHECKPOINT_FORMAT_VERSION, **state}, path)
    existing = list_checkpoints(exp_dir)
    obsolete = [] if mid_epoch else [p for p in existing if p != path and checkpoint_order_key(p)[1] >= 0]
    if keep_last > 0:
        obsolete += existing[:-keep_last]
    for old in dict.fromkeys(obsolete):
        old.unlink(missing_ok=True)
    return path


def load_checkpoint_file(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Loads one checkpoint, raising CheckpointError that names the file and the real cause."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except PermissionError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: permission denied ({error}); "
                              "check its owner and mode", UNREADABLE) from error
    except MemoryError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: out of memory while loading it",
                              UNREADABLE) from error
    except OSError as error:
        if _is_damage(error):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {error}", CORRUPT) from error
        raise CheckpointError(f"checkpoint {path} cannot be read: I/O error ({error})", UNREADABLE) from error
    except Exception as error:  # truncated zip, pickle garbage, ...: the content is damaged
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {error}", CORRUPT) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'model' entry; not a holo3d checkpoint", CORRUPT)
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this holo3d reads version "
            f"{CHECKPOINT_FORMAT_VERSION}"
        )
    return state


def _is_damage(error: OSError) -> bool:
    """OSErrors that describe the file's content rather than the system: those without an errno
    (raised by readers of the zip / pickle data, not by the operating system)."""
    return error.errno is None


def load_latest_checkpoint(
    exp_dir: str | os.PathLike, epoch: Optional[int] = None, map_location: Any = "cpu"
) -> Optional[Dict[str, Any]]:
    """The newest usable checkpoint (or exactly ``epoch``'s); None when the experiment has none.

    A corrupt newest file is reported and skipped in favour of the previous good one. A file that
    cannot be read (permission, I/O, memory) is never skipped, and when checkpoints exist but none
    loads, CheckpointError names every file and its cause: starting over would overwrite them.
    A requested epoch that is missing or unusable is an error.
    """
    if epoch is not None and epoch >= 0:
        path = checkpoint_path(exp_dir, epoch)
        if not path.is_file():
            available = [p.name for p in list_checkpoints(exp_dir)]
            raise CheckpointError(f"no checkpoint {path}; available: {available or 'none'}")
        return {**load_checkpoint_file(path, map_location), "path": str(path)}
    failures: List[CheckpointError] = []
    for path in reversed(list_checkpoints(exp_dir)):
        try:
            state = load_checkpoint_file(path, map_location)
        except CheckpointError as error:
            failures.append(error)
            continue
        if all(error.kind == CORRUPT for error in failures):
            for error in failures:
                logger.warning("%s; falling back to the previous checkpoint %s", error, path.name)
            return {**state, "path": str(path)}
        # an unreadable newer file may be good: going on from this older one would train over it
        raise CheckpointError(_refusal(exp_dir, failures, usable=path), UNREADABLE)
    if not failures:
        return None
    raise CheckpointError(_refusal(exp_dir, failures), failures[0].kind)


def _refusal(exp_dir, failures: List[CheckpointError], usable: Optional[Path] = None) -> str:
    why = ("a newer checkpoint cannot be read and is never skipped" if usable is not None
           else "no checkpoint of this experiment loads")
    lines = [f"refusing to start: {why}; starting over would overwrite them. Fix or move the files "
             f"in {checkpoint_dir(exp_dir)} (or use a new exp_dir):"]
    lines += [f"  {error}" for error in failures]
    if usable is not None:
        lines.append(f"  ({usable.name} loads; move the newer files away to resume from it)")
    return "\n".join(lines)


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
