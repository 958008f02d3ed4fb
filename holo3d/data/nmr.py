"""NMR / DVR ShapeNet (24 views of 13 ShapeNet synsets at 64 x 64 px, as DVR released it and
pixelNeRF and ViewFusion use it), read into Implicitron ``FrameData``.

Layout (a folder, or the distributed ``NMR_Dataset.zip`` read in place; members start with
``NMR_Dataset/``)::

    <root>/metadata.yaml                       synset -> {id, name} (optional)
    <root>/<synset>/softras_{train,val,test}.lst   object ids, one a line
    <root>/<synset>/<object>/image/0000.png ...    the views, numbered from 0
    <root>/<synset>/<object>/mask/0000.png ...     foreground masks (optional)
    <root>/<synset>/<object>/cameras.npz           world_mat_i, camera_mat_i[, scale_mat_i]

Camera conventions (DVR's FAQ): ``world_mat_i`` is the 4x4 world-to-camera ``[R|t]``;
``camera_mat_i`` the 4x4 intrinsics for an image of side 2, i.e. image coordinates in [-1, 1]
over each image side (focal in units of half the image side, principal point in ``[:2, 2]``);
the optional ``scale_mat_i`` maps the object-centric frame to the world (identity for ShapeNet).
DVR's camera axes are OpenCV-like (x right, y down, z forward); PyTorch3D's are +X left, +Y up,
+Z forward, so the conversion flips x and y (pixelNeRF's ``inverse(world_mat)`` with a flip is the
same camera in OpenGL axes). The world frame is kept as is (ShapeNet's and holo3d's: +y up).

View descriptor: every frame carries ``meta["view_azimuth_elevation"]``, a float32 (2,) tensor of
the camera centre's azimuth ``atan2(x, z)`` and elevation ``atan2(y, hypot(x, z))`` in radians
around the world origin (PyTorch3D's ``look_at_view_transform`` angles). FrameData collates
``meta`` with torch's default collate, so a batch holds a (B, 2) tensor there. ``FrameData.to``
does not move ``meta``: move that tensor to the device yourself.

Broken objects (unreadable or incomplete cameras.npz, no views, views and masks that disagree, an
image of another size) are skipped with an ``NmrObjectSkipped`` warning naming the file, key and
value; a wrong layout (missing synset or list file) is an error listing what is there.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import io
import multiprocessing
import os
import re
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from PIL import Image
from pytorch3d.implicitron.dataset.dataset_base import DatasetBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap, DatasetMapProviderBase
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.tools.config import registry
from pytorch3d.renderer.cameras import CamerasBase, PerspectiveCameras

from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.synthetic.builtin import ensure_builtin_dataset

SPLITS = ("train", "val", "test")
LIST_NAME = "softras_{}.lst"
# the 13 synsets of DVR's NMR release (names used when metadata.yaml is absent), plus the mug of
# the built-in dataset, which NMR does not have
SYNSET_NAMES = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car",
    "03001627": "chair", "03211117": "display", "03636649": "lamp", "03691459": "loudspeaker",
    "04090263": "rifle", "04256520": "sofa", "04379243": "table", "04401088": "telephone",
    "04530566": "watercraft", "03797390": "mug",
}  # fmt: skip
ORTHONORMAL_TOL = 1e-3  # |R R^T - I| allowed in world_mat (float32 files round at ~1e-7)
WHITE_LEVEL = 250  # 8-bit level above which every channel counts as white background (no mask)
AZEL_KEY = "view_azimuth_elevation"
_VIEW_NAME = re.compile(r"^(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
_LIST_MEMBER = re.compile(r"^(.*?)[^/]+/softras_(?:train|val|test)\.lst$")  # group 1: the dataset prefix


class NmrFormatError(ValueError):
    """A file of an NMR object with bad content; the message names the file, key and value."""


class NmrObjectSkipped(UserWarning):
    """An object was left out of the dataset because one of its files is broken."""


# ----------------------------------------------------------------------------- cameras


def read_nmr_cameras(
    npz_path: str, n_views: int, data: Optional[bytes] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Reads and checks ``world_mat_i`` / ``camera_mat_i`` for views 0..n_views-1.

    Args:
        npz_path: the cameras.npz (named in errors; read unless ``data`` is given).
        n_views: V, the number of views.
        data: the file's bytes (e.g. from a zip), read instead of ``npz_path``.

    Returns:
        world_mats (V, 4, 4) float64 world-to-camera ``[R|t]`` (a ``scale_mat_i``, if present, is
        folded in: the matrix then maps the object-centric frame to the camera, rescaled so that
        its rotation part is orthonormal; projections are unchanged), camera_mats (V, 4, 4).

    Raises:
        NmrFormatError: unreadable file, missing key, wrong shape, non-finite value, world_mat
            rotation part not orthonormal, or non-positive / skewed intrinsics.
    """
    try:
        with np.load(io.BytesIO(data) if data is not None else npz_path) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise NmrFormatError(f"{npz_path}: cannot read cameras: {type(error).__name__}: {error}") from error
    world = np.stack([_matrix(arrays, f"world_mat_{i}", npz_path) for i in range(n_views)])
    camera = np.stack([_matrix(arrays, f"camera_mat_{i}", npz_path) for i in range(n_views)])
    for i in range(n_views):
        if f"scale_mat_{i}" in arrays:
            world[i] = _fold_scale(world[i], _matrix(arrays, f"scale_mat_{i}", npz_path), npz_path, i)
        _check_rotation(world[i, :3, :3], npz_path, f"world_mat_{i}")
        _check_intrinsics(camera[i], npz_path, f"camera_mat_{i}")
    return world, camera


