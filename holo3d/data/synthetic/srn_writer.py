"""Writes rendered sequences in the SRN cars / chairs layout (what GeNVS and pixelNeRF read):

    root/<cat>s_{train,val,test}/<object_id>/rgb/000000.png      RGBA: RGB on white, alpha = mask
                                             pose/000000.txt     4x4 camera-to-world, OpenCV, one line
                                             intrinsics.txt      "f cx cy 0." / "0. 0. 0." / "1." / "H W"
    root/_holo3d_ground_truth/<split>/<object_id>/{mesh.ply, occupancy_64.npy, pointcloud.ply, object.json}

Sequence sets map to splits as train -> <cat>s_train, dev -> <cat>s_val, test -> <cat>s_test. The
ground truth lives in a sibling folder that SRN readers (which list <root>/<split>/) never see.

SRN keeps one intrinsics.txt per object, but the built-in camera paths jitter the focal length per
frame (as CO3D's per-frame intrinsics do). The writer therefore re-renders each object with its
smallest focal length for every frame (the smallest keeps the object in frame), so the images and
the files agree exactly; ``shared_intrinsics`` gives those cameras.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from holo3d.data.srn import format_srn_intrinsics, format_srn_pose, pytorch3d_to_srn
from holo3d.data.synthetic.ground_truth import write_ground_truth
from holo3d.data.synthetic.orbit import OrbitCameras
from holo3d.data.synthetic.renderer import RenderedViews, render_views, to_pytorch3d_cameras
from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.spec import SyntheticSpec

SPLIT_OF_SET = {"train": "train", "dev": "val", "test": "test"}
GROUND_TRUTH_DIR = "_holo3d_ground_truth"


def plural(category: str) -> str:
    """The split-folder prefix of a category: "car" -> "cars", as SRN names cars_train."""
    return category if category.endswith("s") else f"{category}s"


def split_name(category: str, sequence_set: str) -> str:
    """"chair", "dev" -> "chairs_val"."""
    return f"{plural(category)}_{SPLIT_OF_SET[sequence_set]}"


def shared_intrinsics(cameras: OrbitCameras) -> OrbitCameras:
    """The cameras with one focal length and principal point for every frame: the smallest focal
    and the first principal point (orbit paths already use one principal point per sequence)."""
    n = len(cameras)
    focal = cameras.focal_length.min().expand(n, 2).clone()  # (V, 2)
    principal = cameras.principal_point[:1].expand(n, 2).clone()  # (V, 2)
    return OrbitCameras(R=cameras.R, T=cameras.T, focal_length=focal, principal_point=principal)


class SrnWriter:
    """DatasetWriter for the SRN layout (see the module docstring)."""

    needs_renders = True  # writes images (see writer_base.DatasetWriter)
    render_cameras = staticmethod(shared_intrinsics)  # generation renders the stored cameras once

    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        self.root = root
        self.spec = spec
        # the writer is not told the generation device; re-rendering follows what is available
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    def add(self, sequence: RenderedSequence) -> None:
        split = split_name(sequence.category, sequence.sequence_set)
        folder = os.path.join(self.root, split, sequence.name)
        height, width = sequence.image_size
        cameras, views = self._shared_views(sequence)
        cam_to_world, K = pytorch3d_to_srn(to_pytorch3d_cameras(cameras, (height, width), "cpu"), height, width)
        os.makedirs(os.path.join(folder, "rgb"), exist_ok=True)
        os.makedirs(os.path.join(folder, "pose"), exist_ok=True)
        # shared_intrinsics makes K the same for every frame, with fx == fy (isotropic NDC focal)
        _write_text(os.path.join(folder, "intrinsics.txt"),
                    format_srn_intrinsics(K[0, 0, 0], K[0, 0, 2], K[0, 1, 2], height, width))
        for i in range(len(cameras)):
            _write_text(os.path.join(folder, "pose", f"{i:06d}.txt"), format_srn_pose(cam_to_world[i]))
            Image.fromarray(_rgba_on_white(views, i)).save(os.path.join(folder, "rgb", f"{i:06d}.png"))
        write_ground_truth(sequence, self.spec, os.path.join(self.root, GROUND_TRUTH_DIR, split, sequence.name))

    def _shared_views(self, sequence: RenderedSequence):
        """(cameras with shared intrinsics, their renders): the sequence's own when its intrinsics
        are already shared, else a re-render."""
        cameras = shared_intrinsics(sequence.cameras)
        same = torch.equal(cameras.focal_length, sequence.cameras.focal_length) and torch.equal(
            cameras.principal_point, sequence.cameras.principal_point
        )
        if same:
            return cameras, sequence.views
        views = render_views(sequence.obj.mesh(), cameras, sequence.image_size,
                             background=self.spec.background, device=self.device)
        return cameras, views

    def finish(self) -> None:
        """Nothing dataset-level: SRN has no index files (readers list the split folders)."""


def _rgba_on_white(views: RenderedViews, i: int) -> np.ndarray:
    """(H, W, 4) uint8 of view i: RGB composited on white (whatever the render background), alpha = mask."""
    mask = views.mask[i].numpy()  # (H, W) bool
    rgb = np.where(mask[..., None], views.rgb[i].numpy(), 1.0)  # (H, W, 3)
    alpha = mask.astype(np.float32)[..., None]  # (H, W, 1)
    return (np.concatenate([rgb, alpha], axis=-1) * 255 + 0.5).astype(np.uint8)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
