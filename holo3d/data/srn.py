"""SRN cars / chairs (the ShapeNet renders of Scene Representation Networks, which GeNVS and
pixelNeRF train on), read into Implicitron ``FrameData``.

Layout, as the public dataset ships it (chairs likewise, ``chairs_train`` ...):

    <root>/cars_{train,val,test}/<object_id>/rgb/NNNNNN.png     RGB(A) on white, 128 x 128
                                             pose/NNNNNN.txt    16 floats: 4x4 camera-to-world, OpenCV axes
                                             intrinsics.txt     "f cx cy 0." / barycentre / scale / "H W"

f, cx, cy are pixels of the H x W on line 4; images of another resolution (some releases) get the
intrinsics scaled by image size / line-4 size. Objects may have different numbers of views.

Conversions, both directions in this module (the writer uses them too): OpenCV camera-to-world
(x right, y down, z forward) with pixel intrinsics <-> PyTorch3D NDC ``PerspectiveCameras`` (row
vectors, X_cam = X_world @ R + T; +X left, +Y up), through PyTorch3D's own
``cameras_from_opencv_projection`` / ``opencv_from_cameras_projection``. Their NDC is the
"ndc_isotropic" one of Implicitron's CO3D loader (the shorter image side spans [-1, 1]); the cameras
carry no image size, like the CO3D loader's.

Bad input: the readers raise ``SrnFormatError`` naming the file and the value. While indexing a
split, a frame with a bad pose or image is left out and an object with no usable view (or a bad
intrinsics.txt) is skipped, each with one ``SrnDataWarning`` per object naming files and reasons.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch3d.implicitron.dataset.dataset_base import DatasetBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap, DatasetMapProviderBase
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.tools.config import registry
from pytorch3d.renderer.cameras import PerspectiveCameras
from pytorch3d.utils import cameras_from_opencv_projection, opencv_from_cameras_projection

from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.synthetic.builtin import ensure_builtin_dataset

# SRN's poses are printed with ~6 decimals, so R^T R - I is ~1e-6 there; 2e-3 still catches any
# scaled, sheared or reflected matrix
ROTATION_TOLERANCE = 2e-3
MASK_THRESHOLD = 0.02  # not-white: some channel below 1 - threshold (~5/255: PNG, no compression noise)
FRAME_FILE = re.compile(r"^(\d+)\.(png|txt)$")
MAX_LISTED_PROBLEMS = 3


class SrnFormatError(ValueError):
    """A file that does not follow the SRN format; the message names the file and the value."""


class SrnDataWarning(UserWarning):
    """Frames or objects of an SRN split were left out (the message names files and reasons)."""


# ------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class SrnIntrinsics:
    """The contents of an object's intrinsics.txt.

    Attributes:
        focal, cx, cy: pixels of an image of ``height`` x ``width`` (line 1).
        barycentre: line 2, the grid barycentre SRN used (unused here).
        scale: line 3 (unused here).
        height, width: line 4.
        world_to_camera: an optional 5th line "1" in SRN's own parser: poses are world-to-camera.
    """

    focal: float
    cx: float
    cy: float
    barycentre: Tuple[float, float, float]
    scale: float
    height: int
    width: int
    world_to_camera: bool = False

    def pixel_intrinsics(self, height: int, width: int) -> Tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels of an image of ``height`` x ``width``."""
        sx, sy = width / self.width, height / self.height
        return self.focal * sx, self.focal * sy, self.cx * sx, self.cy * sy


def read_srn_pose(path: str) -> np.ndarray:
    """(4, 4) float64 camera-to-world matrix (OpenCV axes) of a pose file: 16 numbers on one line
    or 4 lines of 4.

    Raises:
        SrnFormatError: not 16 numbers / not 4 rows of 4, a non-finite value, a last row other than
            (0, 0, 0, 1), or a rotation that is not orthonormal with determinant +1.
    """
    rows = [line.split() for line in _read_text(path).splitlines() if line.strip()]
    values = _numbers(path, [token for row in rows for token in row], "pose")
    if len(values) != 16:
        raise SrnFormatError(f"{path}: pose has {len(values)} numbers, expected 16 (a 4x4 matrix)")
    if len(rows) > 1 and [len(row) for row in rows] != [4, 4, 4, 4]:
        raise SrnFormatError(f"{path}: pose rows have {[len(r) for r in rows]} numbers, expected 4 rows of 4")
    matrix = np.array(values, dtype=np.float64).reshape(4, 4)
    check_pose(matrix, path)
    return matrix


