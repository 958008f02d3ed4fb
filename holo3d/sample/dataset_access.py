"""Reaching an experiment's dataset only when it is on disk: roots, data source, cameras, sequences.

Sampling must never need the dataset (nor trigger the built-in dataset's generation), so callers ask
``dataset_unavailable_reason`` first; reconstruction needs it and reports the same reason as an error.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator, List, Optional, Tuple

import torch
from omegaconf import DictConfig
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.tools.config import registry
from pytorch3d.renderer import PerspectiveCameras

from holo3d.train.experiment import pruned_config

logger = logging.getLogger(__name__)

_ROOT_ENV = "CO3DV2_DATASET_ROOT"


def _keys_named(cfg: DictConfig, name: str, prefix: str = "") -> Iterator[Tuple[str, object]]:
    for key in cfg:
        value = cfg._get_node(key)
        full = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            yield from _keys_named(value, name, full + ".")
        elif key == name:
            yield full, cfg[key]


def dataset_roots(config: DictConfig) -> List[str]:
    """Dataset folders the selected data source reads (empty roots fall back to $CO3DV2_DATASET_ROOT)."""
    pruned = pruned_config(config)
    roots = []
    for key, value in _keys_named(pruned, "dataset_root"):
        if key.startswith("data_source"):
            roots.append(str(value) if value else os.environ.get(_ROOT_ENV, ""))
    return roots


def dataset_unavailable_reason(config: DictConfig) -> Optional[str]:
    """None when every dataset folder the config names exists, else one line saying which does not."""
    roots = dataset_roots(config)
    if not roots:
        return "the experiment's data source names no dataset_root"
    for root in roots:
        if not root:
            return f"dataset_root is empty and ${_ROOT_ENV} is not set"
        if not os.path.isdir(root):
            return f"dataset folder {root} does not exist"
    return None


def build_data_source(config: DictConfig) -> DataSourceBase:
    """The experiment's data source, as configured for training."""
    import holo3d.data  # noqa: F401  (registers holo3d's data sources)

    name = config.data_source_class_type
    source_cls = registry.get(DataSourceBase, name)
    return source_cls(**config[f"data_source_{name}_args"])


def dataset_cameras(dataset, max_frames: int = 400) -> PerspectiveCameras:
    """Cameras (R, T only) of up to ``max_frames`` evenly spread frames of an Implicitron dataset.

    JSON-indexed datasets give them from the annotations without reading any image.
    """
    n = len(dataset)
    index = torch.linspace(0, n - 1, min(n, max_frames)).round().long().unique().tolist()
    annots = getattr(dataset, "frame_annots", None)
    if annots is not None:
        views = [annots[i]["frame_annotation"].viewpoint for i in index]
        R = torch.tensor([v.R for v in views], dtype=torch.float32)
        T = torch.tensor([v.T for v in views], dtype=torch.float32)
        return PerspectiveCameras(R=R, T=T)
    cameras = [dataset[i].camera for i in index[:64]]  # reads images: keep it small
    return PerspectiveCameras(R=torch.cat([c.R for c in cameras]), T=torch.cat([c.T for c in cameras]))


def training_cameras_if_available(config: DictConfig) -> Tuple[Optional[PerspectiveCameras], str]:
    """(training cameras, "") when the dataset is on disk, else (None, why not)."""
    reason = dataset_unavailable_reason(config)
    if reason is not None:
        return None, reason
    try:
        datasets, _ = build_data_source(config).get_datasets_and_dataloaders()
        if datasets.train is None or len(datasets.train) == 0:
            return None, "the dataset has no training frames"
        return dataset_cameras(datasets.train), ""
    except Exception as error:  # noqa: BLE001 - any failure just means "no cameras"
        return None, f"the dataset could not be read ({type(error).__name__}: {error})"


def sequence_frames(dataset, name: str) -> List[int]:
    """Dataset indices of sequence ``name``'s frames in capture order."""
    return list(dataset.sequence_indices_in_order(name))


def collate_frames(dataset, indices: List[int]) -> FrameData:
    """One FrameData batch of the given frames, in the given order."""
    return FrameData.collate([dataset[i] for i in indices])
