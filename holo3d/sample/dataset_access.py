"""Reaching an experiment's dataset only when it is on disk: roots, data source, cameras, sequences.

Sampling must never need the dataset (nor trigger the built-in dataset's generation), so callers ask
``dataset_unavailable_reason`` first; reconstruction needs it and reports the same reason as an error.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.tools.config import registry
from pytorch3d.renderer import PerspectiveCameras

from holo3d.train.experiment import pruned_config

logger = logging.getLogger(__name__)

_ROOT_ENV = "CO3DV2_DATASET_ROOT"
_HOLO3D_SOURCE = "Holo3DDataSource"
_PROVIDER_ARGS = "dataset_map_provider_JsonIndexDatasetMapProviderV2_args"


def _keys_named(cfg: DictConfig, name: str, prefix: str = "") -> Iterator[Tuple[str, object]]:
    for key in cfg:
        value = cfg._get_node(key)
        full = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            yield from _keys_named(value, name, full + ".")
        elif key == name:
            yield full, cfg[key]


def _holo3d_root(source_args: DictConfig) -> str:
    """Holo3DDataSource's own resolution: explicit root, else the built-in preset's, else $CO3DV2."""
    from holo3d.data.synthetic.builtin import default_builtin_root

    root = source_args[_PROVIDER_ARGS].dataset_root
    if not root and source_args.builtin_preset:
        return default_builtin_root(source_args.builtin_preset)
    return root or os.environ.get(_ROOT_ENV, "")


def dataset_roots(config: DictConfig) -> List[str]:
    """Dataset folders the selected data source reads (an empty root means $CO3DV2_DATASET_ROOT)."""
    name = config.data_source_class_type
    if name == _HOLO3D_SOURCE and config.data_source_Holo3DDataSource_args.dataset_map_provider_class_type == (
        "JsonIndexDatasetMapProviderV2"
    ):
        return [_holo3d_root(config.data_source_Holo3DDataSource_args)]
    pruned = pruned_config(config)
    return [
        str(value) if value else os.environ.get(_ROOT_ENV, "")
        for key, value in _keys_named(pruned, "dataset_root")
        if key.startswith("data_source")
    ]


def dataset_unavailable_reason(config: DictConfig) -> Optional[str]:
    """None when every dataset folder the config names exists, else one line saying which does not.

    Nothing is generated: the built-in dataset counts as unavailable until it is on disk.
    """
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
    """The experiment's data source, as configured for training, reading the dataset on disk
    (the built-in dataset's root made explicit and never generated)."""
    import holo3d.data  # noqa: F401  (registers holo3d's data sources)

    name = config.data_source_class_type
    args = OmegaConf.create(OmegaConf.to_container(config[f"data_source_{name}_args"]))
    if name == _HOLO3D_SOURCE and _PROVIDER_ARGS in args:
        args[_PROVIDER_ARGS].dataset_root = _holo3d_root(args)
        args.generate_builtin_if_missing = False
    return registry.get(DataSourceBase, name)(**args)


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