def check_pose(matrix: np.ndarray, path: str) -> None:
    """Raises SrnFormatError (naming ``path`` and the value) unless ``matrix`` is a rigid 4x4 transform."""
    if not np.isfinite(matrix).all():
        row, col = np.argwhere(~np.isfinite(matrix))[0]
        raise SrnFormatError(f"{path}: pose entry [{row}][{col}] is {matrix[row, col]}")
    if np.abs(matrix[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-4:
        raise SrnFormatError(f"{path}: pose last row is {matrix[3].tolist()}, expected [0, 0, 0, 1]")
    rotation = matrix[:3, :3]
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    det = np.linalg.det(rotation)
    if error > ROTATION_TOLERANCE or abs(det - 1) > ROTATION_TOLERANCE:
        raise SrnFormatError(
            f"{path}: pose rotation is not orthonormal with det +1: max|R^T R - I| = {error:.3g}, "
            f"det(R) = {det:.4f} (tolerance {ROTATION_TOLERANCE})"
        )


def read_srn_intrinsics(path: str) -> SrnIntrinsics:
    """Parses intrinsics.txt (4 lines, an optional 5th: see ``SrnIntrinsics``).

    Raises:
        SrnFormatError: missing lines, non-numbers, a focal <= 0 or a size that is not positive.
    """
    lines = [line.split() for line in _read_text(path).splitlines() if line.strip()]
    if len(lines) < 4:
        raise SrnFormatError(
            f"{path}: {len(lines)} non-empty lines, expected 4 ('f cx cy 0.', barycentre, scale, 'H W')"
        )
    first = _numbers(f"{path} line 1 (f cx cy 0.)", lines[0], "intrinsics", counts=(3, 4))
    barycentre = _numbers(f"{path} line 2 (barycentre)", lines[1], "intrinsics", counts=(3,))
    scale = _numbers(f"{path} line 3 (scale)", lines[2], "intrinsics", counts=(1,))[0]
    height, width = _numbers(f"{path} line 4 (H W)", lines[3], "intrinsics", counts=(2,))
    focal, cx, cy = first[:3]
    if not (np.isfinite(first).all() and focal > 0):
        raise SrnFormatError(f"{path} line 1: f cx cy = {first[:3]}, expected finite numbers and f > 0")
    if height <= 0 or width <= 0 or height != int(height) or width != int(width):
        raise SrnFormatError(f"{path} line 4: H W = {lines[3]}, expected two positive integers")
    world_to_camera = len(lines) > 4 and lines[4] == ["1"]
    return SrnIntrinsics(focal, cx, cy, tuple(barycentre), scale, int(height), int(width), world_to_camera)


def format_srn_pose(cam_to_world: np.ndarray) -> str:
    """A pose file's text: the 4x4 matrix row-major on one line, as the public files are."""
    values = (float(v) + 0.0 for v in np.asarray(cam_to_world).reshape(16))  # + 0.0: no "-0.000000000"
    return " ".join(f"{v:.9f}" for v in values) + "\n"


def format_srn_intrinsics(focal: float, cx: float, cy: float, height: int, width: int) -> str:
    """intrinsics.txt's text; the barycentre and scale lines say "object at the origin, unit scale"."""
    return f"{focal:.9f} {cx:.9f} {cy:.9f} 0.\n0. 0. 0.\n1.\n{height} {width}\n"


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise SrnFormatError(f"{path}: cannot read ({error})") from None


def _numbers(where: str, tokens: Sequence[str], what: str, counts: Tuple[int, ...] = ()) -> List[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise SrnFormatError(f"{where}: {what} holds a non-number: {' '.join(tokens)!r}") from None
    if counts and len(values) not in counts:
        raise SrnFormatError(f"{where}: {len(values)} numbers {' '.join(tokens)!r}, expected {counts[-1]}")
    return values


# ----------------------------------------------------------------------------------- cameras


def srn_to_pytorch3d(cam_to_world, f, cx, cy, height: int, width: int) -> PerspectiveCameras:
    """NDC PerspectiveCameras of V SRN / OpenCV cameras.

    Args:
        cam_to_world: (V, 4, 4) camera-to-world matrices, OpenCV axes.
        f: focal length in pixels: a number, (V,), or (V, 2) = (fx, fy).
        cx, cy: principal point in pixels: numbers or (V,).
        height, width: the image size those pixels belong to.
    """
    c2w = torch.as_tensor(np.asarray(cam_to_world), dtype=torch.float64)  # (V, 4, 4)
    n = c2w.shape[0]
    rotation = c2w[:, :3, :3].transpose(1, 2)  # (V, 3, 3) world-to-camera, column vectors
    tvec = -(rotation @ c2w[:, :3, 3:])[..., 0]  # (V, 3)
    focal = torch.as_tensor(np.asarray(f), dtype=torch.float64)
    focal = focal.reshape(-1, 2) if focal.ndim == 2 else focal.reshape(-1, 1).expand(-1, 2)
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = focal.expand(n, 2).unbind(-1)
    K[:, 0, 2] = torch.as_tensor(np.asarray(cx), dtype=torch.float64).expand(n)
    K[:, 1, 2] = torch.as_tensor(np.asarray(cy), dtype=torch.float64).expand(n)
    K[:, 2, 2] = 1.0
    size = torch.tensor([[height, width]]).expand(n, 2)
    converted = cameras_from_opencv_projection(rotation, tvec, K, size)
    # without image_size, as Implicitron's CO3D loader builds its NDC cameras
    return PerspectiveCameras(
        R=converted.R.float(),
        T=converted.T.float(),
        focal_length=converted.focal_length.float(),
        principal_point=converted.principal_point.float(),
    )


def pytorch3d_to_srn(cameras: PerspectiveCameras, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of ``srn_to_pytorch3d``: ((V, 4, 4) camera-to-world, (V, 3, 3) pixel K), float64,
    for NDC ``cameras`` and images of ``height`` x ``width``."""
    size = torch.tensor([[height, width]]).expand(len(cameras), 2)
    rotation, tvec, K = (t.double() for t in opencv_from_cameras_projection(cameras, size))
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(cameras), 1, 1)  # (V, 4, 4)
    c2w[:, :3, :3] = rotation.transpose(1, 2)
    c2w[:, :3, 3] = -(rotation.transpose(1, 2) @ tvec[..., None])[..., 0]
    return c2w.numpy(), K.numpy()


# ---------------------------------------------------------------------------------- indexing


@dataclass
class SrnObject:
    """The usable frames of one object, ordered by frame number.

    Attributes:
        object_id: the folder name.
        folder: its path.
        intrinsics: its intrinsics.txt.
        image_hw: the stored image size (H, W) of all its frames.
        numbers: the frame numbers (file names).
        image_paths: rgb/NNNNNN.png of each frame.
        cam_to_world: (V, 4, 4) float64, OpenCV axes.
    """

    object_id: str
    folder: str
    intrinsics: SrnIntrinsics
    image_hw: Tuple[int, int]
    numbers: List[int]
    image_paths: List[str]
    cam_to_world: np.ndarray


def index_object(folder: str) -> Tuple[Optional[SrnObject], List[str]]:
    """(the object's usable frames or None if it has none, ["file: reason", ...] of what was left out).

    Reads intrinsics.txt, every pose, and every image's header (not its pixels)."""
    try:
        intrinsics = read_srn_intrinsics(os.path.join(folder, "intrinsics.txt"))
    except SrnFormatError as error:
        return None, [str(error)]
    images = _numbered_files(os.path.join(folder, "rgb"), "png")
    if not images:
        return None, [f"{os.path.join(folder, 'rgb')}: no views (no NNNNNN.png files)"]
    poses = _numbered_files(os.path.join(folder, "pose"), "txt")
    problems: List[str] = []
    frames: Dict[int, Tuple[str, np.ndarray, Tuple[int, int]]] = {}
    for number, image_path in sorted(images.items()):
        if number not in poses:
            problems.append(f"{image_path}: no pose file pose/{os.path.basename(image_path)[:-4]}.txt")
            continue
        try:
            matrix = read_srn_pose(poses[number])
            frames[number] = (image_path, matrix, _image_hw(image_path))
        except SrnFormatError as error:
            problems.append(str(error))
    frames = _drop_odd_sizes(frames, problems)
    if not frames:
        return None, problems
    numbers = sorted(frames)
    matrices = np.stack([frames[n][1] for n in numbers])  # (V, 4, 4)
    if intrinsics.world_to_camera:
        matrices = np.linalg.inv(matrices)
    obj = SrnObject(
        object_id=os.path.basename(os.path.normpath(folder)),
        folder=folder,
        intrinsics=intrinsics,
        image_hw=frames[numbers[0]][2],
        numbers=numbers,
        image_paths=[frames[n][0] for n in numbers],
        cam_to_world=matrices,
    )
    return obj, problems


def _drop_odd_sizes(frames: Dict, problems: List[str]) -> Dict:
    """Frames whose image has the object's most common size; the others are reported."""
    if not frames:
        return frames
    size = Counter(hw for _, _, hw in frames.values()).most_common(1)[0][0]
    kept = {}
    for number, (path, matrix, hw) in frames.items():
        if hw == size:
            kept[number] = (path, matrix, hw)
        else:
            problems.append(
                f"{path}: image is {hw[0]}x{hw[1]} (HxW), the object's other images are {size[0]}x{size[1]}"
            )
    return kept


def _numbered_files(folder: str, extension: str) -> Dict[int, str]:
    """frame number -> path of the folder's NNNNNN.<extension> files ({} if the folder is missing)."""
    if not os.path.isdir(folder):
        return {}
    files = {}
    for name in os.listdir(folder):
        match = FRAME_FILE.match(name)
        if match and match.group(2) == extension:
            files[int(match.group(1))] = os.path.join(folder, name)
    return files


def _image_hw(path: str) -> Tuple[int, int]:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.height, image.width
    except (OSError, SyntaxError, ValueError) as error:
        raise SrnFormatError(f"{path}: cannot read image ({error})") from None


def index_split(split_dir: str, object_ids: Optional[Sequence[str]] = None) -> List[SrnObject]:
    """The usable objects of a split folder (all of them, or those in ``object_ids``), warning once
    per object that lost frames or was skipped."""
    names = sorted(n for n in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, n)))
    if object_ids is not None:
        names = [n for n in names if n in set(object_ids)]
    objects = []
    for name in names:
        obj, problems = index_object(os.path.join(split_dir, name))
        if problems:
            warnings.warn(_problem_message(os.path.join(split_dir, name), obj, problems), SrnDataWarning)
        if obj is not None:
            objects.append(obj)
    if not objects:
        raise DatasetLayoutError(f"{split_dir}: no usable object among its {len(names)} folders (see the warnings)")
    return objects


def _problem_message(folder: str, obj: Optional[SrnObject], problems: List[str]) -> str:
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f"; and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
    if obj is None:
        return f"holo3d SRN: skipping object {folder}: {listed}{more}"
    return f"holo3d SRN: object {folder}: {len(problems)} frame(s) left out, {len(obj.numbers)} used: {listed}{more}"


def split_train_val(object_ids: Sequence[str], val_fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """(train, val) object ids: a seeded random ``val_fraction`` of the objects (at least one when
    there are two or more) is val, as GeNVS splits SRN's cars_train 90/10. Depends only on the set
    of ids and the seed."""
    ids = sorted(object_ids)
    n_val = min(max(1, round(val_fraction * len(ids))), len(ids) - 1) if len(ids) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[i] for i in order[:n_val]}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


# ----------------------------------------------------------------------------------- dataset


def load_srn_image(path: str, mask_threshold: float = MASK_THRESHOLD) -> Tuple[torch.Tensor, torch.Tensor]:
    """(image_rgb (3, H, W) on white in [0, 1], fg_probability (1, H, W)) of one SRN png.

    The mask is the alpha channel when the png has a non-trivial one (the RGB is then composited
    on white), else "not white": some channel below 1 - mask_threshold.
    """
    try:
        with Image.open(path) as image:
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))  # (H, W, 3|4) uint8
    except (OSError, SyntaxError, ValueError) as error:
        raise SrnFormatError(f"{path}: cannot decode image ({error})") from None
    # numpy, not torch: torch's intra-op threads on 128 x 128 images cost 10x more than they save
    # in a loader's main process (measured on 2 busy cores)
    rgb = pixels[..., :3].astype(np.float32) / 255.0  # (H, W, 3)
    if has_alpha and (pixels[..., 3] < 255).any():
        fg = pixels[..., 3:].astype(np.float32) / 255.0  # (H, W, 1)
        rgb = rgb * fg + (1.0 - fg)
    else:
        fg = ((255 - pixels[..., :3]).max(axis=-1, keepdims=True) > mask_threshold * 255).astype(np.float32)
    return _chw(rgb), _chw(fg)  # (3, H, W), (1, H, W)


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (C, H, W)


class SrnDataset(DatasetBase):
    """Implicitron dataset of SRN objects: one FrameData per view; sequences are objects.

    Args:
        objects: the objects (from ``index_split``).
        category: ``sequence_category`` of every frame (e.g. "cars").
        image_size: 0 keeps the stored size; otherwise frames are resized to image_size x image_size
            and the cameras follow.
        mask_threshold: see ``load_srn_image``.
    """

    def __init__(
        self, objects: Sequence[SrnObject], category: str, image_size: int = 0, mask_threshold: float = MASK_THRESHOLD
    ) -> None:
        self.objects = list(objects)
        self.category = category
        self.image_size = image_size
        self.mask_threshold = mask_threshold
        self._frames = [(o, k) for o, obj in enumerate(self.objects) for k in range(len(obj.numbers))]
        self._seq_to_idx: Dict[str, List[int]] = {}
        for index, (o, _) in enumerate(self._frames):
            self._seq_to_idx.setdefault(self.objects[o].object_id, []).append(index)
        self._cameras = [self._object_cameras(obj) for obj in self.objects]

    def output_hw(self, obj: SrnObject) -> Tuple[int, int]:
        """(H, W) of the frames this dataset returns for ``obj``."""
        return (self.image_size, self.image_size) if self.image_size else obj.image_hw

    def _object_cameras(self, obj: SrnObject) -> PerspectiveCameras:
        height, width = self.output_hw(obj)
        fx, fy, cx, cy = obj.intrinsics.pixel_intrinsics(height, width)
        return srn_to_pytorch3d(obj.cam_to_world, [[fx, fy]], cx, cy, height, width)

    def object_cameras(self, object_id: str) -> PerspectiveCameras:
        """The V cameras of one object, in frame order."""
        return self._cameras[[o.object_id for o in self.objects].index(object_id)]

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> FrameData:
        if not 0 <= index < len(self._frames):
            raise IndexError(f"index {index} out of range {len(self._frames)}")
        o, k = self._frames[index]
        obj = self.objects[o]
        path = obj.image_paths[k]
        image, fg = load_srn_image(path, self.mask_threshold)  # (3, H, W), (1, H, W)
        if tuple(image.shape[-2:]) != obj.image_hw:
            raise SrnFormatError(
                f"{path}: image is {tuple(image.shape[-2:])} (HxW) now, was {obj.image_hw} when indexed"
            )
        out_hw = self.output_hw(obj)
        if out_hw != obj.image_hw:
            image, fg = _resize(image, out_hw), _resize(fg, out_hw)
        return FrameData(
            frame_number=torch.tensor(obj.numbers[k], dtype=torch.long),
            sequence_name=obj.object_id,
            sequence_category=self.category,
            frame_timestamp=torch.tensor(0.0),  # unordered views, not a video
            image_size_hw=torch.tensor(obj.image_hw, dtype=torch.long),
            effective_image_size_hw=torch.tensor(out_hw, dtype=torch.long),
            image_path=path,
            image_rgb=image,
            mask_crop=torch.ones_like(fg),  # no crop, no padding
            fg_probability=fg,
            camera=self._cameras[o][k],
        )

    def get_frame_numbers_and_timestamps(self, idxs, subset_filter=None) -> List[Tuple[int, float]]:
        """(frame number, 0.0) per index: SRN views have no time order."""
        return [(self.objects[self._frames[i][0]].numbers[self._frames[i][1]], 0.0) for i in idxs]

    def category_to_sequence_names(self) -> Dict[str, List[str]]:
        return {self.category: list(self._seq_to_idx)}


def _resize(tensor: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(C, H, W) -> (C, h, w), antialiased bilinear (downsizing 128 -> 64 must not alias)."""
    resized = F.interpolate(tensor[None], size=hw, mode="bilinear", align_corners=False, antialias=True)
    return resized[0].clamp(0, 1)  # (C, h, w)


# ---------------------------------------------------------------------------------- provider


@registry.register
class SrnDatasetMapProvider(DatasetMapProviderBase):
    """Train / val / test ``SrnDataset``s of one SRN category.

    Members:
        dataset_root: the folder holding <category>_train, _val, _test; "" = the built-in dataset
            written in SRN format (``builtin_preset``), generated on first use.
        category: the split-folder prefix, "cars" or "chairs" (built-in data: "chairs", "mugs", ...).
        split_train_val_from_train: train / val = a 90/10 split of <category>_train by object, as
            GeNVS does (<category>_val is then not read).
        val_fraction: the val share of that split.
        split_seed: seed of that split.
        image_size: 0 keeps the stored size (128 for SRN); otherwise frames are resized to it (square).
        mask_threshold: a pixel is foreground when some channel is below 1 - mask_threshold (PNGs
            without a usable alpha channel).
        builtin_preset: preset of the built-in dataset used when dataset_root is empty ("tiny" |
            "demo" | "full"); "" makes an empty dataset_root an error.
        builtin_device: device that generates the built-in dataset; "auto" = cuda when available.
    """

    dataset_root: str = ""
    category: str = "cars"
    split_train_val_from_train: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int = 0
    mask_threshold: float = MASK_THRESHOLD
    builtin_preset: str = "demo"
    builtin_device: str = "auto"

    def __post_init__(self) -> None:
        self._check_fields()
        self._root = self._resolve_root()
        self._split_dirs = self._find_split_dirs()
        self._dataset_map: Optional[DatasetMap] = None

    def _check_fields(self) -> None:
        checks = {
            "val_fraction": 0 < self.val_fraction < 1,
            "image_size": self.image_size >= 0,
            "mask_threshold": 0 <= self.mask_threshold < 1,
            "category": bool(self.category),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SrnDatasetMapProvider.{name}={getattr(self, name)!r} is out of range")

    def _resolve_root(self) -> str:
        if self.dataset_root:
            if not os.path.isdir(self.dataset_root):
                parent = os.path.dirname(os.path.abspath(self.dataset_root))
                there = sorted(os.listdir(parent))[:20] if os.path.isdir(parent) else "(does not exist either)"
                raise DatasetLayoutError(
                    f"SRN dataset_root {self.dataset_root} does not exist; {parent} holds: {there}"
                )
            return self.dataset_root
        if not self.builtin_preset:
            raise DatasetLayoutError(
                "SrnDatasetMapProvider.dataset_root is empty and builtin_preset is empty: set dataset_root to the "
                "folder holding <category>_train, <category>_val, <category>_test"
            )
        device = self.builtin_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return ensure_builtin_dataset(None, self.builtin_preset, device=device, fmt="srn")

    def _find_split_dirs(self) -> Dict[str, str]:
        """split -> folder; raises naming the missing folder and the categories that are there."""
        needed = ["train", "test"] if self.split_train_val_from_train else ["train", "val", "test"]
        dirs = {split: os.path.join(self._root, f"{self.category}_{split}") for split in needed}
        for split, folder in dirs.items():
            if not os.path.isdir(folder):
                there = sorted(n for n in os.listdir(self._root) if os.path.isdir(os.path.join(self._root, n)))
                categories = sorted({n.rsplit("_", 1)[0] for n in there if n.endswith("_train")})
                raise DatasetLayoutError(
                    f"SRN split folder {folder} does not exist; {self._root} holds {there} "
                    f"(categories with a _train split: {categories})"
                )
        return dirs

    def get_dataset_map(self) -> DatasetMap:
        """Indexes the splits on first call (reads every pose and image header), then cached."""
        if self._dataset_map is None:
            dirs = self._split_dirs
            if self.split_train_val_from_train:
                names = [n for n in os.listdir(dirs["train"]) if os.path.isdir(os.path.join(dirs["train"], n))]
                train_ids, val_ids = split_train_val(names, self.val_fraction, self.split_seed)
                train, val = index_split(dirs["train"], train_ids), index_split(dirs["train"], val_ids)
            else:
                train, val = index_split(dirs["train"]), index_split(dirs["val"])
            test = index_split(dirs["test"])
            self._dataset_map = DatasetMap(train=self._dataset(train), val=self._dataset(val), test=self._dataset(test))
        return self._dataset_map

    def _dataset(self, objects: List[SrnObject]) -> SrnDataset:
        return SrnDataset(objects, self.category, image_size=self.image_size, mask_threshold=self.mask_threshold)

    def get_all_train_cameras(self) -> Optional[PerspectiveCameras]:
        """The train cameras when the train split is one object, else None (objects share no frame)."""
        train = self.get_dataset_map().train
        names = list(train.sequence_names())
        return train.object_cameras(names[0]) if len(names) == 1 else None