def _matrix(arrays: Dict[str, np.ndarray], key: str, path: str) -> np.ndarray:
    """arrays[key] as a finite 4x4 float64 matrix (3x4 and 3x3 are padded with [0 0 0 1])."""
    if key not in arrays:
        raise NmrFormatError(f"{path}: key {key!r} is missing; the file holds {sorted(arrays)[:8]} ...")
    value = np.asarray(arrays[key], dtype=np.float64)
    if value.shape not in ((4, 4), (3, 4), (3, 3)):
        raise NmrFormatError(f"{path}: {key} has shape {value.shape}; expected (4, 4) or (3, 4)")
    if not np.isfinite(value).all():
        raise NmrFormatError(f"{path}: {key} holds non-finite values: {value.tolist()}")
    matrix = np.eye(4)
    matrix[: value.shape[0], : value.shape[1]] = value
    return matrix


def _check_rotation(rotation: np.ndarray, path: str, key: str) -> None:
    error = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if error > ORTHONORMAL_TOL or np.linalg.det(rotation) < 0:
        singular = np.linalg.svd(rotation, compute_uv=False)
        raise NmrFormatError(
            f"{path}: the 3x3 part of {key} is not a rotation (|R R^T - I| = {error:.3g}, "
            f"singular values {np.round(singular, 4).tolist()}, det {np.linalg.det(rotation):.4g}); "
            f"DVR's world_mat is [R|t] with R orthonormal, a scale belongs in scale_mat"
        )


def _check_intrinsics(camera: np.ndarray, path: str, key: str) -> None:
    fx, fy, skew = camera[0, 0], camera[1, 1], camera[0, 1]
    if fx <= 0 or fy <= 0 or abs(skew) > 1e-6 * fx:
        raise NmrFormatError(
            f"{path}: {key} has focal ({fx:.4g}, {fy:.4g}) and skew {skew:.3g}; "
            "expected positive focal lengths and no skew"
        )


def _fold_scale(world: np.ndarray, scale: np.ndarray, path: str, i: int) -> np.ndarray:
    """world @ scale, divided by the uniform scale s (a projective camera is the same up to s)."""
    s = np.cbrt(np.linalg.det(scale[:3, :3]))
    if not s > 0 or np.abs(scale[:3, :3] / s @ (scale[:3, :3] / s).T - np.eye(3)).max() > ORTHONORMAL_TOL:
        raise NmrFormatError(f"{path}: scale_mat_{i} is not a similarity transform: {scale.tolist()}")
    folded = world @ scale / s
    folded[3] = (0.0, 0.0, 0.0, 1.0)
    return folded


