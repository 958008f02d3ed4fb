"""ShapeNet voxel datasets (IM-NET hdf5, the course's per-category npy), read lazily, and VoxelDataSource.

Formats (N objects, R voxels per side):

* IM-NET (the IM-NET / IMAE / IMSVR data): ``<root>/<synset>_vox256/<synset>_vox256_img_{train,test}.hdf5``
  holding the dataset ``voxels``, uint8 ``(N, 64, 64, 64, 1)`` in {0, 1} (beside ``pixels``,
  ``points_*`` and ``values_*``, which are ignored here), and ``<synset>_vox256_img_{split}.txt`` with
  one object name per line (``<synset>/<object id>``). The category is the synset (SYNSETS maps
  names such as "chair" to "03001627"). IM-NET has no validation split: the val loader is None.
* course npy: ``<root>/<category>_voxels_{train,val,test}.npy``, float32 or bool ``(N, R, R, R)``
  (R = 64 or 128), surface occupancy voxelised from point clouds. Optionally (holo3d's writer adds
  it) ``<category>_voxels_{split}.txt`` with object names; without it items are named
  ``<category>_<split>_<index>``.

Both store a shape as ``grid[i, j, k]`` with i along x, j along y and k along z, +y up (IM-NET's
point sampling: "top direction = Y(j) positive"; the course voxelises (x, y, z) points with
``grid[x, y, z] = 1``), in the ShapeNet frame whose axes holo3d's world frame shares (+y up). holo3d's
grids are ``(D, H, W) = (z, y, x)`` (see ``SyntheticObject.occupancy``), so reading swaps the first
and last spatial axes (``to_world_frame``; the swap is its own inverse, and the writer uses it too).
Values are thresholded at 0.5.

Arrays stay on disk: npy files are memory-mapped and hdf5 datasets read one item at a time, each
opened lazily in the process that reads it (DataLoader workers open their own handles), so a split
is never loaded into RAM, let alone twice. A file that is broken (no ``voxels``, wrong shape or
dtype, names that do not match) is reported with the file, the key and the value; ``VoxelDataSource``
skips it with a warning when other files of the split are usable, and fails otherwise.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import glob
import os
import re
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from pytorch3d.implicitron.dataset.data_loader_map_provider import DataLoaderMap
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap
from pytorch3d.implicitron.tools.config import registry
from torch.utils.data import DataLoader, Dataset, Sampler

from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.multi_scene_provider import SPLIT_SEED_OFFSETS, ignore_stop_signals
from holo3d.data.multi_scene_sampler import seeded_generator
from holo3d.data.synthetic.builtin import ensure_builtin_dataset
from holo3d.data.tensor_batch import collate_tensor_batch

# ShapeNetCore synsets: IM-NET's 13 categories, plus mug (a built-in category)
SYNSETS: Dict[str, str] = {
    "airplane": "02691156", "bench": "02828884", "cabinet": "02933112", "car": "02958343",
    "chair": "03001627", "display": "03211117", "lamp": "03636649", "speaker": "03691459",
    "rifle": "04090263", "couch": "04256520", "table": "04379243", "phone": "04401088",
    "vessel": "04530566", "mug": "03797390",
}
SYNSET_NAMES: Dict[str, str] = {synset: name for name, synset in SYNSETS.items()}
NPY_SPLITS = ("train", "val", "test")
IMNET_SPLITS = ("train", "test")
FORMATS = ("auto", "npy", "imnet")
IMNET_KEY = "voxels"
NPY_DTYPES = (np.bool_, np.uint8, np.float16, np.float32, np.float64)
IMNET_DTYPES = (np.bool_, np.uint8)
THRESHOLD = 0.5
_NPY_NAME = re.compile(r"^(?P<category>.+)_voxels_(?P<split>train|val|test)\.npy$")
_IMNET_NAME = re.compile(r"^(?P<synset>\d{8})_vox256_img_(?P<split>train|test)\.hdf5$")


class VoxelFormatError(ValueError):
    """A voxel file that cannot be used; the message names the file, the key and the value."""


# ---- layout: the one place file names are spelled (the writer uses these too) ----


def npy_path(root: str, category: str, split: str) -> str:
    return os.path.join(root, f"{category}_voxels_{split}.npy")


def npy_names_path(path: str) -> str:
    return path[: -len(".npy")] + ".txt"


def imnet_path(root: str, synset: str, split: str) -> str:
    return os.path.join(root, f"{synset}_vox256", f"{synset}_vox256_img_{split}.hdf5")


def imnet_names_path(path: str) -> str:
    return path[: -len(".hdf5")] + ".txt"


def to_world_frame(grid: np.ndarray) -> np.ndarray:
    """(..., x, y, z) file order -> holo3d's (..., D, H, W) = (..., z, y, x); its own inverse."""
    return np.swapaxes(grid, -1, -3)


