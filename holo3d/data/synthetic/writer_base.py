"""The interface every dataset writer implements (CO3Dv2 now; SRN, NMR and voxel writers later).

Generation renders format-independent ``RenderedSequence``s and hands them to a writer one at a
time, so a new on-disk format is a new writer class and nothing else changes.
"""

from __future__ import annotations

from typing import Protocol

from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.spec import SyntheticSpec


class DatasetWriter(Protocol):
    """Writes a dataset under ``root`` (a fresh directory) for ``spec``.

    ``needs_renders`` (class attribute, every writer declares it): False for formats that store no images (the
    voxel writer), so generation skips rendering for them.
    ``render_cameras`` (optional class attribute): a function of the sequence's ``OrbitCameras``
    giving the cameras the format stores (SRN: one shared intrinsic matrix), so generation renders
    those cameras once instead of the writer rendering again.
    """

    needs_renders: bool

    def __init__(self, root: str, spec: SyntheticSpec) -> None: ...

    def add(self, sequence: RenderedSequence) -> None:
        """Writes one sequence's files (called once per sequence, categories in order)."""

    def finish(self) -> None:
        """Writes the dataset-level index files after the last sequence."""