def pytorch3d_camera_params(
    world_mats: np.ndarray, camera_mats: np.ndarray, height: int, width: int
) -> Dict[str, torch.Tensor]:
    """R (V, 3, 3), T (V, 3), focal_length (V, 2), principal_point (V, 2): PyTorch3D's
    row-vector, isotropic-NDC parameters of DVR cameras for (height, width) images."""
    flip = np.diag([-1.0, -1.0, 1.0])  # DVR (x right, y down) -> PyTorch3D (x left, y up)
    rotation = flip @ world_mats[:, :3, :3]  # (V, 3, 3) column convention X_cam = R_c X + t
    # DVR's [-1, 1] spans each side; PyTorch3D's NDC spans the shorter side: rescale per axis
    side = np.array([width, height], dtype=np.float64) / min(height, width)  # (2,)
    focal = np.stack([camera_mats[:, 0, 0], camera_mats[:, 1, 1]], axis=1) * side  # (V, 2)
    principal = -np.stack([camera_mats[:, 0, 2], camera_mats[:, 1, 2]], axis=1) * side  # (V, 2)
    as_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return {
        "R": as_tensor(rotation.transpose(0, 2, 1)),  # row convention: X_cam = X @ R_c^T + T
        "T": as_tensor(world_mats[:, :3, 3] @ flip),
        "focal_length": as_tensor(focal),
        "principal_point": as_tensor(principal),
    }


def nmr_to_pytorch3d(
    world_mats: np.ndarray, camera_mats: np.ndarray, height: int, width: int
) -> PerspectiveCameras:
    """V PerspectiveCameras in NDC (X_cam = X_world @ R + T) for DVR matrices (see the module
    docstring): world_mats, camera_mats (V, 4, 4) as ``read_nmr_cameras`` returns them."""
    params = pytorch3d_camera_params(np.asarray(world_mats), np.asarray(camera_mats), height, width)
    return PerspectiveCameras(**params, in_ndc=True, image_size=[(height, width)] * len(params["R"]))


