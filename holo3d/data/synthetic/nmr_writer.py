"""Writes rendered sequences in the NMR / DVR ShapeNet layout that ``holo3d.data.nmr`` reads.

    root/metadata.yaml                              synset -> {id, name}
    root/<synset>/softras_{train,val,test}.lst      object ids (train / dev / test sequence sets)
    root/<synset>/<object>/image/0000.png ...       RGB, one file per view (always PNG, as NMR)
    root/<synset>/<object>/mask/0000.png ...        8-bit foreground mask * 255
    root/<synset>/<object>/cameras.npz              world_mat_i, camera_mat_i for every view
    root/_holo3d_ground_truth/<synset>/<object>/    mesh.ply, occupancy_64.npy, ... (readers
                                                    ignore it: it has no softras lists)

Categories go to their ShapeNet synset folders (chair 03001627, table 04379243, car 02958343,
lamp 03636649, mug 03797390); the object id is the sequence name ("chair_007").

The writer writes what the spec has; the public NMR shape is 24 views at 64 x 64 px:
``python -m holo3d.data.synthetic --format nmr --out DIR --frames 24 --image-size 64``.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from typing import Dict, List

import numpy as np
import yaml
from PIL import Image

from holo3d.data.nmr import LIST_NAME, SPLITS, pytorch3d_to_nmr
from holo3d.data.synthetic.ground_truth import write_ground_truth
from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.spec import SyntheticSpec

CATEGORY_SYNSETS = {
    "car": "02958343",
    "chair": "03001627",
    "lamp": "03636649",
    "mug": "03797390",
    "table": "04379243",
}
GROUND_TRUTH_DIR = "_holo3d_ground_truth"
SEQUENCE_SET_SPLITS = {"train": "train", "dev": "val", "test": "test"}  # CO3D's sets -> softras lists


def synset_of(category: str) -> str:
    if category not in CATEGORY_SYNSETS:
        raise ValueError(f"category {category!r} has no ShapeNet synset; known: {sorted(CATEGORY_SYNSETS)}")
    return CATEGORY_SYNSETS[category]


class NmrWriter:
    """DatasetWriter for the NMR layout (see the module docstring)."""

    needs_renders = True  # writes images (see writer_base.DatasetWriter)

    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        self.root = root
        self.spec = spec
        self.lists: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: {split: [] for split in SPLITS})
        self.categories: Dict[str, str] = {}

    def add(self, sequence: RenderedSequence) -> None:
        synset = synset_of(sequence.category)
        folder = os.path.join(self.root, synset, sequence.name)
        views = sequence.views
        for i in range(len(sequence.cameras)):
            rgb = (views.rgb[i].numpy() * 255 + 0.5).astype(np.uint8)  # (H, W, 3)
            self._save_png(os.path.join(folder, "image", f"{i:04d}.png"), rgb)
            self._save_png(os.path.join(folder, "mask", f"{i:04d}.png"), views.mask[i].numpy().astype(np.uint8) * 255)
        self._save_cameras(os.path.join(folder, "cameras.npz"), sequence)
        write_ground_truth(sequence, self.spec, os.path.join(self.root, GROUND_TRUTH_DIR, synset, sequence.name))
        self.lists[synset][SEQUENCE_SET_SPLITS[sequence.sequence_set]].append(sequence.name)
        self.categories[synset] = sequence.category

    def _save_png(self, path: str, array: np.ndarray) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(array).save(path)

    def _save_cameras(self, path: str, sequence: RenderedSequence) -> None:
        cameras = sequence.cameras
        world, camera = pytorch3d_to_nmr(
            cameras.R, cameras.T, cameras.focal_length, cameras.principal_point, *sequence.image_size
        )
        arrays = {}
        for i in range(len(world)):
            arrays[f"world_mat_{i}"] = world[i].astype(np.float32)
            arrays[f"camera_mat_{i}"] = camera[i].astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _write_atomic(path, buffer.getvalue())

    def finish(self) -> None:
        for synset, splits in self.lists.items():
            for split, names in splits.items():
                text = "".join(f"{name}\n" for name in sorted(names))
                _write_atomic(os.path.join(self.root, synset, LIST_NAME.format(split)), text.encode("utf8"))
        metadata = {synset: {"id": synset, "name": name} for synset, name in sorted(self.categories.items())}
        _write_atomic(os.path.join(self.root, "metadata.yaml"), yaml.safe_dump(metadata).encode("utf8"))


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)
