"""The built-in dataset: generated on first use, in a well-known place, never half-written.

``ensure_builtin_dataset(root, preset)`` returns ``root`` holding a complete dataset of the preset,
generating it (with a message saying so) when it is missing. Several processes (e.g. the ranks of
a multi-GPU run) may call it at once: a file lock makes one of them generate while the others wait.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Optional

from holo3d.data.synthetic.generate import generate_dataset, read_manifest
from holo3d.data.synthetic.spec import get_preset
from holo3d.data.synthetic.writers import get_writer

ROOT_ENV = "HOLO3D_DATA_ROOT"


def default_builtin_root(preset: str = "demo", fmt: str = "co3d") -> str:
    """``$HOLO3D_DATA_ROOT/builtin_<preset>`` (default ``./data/builtin_<preset>``) for the CO3Dv2
    format, ``.../builtin_<preset>_<fmt>`` for the others (see ``writers.WRITERS``)."""
    name = f"builtin_{preset}" if fmt == "co3d" else f"builtin_{preset}_{fmt}"
    return os.path.abspath(os.path.join(os.environ.get(ROOT_ENV, "data"), name))


def ensure_builtin_dataset(
    root: Optional[str] = None, preset: str = "demo", device: str = "cpu", fmt: str = "co3d"
) -> str:
    """Makes sure ``root`` (default: default_builtin_root(preset, fmt)) holds the built-in dataset
    written in format ``fmt`` (one of ``writers.WRITERS``).

    Raises:
        FileExistsError: ``root`` exists but is not a complete generated dataset (it is never
            overwritten).
    """
    root = os.path.abspath(root or default_builtin_root(preset, fmt))
    if _check_existing(root, preset):
        return root
    with _lock(root):
        if _check_existing(root, preset):  # another process finished it while we waited
            return root
        spec = get_preset(preset)
        print(
            f"holo3d: built-in dataset '{preset}' ({fmt} format) not found at {root}; generating it now "
            f"({len(spec.categories)} categories x {spec.sequences} sequences x {spec.frames} frames "
            f"at {spec.image_size[0]}x{spec.image_size[1]} px on {device}) ...",
            file=sys.stderr,
            flush=True,
        )
        start = time.perf_counter()
        generate_dataset(spec, root, device=device, writer_factory=get_writer(fmt), preset=preset, fmt=fmt)
        seconds = time.perf_counter() - start
        print(f"holo3d: built-in dataset ready at {root} ({seconds:.0f} s)", file=sys.stderr)
    return root


def _check_existing(root: str, preset: str) -> bool:
    """True if root holds a complete dataset; raises if it holds something else."""
    if not os.path.exists(root):
        return False
    manifest = read_manifest(root)
    if manifest is None:
        raise FileExistsError(
            f"{root} exists but is not a complete holo3d synthetic dataset (no manifest); "
            f"it holds {sorted(os.listdir(root))[:10]}. Delete it or point dataset_root elsewhere."
        )
    if manifest.get("preset") != preset:
        warnings.warn(f"{root} holds the '{manifest.get('preset')}' preset, not '{preset}'; using it as is")
    return True


@contextmanager
def _lock(root: str):
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(f"{root}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