def pytorch3d_to_nmr(
    R: torch.Tensor, T: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor, height: int, width: int
) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of ``pytorch3d_camera_params``: (V, 4, 4) world_mats and camera_mats."""
    flip = np.diag([-1.0, -1.0, 1.0])
    side = np.array([width, height], dtype=np.float64) / min(height, width)
    n = len(R)
    world, camera = np.tile(np.eye(4), (n, 1, 1)), np.tile(np.eye(4), (n, 1, 1))  # (V, 4, 4)
    world[:, :3, :3] = flip @ R.double().numpy().transpose(0, 2, 1)
    world[:, :3, 3] = T.double().numpy() @ flip
    camera[:, 0, 0], camera[:, 1, 1] = (focal.double().numpy() / side).T
    camera[:, 0, 2], camera[:, 1, 2] = (-principal.double().numpy() / side).T
    return world, camera


def view_azimuth_elevation(world_mats: np.ndarray) -> torch.Tensor:
    """(V, 2) azimuth, elevation (radians) of the camera centres -R^T t around the origin."""
    centres = -np.einsum("vji,vj->vi", world_mats[:, :3, :3], world_mats[:, :3, 3])  # (V, 3)
    x, y, z = centres.T
    return torch.as_tensor(np.stack([np.arctan2(x, z), np.arctan2(y, np.hypot(x, z))], 1), dtype=torch.float32)


# ----------------------------------------------------------------------------- storage


class FolderStore:
    """Files under a dataset folder, by path relative to it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def describe(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def isdir(self, rel: str) -> bool:
        return os.path.isdir(self.describe(rel))

    def isfile(self, rel: str) -> bool:
        return os.path.isfile(self.describe(rel))

    def listdir(self, rel: str) -> List[str]:
        path = self.describe(rel)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def read(self, rel: str) -> bytes:
        with open(self.describe(rel), "rb") as f:
            return f.read()


class ZipStore:
    """Members of a zip under its dataset prefix (the folder holding the synsets, found from the
    softras lists), read in place. Each process opens its own handle (workers fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: Optional[Tuple[int, zipfile.ZipFile]] = None
        names = self._zip().namelist()
        prefixes = sorted({m.group(1) for m in map(_LIST_MEMBER.match, names) if m})
        if len(prefixes) != 1:
            raise DatasetLayoutError(
                f"{path}: expected one dataset folder holding <synset>/softras_*.lst, found {prefixes}; "
                f"first members: {names[:5]}"
            )
        self.prefix = prefixes[0]
        self._children: Dict[str, set] = {}
        for name in names:
            if name.startswith(self.prefix) and not name.endswith("/"):
                parts = name[len(self.prefix) :].split("/")
                for depth in range(len(parts)):
                    self._children.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
        self._files = {n[len(self.prefix) :] for n in names if n.startswith(self.prefix)}

    def _zip(self) -> zipfile.ZipFile:
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), zipfile.ZipFile(self.path))
        return self._handle[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None}  # a handle cannot cross processes

    def describe(self, rel: str) -> str:
        return f"{self.path}:{self.prefix}{rel}"

    def isdir(self, rel: str) -> bool:
        return rel.rstrip("/") in self._children

    def isfile(self, rel: str) -> bool:
        return rel in self._files

    def listdir(self, rel: str) -> List[str]:
        return sorted(self._children.get(rel.rstrip("/"), ()))

    def read(self, rel: str) -> bytes:
        try:
            return self._zip().read(self.prefix + rel)
        except KeyError as error:
            raise FileNotFoundError(f"{self.describe(rel)} is not in the zip") from error


def open_store(root: str) -> Union[FolderStore, ZipStore]:
    if os.path.isfile(root) and zipfile.is_zipfile(root):
        return ZipStore(root)
    if not os.path.isdir(root):
        parent = os.path.dirname(os.path.abspath(root))
        there = sorted(os.listdir(parent))[:20] if os.path.isdir(parent) else "(does not exist either)"
        raise DatasetLayoutError(f"NMR dataset root {root} is neither a folder nor a zip; {parent} holds: {there}")
    return FolderStore(root)


# ----------------------------------------------------------------------------- index


@dataclass
class NmrObject:
    """One indexed object: its view files and its V cameras in PyTorch3D's convention.

    Attributes:
        synset, object_id: where it lives (``<synset>/<object_id>``).
        category: the synset's name (first name of metadata.yaml's entry, e.g. "chair").
        image_names: V file names under image/, view i at position i.
        mask_names: V file names under mask/, or None when the object has no masks.
        cameras: R (V, 3, 3), T (V, 3), focal_length (V, 2), principal_point (V, 2).
        azimuth_elevation: (V, 2) radians (see the module docstring).
        image_size_hw: (H, W) of its views.
    """

    synset: str
    object_id: str
    category: str
    image_names: List[str]
    mask_names: Optional[List[str]]
    cameras: Dict[str, torch.Tensor]
    azimuth_elevation: torch.Tensor
    image_size_hw: Tuple[int, int]

    @property
    def name(self) -> str:
        return f"{self.synset}/{self.object_id}"


def _view_names(store, folder: str) -> List[str]:
    """View files (``<number>.png|jpg``) of a folder, in view-number order."""
    names = [n for n in store.listdir(folder) if _VIEW_NAME.match(n)]
    return sorted(names, key=lambda n: int(_VIEW_NAME.match(n).group(1)))


def _image_size(store, rel: str) -> Tuple[int, int]:
    """(H, W) of an image from its header."""
    try:
        with Image.open(io.BytesIO(store.read(rel))) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError) as error:
        raise NmrFormatError(f"{store.describe(rel)}: cannot decode: {error}") from error


def _check_size(store, rel: str, size: Tuple[int, int], actual: Optional[Tuple[int, int]] = None) -> None:
    actual = actual or _image_size(store, rel)
    if tuple(actual) != tuple(size):
        raise NmrFormatError(
            f"{store.describe(rel)}: image is {actual[0]}x{actual[1]} (HxW), the dataset's images are "
            f"{size[0]}x{size[1]}"
        )


def index_object(
    store, synset: str, object_id: str, category: str, size: Optional[Tuple[int, int]], check_all_images: bool
) -> Tuple[NmrObject, Tuple[int, int]]:
    """Lists and checks one object's files and reads its cameras; returns it and its (H, W).

    ``size`` is the dataset's (H, W) (None: take this object's). Only the first image's header is
    checked unless ``check_all_images``.

    Raises:
        NmrFormatError: what is broken, naming the file (and key / value).
    """
    folder = f"{synset}/{object_id}"
    images = _view_names(store, f"{folder}/image")
    if not images:
        raise NmrFormatError(f"{store.describe(folder + '/image')}: no views (expected image/0000.png ...)")
    numbers = [int(_VIEW_NAME.match(n).group(1)) for n in images]
    if numbers != list(range(len(images))):
        where = store.describe(f"{folder}/image")
        raise NmrFormatError(f"{where}: views are numbered {numbers[:6]}...; expected 0..V-1")
    masks = _view_names(store, f"{folder}/mask") or None
    if masks is not None and [n.split(".")[0] for n in masks] != [n.split(".")[0] for n in images]:
        where = store.describe(f"{folder}/mask")
        raise NmrFormatError(f"{where}: masks {masks[:4]}... do not match the views {images[:4]}...")
    size = size or _image_size(store, f"{folder}/image/{images[0]}")
    for name in images if check_all_images else images[:1]:
        _check_size(store, f"{folder}/image/{name}", size)
    npz = f"{folder}/cameras.npz"
    if not store.isfile(npz):
        raise NmrFormatError(f"{store.describe(npz)} is missing")
    world, camera = read_nmr_cameras(store.describe(npz), len(images), data=store.read(npz))
    obj = NmrObject(
        synset=synset,
        object_id=object_id,
        category=category,
        image_names=images,
        mask_names=masks,
        cameras=pytorch3d_camera_params(world, camera, *size),
        azimuth_elevation=view_azimuth_elevation(world),
        image_size_hw=tuple(size),
    )
    return obj, size


# ----------------------------------------------------------------------------- dataset


class NmrDataset(DatasetBase):
    """Implicitron dataset over indexed NMR objects: one sequence per object, one frame per view.

    Frames are FrameData with image_rgb (3, H, W) in [0, 1]; fg_probability (1, H, W) from mask/
    (else the PNG's alpha, else "not white"); mask_crop ones; camera (NDC PerspectiveCameras of
    one view); sequence_name "<synset>/<object_id>"; sequence_category the synset's name;
    frame_number the view; image_size_hw / effective_image_size_hw; image_path / mask_path;
    meta["view_azimuth_elevation"] (2,). Views are unordered: frame_timestamp is None.
    """

    def __init__(self, store, objects: Sequence[NmrObject], image_size_hw: Tuple[int, int]) -> None:
        self.store = store
        self.objects = list(objects)
        self.image_size_hw = tuple(image_size_hw)
        self._frames: List[Tuple[int, int]] = []
        self._seq_to_idx: Dict[str, List[int]] = {}
        for o, obj in enumerate(self.objects):
            first = len(self._frames)
            self._frames += [(o, v) for v in range(len(obj.image_names))]
            self._seq_to_idx[obj.name] = list(range(first, len(self._frames)))

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> FrameData:
        if not 0 <= index < len(self._frames):
            raise IndexError(f"frame index {index} out of range {len(self._frames)}")
        obj_index, view = self._frames[index]
        obj = self.objects[obj_index]
        image_rel = f"{obj.name}/image/{obj.image_names[view]}"
        mask_rel = f"{obj.name}/mask/{obj.mask_names[view]}" if obj.mask_names else None
        rgb, fg = self._load_pixels(image_rel, mask_rel)
        size = torch.tensor(self.image_size_hw, dtype=torch.long)
        camera = PerspectiveCameras(
            **{k: v[view : view + 1] for k, v in obj.cameras.items()}, in_ndc=True, image_size=[self.image_size_hw]
        )
        return FrameData(
            frame_number=torch.tensor(view, dtype=torch.long),
            sequence_name=obj.name,
            sequence_category=obj.category,
            image_size_hw=size,
            effective_image_size_hw=size,
            image_path=self.store.describe(image_rel),
            image_rgb=rgb,
            mask_crop=torch.ones_like(fg),
            mask_path=self.store.describe(mask_rel) if mask_rel else None,
            fg_probability=fg,
            camera=camera,
            meta={AZEL_KEY: obj.azimuth_elevation[view]},
        )

    def _load_pixels(self, image_rel: str, mask_rel: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """rgb (3, H, W), fg (1, H, W), both float32 in [0, 1]."""
        image = self._decode(image_rel)
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        rgb = rgba[..., :3]
        if mask_rel is not None:
            mask = self._decode(mask_rel)
            fg = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0  # (H, W)
            _check_size(self.store, mask_rel, self.image_size_hw, fg.shape)
        elif "A" in image.getbands():
            fg = rgba[..., 3]
            rgb = rgb * fg[..., None] + (1.0 - fg[..., None])  # composite on white, as NMR's renders
        else:
            fg = (np.asarray(image.convert("RGB")) < WHITE_LEVEL).any(-1).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), torch.from_numpy(fg)[None]

    def _decode(self, rel: str) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(self.store.read(rel)))
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise NmrFormatError(f"{self.store.describe(rel)}: cannot read image: {error}") from error
        # checked here too: indexing looks at one header per object unless check_all_images
        _check_size(self.store, rel, self.image_size_hw, (image.height, image.width))
        return image

    def get_frame_numbers_and_timestamps(
        self, idxs: Sequence[int], subset_filter: Optional[Sequence[str]] = None
    ) -> List[Tuple[int, float]]:
        """(view number, 0.0) per index: views are unordered, so the timestamp is constant."""
        return [(self._frames[i][1], 0.0) for i in idxs]

    def category_to_sequence_names(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for obj in self.objects:
            out.setdefault(obj.category, []).append(obj.name)
        return out

    def join(self, other_datasets) -> None:
        raise NotImplementedError("NmrDataset.join: load the synsets together instead (synsets=a,b)")


# ----------------------------------------------------------------------------- dataset map


def synset_names(store) -> Dict[str, str]:
    """synset -> category name: metadata.yaml's (first comma-separated name) over the built-in table."""
    names = dict(SYNSET_NAMES)
    if store.isfile("metadata.yaml"):
        rel = "metadata.yaml"
        try:  # BaseLoader keeps "03001627" a string (YAML 1.1 would read it as an octal number)
            metadata = yaml.load(store.read(rel).decode("utf8"), Loader=yaml.BaseLoader) or {}
            names.update({str(k): str(v.get("name", k)).split(",")[0].strip() for k, v in metadata.items()})
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError) as error:
            raise NmrFormatError(f"{store.describe(rel)}: expected synset: {{id, name}} entries: {error}") from error
    return names


