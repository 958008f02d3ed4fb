"""Writes the built-in objects' occupancy as ShapeNet voxel datasets, in both layouts holo3d reads:

    root/<category>_voxels_{train,val,test}.npy     course layout: float32 (N, R, R, R) in {0, 1}
    root/<category>_voxels_{train,val,test}.txt     object names, one a line (holo3d's addition)
    root/imnet/<synset>_vox256/<synset>_vox256_img_{train,test}.hdf5   IM-NET layout: ``voxels``
                                                    uint8 (N, R, R, R, 1), one gzip chunk per object
    root/imnet/<synset>_vox256/<synset>_vox256_img_{train,test}.txt    names "<synset>/<sequence>"

R = ``spec.occupancy_resolution`` (64 by default, IM-NET's size); the grid is
``RenderedSequence.obj.occupancy`` stored in the files' (x, y, z) axis order (see
holo3d.data.voxels: reading it back gives the object's occupancy exactly). Sequence sets map to
splits as train -> train, dev -> val, test -> test for npy; IM-NET has no validation split, so
dev sequences join its test split (held out either way).

Generation hands every writer fully rendered sequences (``writer_base.DatasetWriter``); rendering
the views is wasted work for this format, but it keeps one generation path for every format.
Only ``obj``, ``category``, ``name`` and ``sequence_set`` are used here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List, Tuple

import h5py
import numpy as np

from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.spec import SyntheticSpec
from holo3d.data.voxels import (
    IMNET_KEY,
    SYNSETS,
    from_world_frame,
    imnet_names_path,
    imnet_path,
    npy_names_path,
    npy_path,
)

NPY_SPLIT = {"train": "train", "dev": "val", "test": "test"}
IMNET_SPLIT = {"train": "train", "dev": "test", "test": "test"}
IMNET_FOLDER = "imnet"


class VoxelWriter:
    """DatasetWriter for the voxel layouts above; grids are kept bit-packed until ``finish``."""

    needs_renders = False  # occupancy only: generation skips rendering for this format

    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        unknown = [c for c in spec.categories if c not in SYNSETS]
        if unknown:
            raise ValueError(f"category {unknown[0]!r} has no ShapeNet synset in holo3d.data.voxels.SYNSETS")
        self.root, self.spec = root, spec
        self.resolution = spec.occupancy_resolution
        # (category, sequence set) -> [(name, packed (R^3 / 8,) uint8)]: 8x less memory than bool grids
        self.items: Dict[Tuple[str, str], List[Tuple[str, np.ndarray]]] = defaultdict(list)

    def add(self, sequence: RenderedSequence) -> None:
        grid = sequence.obj.occupancy(self.resolution, self.spec.volume_extent)  # (D, H, W) bool
        self.items[sequence.category, sequence.sequence_set].append((sequence.name, np.packbits(grid)))

    def finish(self) -> None:
        for category in sorted({c for c, _ in self.items}):
            for split in dict.fromkeys(NPY_SPLIT.values()):
                self._write_npy(category, split)
            for split in dict.fromkeys(IMNET_SPLIT.values()):
                self._write_imnet(category, split)

    def _gather(self, category: str, split: str, mapping: Dict[str, str]) -> List[Tuple[str, np.ndarray]]:
        """The items of ``category`` whose sequence set maps to ``split``, in sequence order."""
        sets = [s for s, target in mapping.items() if target == split]
        return [item for s in sets for item in self.items.get((category, s), [])]

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        """(R, R, R) bool in the files' (x, y, z) axis order."""
        r = self.resolution
        grid = np.unpackbits(packed, count=r**3).astype(bool).reshape(r, r, r)  # (D, H, W)
        return from_world_frame(grid)  # (x, y, z)

    def _write_npy(self, category: str, split: str) -> None:
        items = self._gather(category, split, NPY_SPLIT)
        if not items:
            return
        path = npy_path(self.root, category, split)
        temp = f"{path}.partial-{os.getpid()}"
        r = self.resolution
        out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=(len(items), r, r, r))
        for i, (_, packed) in enumerate(items):
            out[i] = self._unpack(packed)
        out.flush()
        del out
        os.replace(temp, path)
        _write_names(npy_names_path(path), [name for name, _ in items])

    def _write_imnet(self, category: str, split: str) -> None:
        items = self._gather(category, split, IMNET_SPLIT)
        if not items:
            return
        synset = SYNSETS[category]
        path = imnet_path(os.path.join(self.root, IMNET_FOLDER), synset, split)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = f"{path}.partial-{os.getpid()}"
        r = self.resolution
        with h5py.File(temp, "w") as handle:
            voxels = handle.create_dataset(
                IMNET_KEY, (len(items), r, r, r, 1), np.uint8, chunks=(1, r, r, r, 1), compression="gzip"
            )
            for i, (_, packed) in enumerate(items):
                voxels[i] = self._unpack(packed)[..., None].astype(np.uint8)
        os.replace(temp, path)
        _write_names(imnet_names_path(path), [f"{synset}/{name}" for name, _ in items])


def _write_names(path: str, names: List[str]) -> None:
    temp = f"{path}.partial-{os.getpid()}"
    with open(temp, "w") as f:
        f.writelines(f"{name}\n" for name in names)
    os.replace(temp, path)
