"""The on-disk formats the built-in dataset can be written in: ``--format NAME`` -> writer class.

Writers are named by import path and imported on use, so a format's dependencies (h5py for the
voxel writer, ...) load only when that format is written. Each writer implements
``writer_base.DatasetWriter``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict

WRITERS: Dict[str, str] = {
    "co3d": "holo3d.data.synthetic.co3d_writer:Co3dWriter",
    "srn": "holo3d.data.synthetic.srn_writer:SrnWriter",
    "nmr": "holo3d.data.synthetic.nmr_writer:NmrWriter",
    "voxels": "holo3d.data.synthetic.voxel_writer:VoxelWriter",
}


def get_writer(name: str) -> Callable:
    """The writer class of format ``name`` (one of ``WRITERS``)."""
    if name not in WRITERS:
        raise ValueError(f"unknown dataset format {name!r}; formats: {sorted(WRITERS)}")
    module, attr = WRITERS[name].split(":")
    return getattr(importlib.import_module(module), attr)