def list_synsets(store) -> List[str]:
    """Folders of the root that hold softras lists (the ground-truth sibling folder does not)."""
    return [
        d for d in store.listdir("")
        if store.isdir(d) and any(store.isfile(f"{d}/{LIST_NAME.format(s)}") for s in SPLITS)
    ]  # fmt: skip


def choose_synsets(store, requested: Sequence[str], names: Dict[str, str]) -> List[str]:
    """The requested synsets (ids or category names; empty: all) that exist, else an error."""
    available = list_synsets(store)
    if not requested:
        if not available:
            raise DatasetLayoutError(
                f"no synset folder with softras_*.lst in {store.describe('')}; it holds {store.listdir('')[:20]}"
            )
        return available
    by_name = {names.get(s, s): s for s in available}
    chosen = []
    for token in requested:
        synset = token if token in available else by_name.get(token)
        if synset is None:
            raise DatasetLayoutError(
                f"synset {token!r} not found: {store.describe(token)} holds no softras lists; "
                f"synsets there: {[f'{s} ({names.get(s, s)})' for s in available]}"
            )
        chosen.append(synset)
    return chosen


def read_split_list(store, synset: str, split: str) -> List[str]:
    rel = f"{synset}/{LIST_NAME.format(split)}"
    if not store.isfile(rel):
        lists = [n for n in store.listdir(synset) if n.endswith(".lst")]
        raise DatasetLayoutError(f"{store.describe(rel)} is missing; list files in {store.describe(synset)}: {lists}")
    return [line.strip() for line in store.read(rel).decode("utf8").splitlines() if line.strip()]