from_world_frame = to_world_frame


# ---- readers ----


class VoxelArray:
    """The voxel grids of one file, read one item at a time.

    ``raw`` is the file's lazily indexable array (an h5py dataset or an ``np.load(mmap_mode='r')``
    memmap) opened on first use in the current process; ``array[i]`` is item i as a (D, H, W) bool
    grid in holo3d's frame. Pickling (DataLoader workers) carries only the path.
    """

    def __init__(self, path: str, kind: str, length: int, resolution: int, names: List[str], mmap: bool = True):
        self.path, self.kind, self.mmap = path, kind, mmap
        self.length, self.resolution, self.names = length, resolution, names
        self._raw, self._pid = None, None

    def __len__(self) -> int:
        return self.length

    @property
    def raw(self):
        if self._raw is None or self._pid != os.getpid():
            self._raw, self._pid = self._open(), os.getpid()
        return self._raw

    def _open(self):
        if self.kind == "imnet":
            return h5py.File(self.path, "r")[IMNET_KEY]
        return np.load(self.path, mmap_mode="r" if self.mmap else None)

    def __getitem__(self, index: int) -> np.ndarray:
        item = self.raw[index]  # (R, R, R) or (R, R, R, 1), file axis order (x, y, z)
        item = np.asarray(item)[..., 0] if self.kind == "imnet" else np.asarray(item)
        return np.ascontiguousarray(to_world_frame(item >= THRESHOLD))  # (D, H, W) bool

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_raw": None, "_pid": None}


def read_imnet_hdf5(path: str) -> VoxelArray:
    """The ``voxels`` of an IM-NET hdf5 file (see the module docstring), validated.

    Raises:
        VoxelFormatError: no ``voxels`` dataset, a shape other than (N, R, R, R, 1), a dtype other
            than uint8 / bool, or a names file whose length differs from N.
    """
    with h5py.File(path, "r") as handle:
        if IMNET_KEY not in handle:
            raise VoxelFormatError(f"{path}: no dataset '{IMNET_KEY}'; the file holds {sorted(handle.keys())}")
        shape, dtype = handle[IMNET_KEY].shape, handle[IMNET_KEY].dtype
    if len(shape) != 5 or shape[4] != 1 or not shape[1] == shape[2] == shape[3]:
        raise VoxelFormatError(
            f"{path}: '{IMNET_KEY}' shape={shape}: expected (N, R, R, R, 1), e.g. (N, 64, 64, 64, 1)"
        )
    _check_dtype(path, IMNET_KEY, dtype, IMNET_DTYPES)
    names = _read_names(imnet_names_path(path), shape[0], default=os.path.basename(path)[: -len(".hdf5")])
    return VoxelArray(path, "imnet", shape[0], shape[1], names)


def read_voxel_npy(path: str, mmap: bool = True) -> VoxelArray:
    """A course-format npy file of (N, R, R, R) occupancy, validated; memory-mapped unless ``mmap=False``.

    Raises:
        VoxelFormatError: not an npy file, a shape other than (N, R, R, R), or a dtype other than
            bool / uint8 / float, or a names file whose length differs from N.
    """
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as error:  # object arrays (pickles) cannot be memory-mapped
        raise VoxelFormatError(f"{path}: not a plain npy array ({error})") from None
    shape, dtype = array.shape, array.dtype
    del array
    if len(shape) != 4 or not shape[1] == shape[2] == shape[3]:
        raise VoxelFormatError(f"{path}: array shape={shape}: expected (N, R, R, R), e.g. (N, 64, 64, 64)")
    _check_dtype(path, "array", dtype, NPY_DTYPES)
    names = _read_names(npy_names_path(path), shape[0], default=os.path.basename(path)[: -len(".npy")])
    return VoxelArray(path, "npy", shape[0], shape[1], names, mmap=mmap)


