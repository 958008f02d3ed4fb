"""Atomic file writes for checkpoints, configs and results: temp name, fsync, rename.

A crash mid-write leaves the previous file or nothing, never a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """Binary stream whose content replaces ``path`` only if the ``with`` block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp_name, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is flushed too.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    with open_atomic(path) as stream:
        stream.write(text.encode("utf-8"))


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (same filesystem, so a final rename is atomic),
    for writers such as video encoders that need a file name rather than a stream."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def probe_writable(folder: Path) -> Path:
    """Creates ``folder`` and writes, fsyncs and deletes a small file in it, so an unwritable
    destination (read-only or immutable folder, a file in the way, a full disk) is found before any
    work is spent. Raises the OSError of the failing step (callers name their setting)."""
    folder = Path(folder)
    # A unique name: ranks on several nodes share exp_dir and may have
    # equal PIDs (containers).
    probe = folder / f".write_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as stream:
            stream.write(b"ok")
            os.fsync(stream.fileno())
        probe.unlink()
    except OSError:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)  # a full disk may leave it half-written
        raise
    return folder