def load_nmr_dataset_map(
    root: str, synsets: Sequence[str] = (), check_all_images: bool = False, index_workers: int = 0
) -> DatasetMap:
    """DatasetMap(train, val, test) of NmrDatasets from the softras lists of ``root`` (folder or
    zip). Broken objects are skipped with an NmrObjectSkipped warning; an empty train split is an
    error. ``index_workers`` > 0 indexes large datasets in that many processes."""
    store = open_store(root)
    names = synset_names(store)
    chosen = choose_synsets(store, list(synsets), names)
    split_ids = {split: [(s, oid) for s in chosen for oid in read_split_list(store, s, split)] for split in SPLITS}
    jobs = [(s, oid, names.get(s, s)) for split in SPLITS for s, oid in split_ids[split]]
    results, size = index_objects(store, jobs, check_all_images, index_workers)
    objects: Dict[str, List[NmrObject]] = {split: [] for split in SPLITS}
    skipped: List[str] = []
    position = 0
    for split in SPLITS:
        for synset, object_id in split_ids[split]:
            result = results[position]
            position += 1
            if isinstance(result, str):
                skipped.append(f"{synset}/{object_id}")
                warnings.warn(f"holo3d: skipping NMR object {synset}/{object_id}: {result}", NmrObjectSkipped)
            else:
                objects[split].append(result)
    if not objects["train"]:
        raise DatasetLayoutError(
            f"no readable train object in {store.describe('')} (synsets {chosen}; "
            f"{len(split_ids['train'])} listed, skipped {skipped[:5]}; see the warnings)"
        )
    return DatasetMap(**{split: NmrDataset(store, objects[split], size or (0, 0)) for split in SPLITS})


