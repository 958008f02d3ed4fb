"""Holo3DDataSource: CO3Dv2 (real, or the built-in synthetic dataset written in its format) through
Implicitron's JsonIndexDatasetMapProviderV2, with multi-scene data loaders.

Where the data comes from (``dataset_map_provider_JsonIndexDatasetMapProviderV2_args.dataset_root``):
  * set explicitly: that CO3Dv2 root is read as is (never generated);
  * empty and ``builtin_preset`` set (the default, "demo"): the built-in dataset at
    ``$HOLO3D_DATA_ROOT/builtin_<preset>`` (default ./data/builtin_<preset>), generated there on
    first use when ``generate_builtin_if_missing``;
  * empty and ``builtin_preset=""``: the ``CO3DV2_DATASET_ROOT`` environment variable.

Before Implicitron loads anything the root, categories, subset and annotation files are checked,
so a wrong path or a broken file gets an error that names it and lists what is there.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import os
from typing import Optional, Tuple

import torch
from omegaconf import DictConfig
from pytorch3d.implicitron.dataset.data_loader_map_provider import DataLoaderMap, DataLoaderMapProviderBase
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap, DatasetMapProviderBase
from pytorch3d.implicitron.dataset.json_index_dataset_map_provider_v2 import JsonIndexDatasetMapProviderV2
from pytorch3d.implicitron.tools.config import registry, run_auto_creation
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.data import multi_scene_provider, robust_dataset  # noqa: F401  (registers classes)
from holo3d.data.scene_batch import SceneSource
from holo3d.data.dataset_layout import DatasetLayoutError, check_annotations, check_category, check_root
from holo3d.data.synthetic.builtin import default_builtin_root, ensure_builtin_dataset

CO3D_ROOT_ENV = "CO3DV2_DATASET_ROOT"
PROVIDER_ARGS = "dataset_map_provider_JsonIndexDatasetMapProviderV2_args"


@registry.register
class Holo3DDataSource(DataSourceBase, SceneSource):
    """Data source of the holo3d experiments (see the module docstring).

    Members:
        dataset_map_provider_class_type: Implicitron's JsonIndexDatasetMapProviderV2; its
            defaults here: category "chair", subset "fewview_dev", dataset_root "" (resolved as
            above), dataset_class_type "Holo3DJsonIndexDataset" (skips unreadable frames).
        data_loader_map_provider_class_type: MultiSceneDataLoaderMapProvider.
        builtin_preset: preset of the built-in dataset used when dataset_root is empty
            ("tiny" | "demo" | "full"); "" means use CO3DV2_DATASET_ROOT instead.
        generate_builtin_if_missing: generate the built-in dataset on first use.
        builtin_device: device for that generation; "auto" = cuda when available.
        validate_annotations: parse-check the annotation files first (errors name file and field).
    """

    dataset_map_provider_class_type: str = "JsonIndexDatasetMapProviderV2"
    dataset_map_provider: DatasetMapProviderBase
    data_loader_map_provider_class_type: str = "MultiSceneDataLoaderMapProvider"
    data_loader_map_provider: DataLoaderMapProviderBase
    builtin_preset: str = "demo"
    generate_builtin_if_missing: bool = True
    builtin_device: str = "auto"
    validate_annotations: bool = True

    @classmethod
    def dataset_map_provider_tweak_args(cls, type_, args: DictConfig) -> None:
        """holo3d's defaults for Implicitron's CO3Dv2 provider (the only place they are set)."""
        if type_ is JsonIndexDatasetMapProviderV2:
            args.category = "chair"
            args.subset_name = "fewview_dev"
            args.dataset_root = ""  # resolved in __post_init__, not frozen at import time
            args.dataset_class_type = "Holo3DJsonIndexDataset"

    def __post_init__(self) -> None:
        if self.dataset_map_provider_class_type == "JsonIndexDatasetMapProviderV2":
            self._prepare_co3d_root(getattr(self, PROVIDER_ARGS))
        run_auto_creation(self)
        self._all_train_cameras_cache: Optional[Tuple[Optional[CamerasBase]]] = None

    def _prepare_co3d_root(self, args) -> None:
        """Resolves dataset_root (generating the built-in dataset if needed) and checks the files."""
        root = args["dataset_root"]
        if not root and self.builtin_preset:
            root = default_builtin_root(self.builtin_preset)
            if self.generate_builtin_if_missing:
                ensure_builtin_dataset(root, self.builtin_preset, device=self._builtin_device())
            elif not os.path.isdir(root):
                raise DatasetLayoutError(
                    f"the built-in dataset is not at {root} and generate_builtin_if_missing=False; "
                    f"make it with: python -m holo3d.data.synthetic --out {root} --preset {self.builtin_preset}"
                )
        root = root or os.environ.get(CO3D_ROOT_ENV, "")
        check_root(root)
        args["dataset_root"] = root
        dataset_args = args.get(f"dataset_{args['dataset_class_type']}_args", {})
        for category in [c.strip() for c in args["category"].split(",")]:
            check_category(root, category, args["subset_name"], need_eval_batches=args["load_eval_batches"])
            if self.validate_annotations:
                check_annotations(root, category, require_mask_mass=dataset_args.get("remove_empty_masks", True))

    def _builtin_device(self) -> str:
        if self.builtin_device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.builtin_device

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        datasets = self.dataset_map_provider.get_dataset_map()
        return datasets, self.data_loader_map_provider.get_data_loader_map(datasets)

    @property
    def frames_per_scene(self) -> Optional[int]:
        """N, frames of each scene in a batch (None for loaders without scene structure)."""
        return getattr(self.data_loader_map_provider, "frames_per_scene", None)

    @property
    def scenes_per_batch(self) -> Optional[int]:
        """S, scenes per batch (None for loaders without scene structure)."""
        return getattr(self.data_loader_map_provider, "scenes_per_batch", None)

    @property
    def all_train_cameras(self) -> Optional[CamerasBase]:
        """The train cameras when the train split is a single scene (many-view subsets), else None:
        cameras of different scenes share no frame. Loads the frames once, then cached."""
        if self._all_train_cameras_cache is None:
            train = self.dataset_map_provider.get_dataset_map().train
            single = train is not None and len(list(train.sequence_names())) == 1
            cameras = self.dataset_map_provider.get_all_train_cameras() if single else None
            self._all_train_cameras_cache = (cameras,)
        return self._all_train_cameras_cache[0]