def _check_dtype(path: str, key: str, dtype, allowed) -> None:
    if not any(dtype == np.dtype(a) for a in allowed):
        expected = ", ".join(np.dtype(a).name for a in allowed)
        raise VoxelFormatError(f"{path}: '{key}' dtype={dtype}: expected one of {expected}")


def _read_names(path: str, count: int, default: str) -> List[str]:
    """Object names from ``path`` (one a line), or ``<default>_<index>`` when there is no such file."""
    if not os.path.isfile(path):
        return [f"{default}_{i:05d}" for i in range(count)]
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != count:
        raise VoxelFormatError(f"{path}: names count={len(names)}: expected {count}, one per voxel grid")
    return names


# ---- discovery: which files a root holds ----


def find_npy_files(root: str) -> Dict[str, Dict[str, str]]:
    """``{category: {split: path}}`` of the course-format files directly under root."""
    found: Dict[str, Dict[str, str]] = {}
    for path in sorted(glob.glob(os.path.join(root, "*_voxels_*.npy"))):
        match = _NPY_NAME.match(os.path.basename(path))
        if match:
            found.setdefault(match["category"], {})[match["split"]] = path
    return found


def find_imnet_files(root: str) -> Dict[str, Dict[str, str]]:
    """``{category: {split: path}}`` of IM-NET files in root, root/* or root/imnet/* (category = the
    synset's name in SYNSETS, or the synset itself)."""
    found: Dict[str, Dict[str, str]] = {}
    for pattern in ("*.hdf5", os.path.join("*", "*.hdf5"), os.path.join("imnet", "*", "*.hdf5")):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            match = _IMNET_NAME.match(os.path.basename(path))
            if match:
                category = SYNSET_NAMES.get(match["synset"], match["synset"])
                found.setdefault(category, {}).setdefault(match["split"], path)
    return found


def detect_format(root: str, file_format: str = "auto") -> str:
    """"npy" or "imnet": ``file_format`` itself, or for "auto" the layout found (npy first)."""
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"voxel dataset root {root} does not exist")
    if file_format != "auto":
        return file_format
    if find_npy_files(root):
        return "npy"
    if find_imnet_files(root):
        return "imnet"
    raise DatasetLayoutError(
        f"{root} holds neither <category>_voxels_<split>.npy files nor <synset>_vox256/<synset>_vox256_img_"
        f"<split>.hdf5 files; it holds {sorted(os.listdir(root))[:20]}"
    )


def find_files(root: str, file_format: str) -> Dict[str, Dict[str, str]]:
    return find_npy_files(root) if file_format == "npy" else find_imnet_files(root)


def resolve_categories(found: Dict[str, Dict[str, str]], categories: Sequence[str], root: str) -> List[str]:
    """The category names in label order: ``categories`` (names or synsets) if given, else all
    found, sorted. A requested category that is not there is an error listing those that are."""
    if not categories:
        if not found:
            raise DatasetLayoutError(f"no voxel files under {root}")
        return sorted(found)
    names = [SYNSET_NAMES.get(c, c) for c in categories]
    missing = [c for c in names if c not in found]
    if missing:
        raise DatasetLayoutError(
            f"{root}: category {missing[0]!r} has no voxel files; categories found: {sorted(found)}"
        )
    return names


# ---- the torch dataset ----