PARALLEL_INDEX_MIN = 256  # fewer objects index faster in-process than worker processes start
_WORKER_STORE = None  # the store of an index worker process


def index_objects(
    store, jobs: Sequence[Tuple[str, str, str]], check_all_images: bool, workers: int
) -> Tuple[List[Union[NmrObject, str]], Optional[Tuple[int, int]]]:
    """Per (synset, object_id, category) job the NmrObject or the reason it is broken, and the
    dataset's (H, W) (the first readable object's). Reading cameras.npz costs ~10 ms an object
    (numpy parses every array's header), so real NMR (44k objects) is worth a few processes."""
    results: List[Union[NmrObject, str]] = []
    size = None
    while len(results) < len(jobs) and size is None:  # the first readable object sets the size
        results.append(_index_job(store, jobs[len(results)], None, check_all_images))
        size = None if isinstance(results[-1], str) else results[-1].image_size_hw
    rest = [(job, size, check_all_images) for job in jobs[len(results) :]]
    if workers > 0 and len(rest) >= PARALLEL_INDEX_MIN:
        # fork, as torch's DataLoader workers: spawn would need a __main__ guard in every script;
        # the children only run numpy and tiny torch ops (no OpenMP region to deadlock in)
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_set_worker_store, initargs=(store,)) as pool:
            return results + list(pool.map(_worker_index_job, rest, chunksize=64)), size
    return results + [_index_job(store, *args) for args in rest], size


def _index_job(store, job, size, check_all_images) -> Union[NmrObject, str]:
    try:
        return index_object(store, *job, size, check_all_images)[0]
    except (NmrFormatError, OSError) as error:
        return str(error)


def _set_worker_store(store) -> None:
    global _WORKER_STORE
    _WORKER_STORE = store


def _worker_index_job(args) -> Union[NmrObject, str]:
    return _index_job(_WORKER_STORE, *args)


@registry.register
class NmrDatasetMapProvider(DatasetMapProviderBase):
    """NMR / DVR ShapeNet datasets (train / val / test from the softras lists).

    Members:
        dataset_root: an NMR folder or NMR_Dataset.zip; empty: the built-in dataset written in
            NMR format (generated on first use, see builtin_preset).
        synsets: comma-separated synset ids or names ("03001627,table"); empty: all listed.
        builtin_preset: preset of the built-in dataset used when dataset_root is empty.
        builtin_device: device to generate it on; "auto" = cuda when available.
        check_all_images: read every image's header while indexing (slower; catches an image of
            the wrong size up front instead of when that frame is loaded).
        index_workers: processes that read the cameras.npz files while indexing (~10 ms an
            object in one process: the full NMR's 44k objects take minutes; 8 workers cut that
            to about a minute); used from PARALLEL_INDEX_MIN objects on; 0 = in this process.
    """

    dataset_root: str = ""
    synsets: str = ""
    builtin_preset: str = "demo"
    builtin_device: str = "auto"
    check_all_images: bool = False
    index_workers: int = 0

    def __post_init__(self) -> None:
        self._dataset_map: Optional[DatasetMap] = None

    def resolved_root(self) -> str:
        if self.dataset_root:
            return self.dataset_root
        device = self.builtin_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return ensure_builtin_dataset(None, self.builtin_preset, device=device, fmt="nmr")

    def get_dataset_map(self) -> DatasetMap:
        if self._dataset_map is None:
            synsets = [s.strip() for s in self.synsets.split(",") if s.strip()]
            self._dataset_map = load_nmr_dataset_map(
                self.resolved_root(), synsets, self.check_all_images, self.index_workers
            )
        return self._dataset_map

    def get_all_train_cameras(self) -> Optional[CamerasBase]:
        return None  # many objects: no single scene's camera set
