"""Collated FrameData batches that survive the DataLoader's pinned-memory thread.

torch's ``pin_memory`` rebuilds a read-only Mapping as ``type(batch)(pinned_dict)``, which puts the
whole dict into FrameData's first field and leaves ``image_rgb`` and the rest None. A mutable
mapping is instead shallow-copied and updated key by key, which FrameData's fields allow. Pinned
batches copy to the GPU about 6x faster (0.18 -> 0.03 s for 8 scenes x 16 frames at 800 px on an
H200, BENCHMARKS.md), a copy that otherwise costs more than a whole training step.
"""

import dataclasses
from collections.abc import MutableMapping
from typing import Any, List

from pytorch3d.implicitron.dataset.frame_data import FrameData


@dataclasses.dataclass
class PinnableFrameData(FrameData, MutableMapping):
    """FrameData whose fields can be replaced by key (what torch's pinning thread does)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(f"FrameData has no field {key!r}")
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("FrameData fields cannot be deleted")


def collate_pinnable(frames: List[FrameData]) -> PinnableFrameData:
    """FrameData.collate, returned as a PinnableFrameData (same fields, same values)."""
    collated = type(frames[0]).collate(frames)
    values = {f.name: getattr(collated, f.name) for f in dataclasses.fields(collated) if f.init}
    batch = PinnableFrameData(**values)
    batch._uncropped = collated._uncropped
    return batch