class VoxelDataset(Dataset):
    """Voxel grids of several files (categories) as one dataset.

    Item i: ``dict(voxels=(1, R, R, R) float32 in {0, 1}, label=int64 category index, name=str)``,
    R = ``resolution``; files of a finer resolution are max-pooled down to it (an occupied fine voxel
    makes its coarse voxel occupied, so thin parts survive).

    Args:
        parts: (array, label) per file, in the order items are numbered.
        category_names: label -> category name.
        resolution: R; must divide every file's resolution.
    """

    def __init__(self, parts: Sequence[Tuple[VoxelArray, int]], category_names: Sequence[str], resolution: int):
        for array, _ in parts:
            check_resolution(array, resolution)
        self.parts = list(parts)
        self.category_names = list(category_names)
        self.resolution = resolution
        self._starts = np.cumsum([0] + [len(a) for a, _ in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> Tuple[VoxelArray, int, int]:
        """(array, label, index inside the array) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range {len(self)}")
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        array, label = self.parts[part]
        return array, label, index - int(self._starts[part])

    def __getitem__(self, index: int) -> dict:
        array, label, local = self.locate(index)
        grid = torch.from_numpy(array[local]).float()[None]  # (1, R_file, R_file, R_file)
        return {"voxels": downsample(grid, self.resolution), "label": torch.tensor(label, dtype=torch.int64),
                "name": array.names[local]}

    def labels(self) -> np.ndarray:
        """(len,) int64 label of every item (without reading any grid)."""
        return np.concatenate([np.zeros(0, np.int64)] + [np.full(len(a), label, np.int64) for a, label in self.parts])


def check_resolution(array: VoxelArray, resolution: int) -> None:
    if array.resolution < resolution or array.resolution % resolution:
        raise VoxelFormatError(
            f"{array.path}: resolution={array.resolution}: cannot be max-pooled to the requested "
            f"resolution {resolution} (it must be a multiple of it)"
        )


def downsample(grid: torch.Tensor, resolution: int) -> torch.Tensor:
    """(C, R, R, R) -> (C, r, r, r) by max-pooling (r divides R); returned as is when r == R."""
    factor = grid.shape[-1] // resolution
    return grid if factor == 1 else F.max_pool3d(grid[None], factor)[0]  # (C, r, r, r)


def open_split(
    files: Dict[str, Dict[str, str]], category_names: Sequence[str], split: str, file_format: str,
    resolution: int,
) -> Optional[VoxelDataset]:
    """The split's dataset over ``category_names`` (labels = their positions), or None when no
    category has a file of that split. Broken files are skipped with a warning naming them; if
    every file of the split is broken, the first error is raised."""
    parts, errors = [], []
    for label, category in enumerate(category_names):
        path = files.get(category, {}).get(split)
        if path is None:
            continue
        try:
            array = read_imnet_hdf5(path) if file_format == "imnet" else read_voxel_npy(path)
            check_resolution(array, resolution)
        except (VoxelFormatError, OSError) as error:
            errors.append(error)
            continue
        parts.append((array, label))
    if errors and not parts:
        raise errors[0]
    for error in errors:
        warnings.warn(f"skipping a broken voxel file of the {split} split: {error}")
    return VoxelDataset(parts, category_names, resolution) if parts else None


# ---- deterministic, resumable batches ----


class EpochPermutationSampler(Sampler[int]):
    """Item order of one epoch: a permutation seeded by (seed, epoch), or 0..n-1 when not shuffling."""

    def __init__(self, n_items: int, shuffle: bool, seed: int = 0) -> None:
        self.n_items, self.shuffle, self.seed, self.epoch = n_items, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_items

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n_items))
        return iter(torch.randperm(self.n_items, generator=seeded_generator(self.seed, self.epoch)).tolist())


class VoxelBatchSampler(Sampler[List[int]]):
    """Batches of ``batch_size`` items in ``EpochPermutationSampler`` order: a function of
    (seed, epoch) only, so a resumed epoch skipping its first k batches sees the same later ones.
    ``set_epoch`` is reachable as ``batch_sampler.set_epoch`` and ``batch_sampler.sampler.set_epoch``
    (where accelerate's prepared loaders look for it)."""

    def __init__(self, n_items: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0) -> None:
        self.sampler = EpochPermutationSampler(n_items, shuffle, seed)
        self.batch_size, self.drop_last = batch_size, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[List[int]]:
        order = list(self.sampler)
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


# ---- the data source ----


@registry.register
class VoxelDataSource(DataSourceBase):
    """ShapeNet voxel grids with category labels (the voxel latent diffusion model's data).

    Loaders yield ``TensorBatch``es: ``voxels (B, 1, R, R, R)`` float32 in {0, 1}, ``label (B,)``
    int64 (index into ``category_names``), ``name`` (list of B strings). The train loader shuffles
    by (seed, epoch) and drops a last partial batch; val / test keep file order.

    Members:
        dataset_root: folder of the voxel files; "" = the built-in dataset written in voxel format
            (``$HOLO3D_DATA_ROOT/builtin_<preset>_voxels``, generated on first use).
        file_format: "auto" (npy if present, else IM-NET) | "npy" | "imnet" (see the module docstring).
        categories: comma-separated category names or synsets, in label order; "" = all found, sorted.
        resolution: R of the grids served; finer files are max-pooled down to it.
        batch_size: grids per batch.
        num_workers: DataLoader worker processes (each opens its own file handles).
        pin_memory: pin batches in page-locked memory (for faster host-to-GPU copies).
        seed: train batches depend only on (seed, epoch).
        builtin_preset: preset of the built-in dataset used when dataset_root is "".
    """

    dataset_root: str = ""
    file_format: str = "auto"
    categories: str = ""
    resolution: int = 64
    batch_size: int = 8
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0
    builtin_preset: str = "demo"

    def __post_init__(self) -> None:
        if self.file_format not in FORMATS:
            raise ValueError(f"VoxelDataSource.file_format={self.file_format!r}: expected one of {FORMATS}")
        for name, low in (("resolution", 1), ("batch_size", 1), ("num_workers", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"VoxelDataSource.{name}={getattr(self, name)}: must be >= {low}")
        if self.dataset_root and not os.path.isdir(self.dataset_root):
            raise DatasetLayoutError(f"VoxelDataSource.dataset_root={self.dataset_root!r} does not exist")
        self._layout: Optional[Tuple[str, str, Dict[str, Dict[str, str]], List[str]]] = None
        self._datasets: Optional[DatasetMap] = None

    def layout(self) -> Tuple[str, str, Dict[str, Dict[str, str]], List[str]]:
        """(root, file format, {category: {split: path}}, category names); finds the files once."""
        if self._layout is None:
            root = self.dataset_root or ensure_builtin_dataset(
                None, self.builtin_preset, "cuda" if torch.cuda.is_available() else "cpu", fmt="voxels"
            )
            file_format = detect_format(root, self.file_format)
            files = find_files(root, file_format)
            wanted = [c.strip() for c in self.categories.split(",") if c.strip()]
            self._layout = (root, file_format, files, resolve_categories(files, wanted, root))
        return self._layout

    @property
    def category_names(self) -> List[str]:
        """Label -> category name (for class-conditional models)."""
        return list(self.layout()[3])

    def get_datasets(self) -> DatasetMap:
        if self._datasets is None:
            root, file_format, files, names = self.layout()
            splits = {s: open_split(files, names, s, file_format, self.resolution) for s in NPY_SPLITS}
            if splits["train"] is None:
                raise DatasetLayoutError(f"{root}: no train split for categories {names}")
            self._datasets = DatasetMap(**splits)
        return self._datasets

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        datasets = self.get_datasets()
        loaders = {split: self._loader(datasets[split], split) for split in NPY_SPLITS}
        return datasets, DataLoaderMap(**loaders)

    def _loader(self, dataset: Optional[VoxelDataset], split: str) -> Optional[DataLoader]:
        if dataset is None:
            return None
        train = split == "train"
        sampler = VoxelBatchSampler(
            len(dataset), self.batch_size, shuffle=train, drop_last=train and len(dataset) >= self.batch_size,
            seed=self.seed + SPLIT_SEED_OFFSETS[split],
        )
        workers = {"worker_init_fn": ignore_stop_signals, "persistent_workers": True} if self.num_workers else {}
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, collate_fn=collate_tensor_batch, **workers)

    @property
    def all_train_cameras(self):
        """No cameras: voxel data has no posed images."""
        return None
