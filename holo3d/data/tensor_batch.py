"""TensorBatch: the batch of data sources that have no posed images (voxel grids + labels, ...).

The training loop treats every batch alike: ``batch.to(device)`` and ``model(**batch, ...)``.
Image sources yield Implicitron ``FrameData`` (a Mapping with ``.to``); non-image sources yield a
``TensorBatch``, a plain dict of named tensors with the same two abilities. Being a dict, it also
survives torch's pinned-memory thread (which shallow-copies a MutableMapping key by key).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
from torch.utils.data import default_collate


class TensorBatch(dict):
    """``name -> tensor`` (other values, e.g. lists of names, are carried along unchanged)."""

    def to(self, device: Any, non_blocking: bool = False) -> "TensorBatch":
        return TensorBatch(
            {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in self.items()}
        )

    def pin_memory(self) -> "TensorBatch":
        return TensorBatch({k: v.pin_memory() if torch.is_tensor(v) else v for k, v in self.items()})

    @property
    def batch_size(self) -> int:
        """Leading size of the first tensor (every tensor in a batch shares it)."""
        for value in self.values():
            if torch.is_tensor(value):
                return value.shape[0]
        raise ValueError("TensorBatch holds no tensor")


def collate_tensor_batch(items: List[Mapping[str, Any]]) -> TensorBatch:
    """Stacks a list of per-item dicts (same keys) into one TensorBatch (torch's default_collate)."""
    collated: Dict[str, Any] = default_collate([dict(item) for item in items])
    return TensorBatch(collated)
