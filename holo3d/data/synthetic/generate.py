"""Generates a synthetic dataset: render every (category, sequence), hand it to a writer, and
publish the result atomically (a temporary sibling directory renamed into place at the end), so an
interrupted run never leaves something that looks like a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable, Optional

from tqdm import tqdm

from holo3d.data.synthetic.co3d_writer import Co3dWriter
from holo3d.data.synthetic.sequence import render_sequence
from holo3d.data.synthetic.spec import SyntheticSpec

MANIFEST = "holo3d_synthetic.json"  # written last: its presence marks a complete dataset
FORMAT_VERSION = 1


def read_manifest(root: str) -> Optional[dict]:
    """The manifest of a complete generated dataset at ``root``, or None."""
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def generate_dataset(
    spec: SyntheticSpec,
    out: str,
    device: str = "cpu",
    writer_factory: Callable = Co3dWriter,
    progress: bool = True,
    preset: Optional[str] = None,
    fmt: str = "co3d",
) -> str:
    """Renders ``spec`` into a new directory ``out`` (which must not exist); returns ``out``."""
    out = os.path.abspath(out)
    if os.path.exists(out):
        raise FileExistsError(f"{out} already exists; choose another --out or delete it first")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    partial = f"{out}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        seconds = _render_all(spec, partial, device, writer_factory, progress)
        _write_manifest(partial, spec, preset, device, seconds, fmt)
        os.rename(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _render_all(spec, folder, device, writer_factory, progress) -> float:
    start = time.perf_counter()
    os.makedirs(folder)
    writer = writer_factory(folder, spec)
    render = writer_factory.needs_renders  # False for formats without images (voxels)
    jobs = [(c, i) for c in spec.categories for i in range(spec.sequences)]
    for category, index in tqdm(jobs, desc="synthetic sequences", unit="seq", disable=not progress):
        writer.add(render_sequence(spec, category, index, device=device, render=render,
                                   camera_transform=getattr(writer_factory, "render_cameras", None)))
    writer.finish()
    return time.perf_counter() - start


def _write_manifest(folder, spec, preset, device, seconds, fmt) -> None:
    manifest = {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "preset": preset,
        "spec": spec.as_dict(),
        "device": device,
        "generation_seconds": round(seconds, 1),
    }
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
