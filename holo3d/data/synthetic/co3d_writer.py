"""Writes rendered sequences as a CO3Dv2 dataset that Implicitron's JsonIndexDatasetMapProviderV2 reads.

    root/category_to_subset_name_list.json
    root/<cat>/frame_annotations.jgz, sequence_annotations.jgz
    root/<cat>/set_lists/set_lists_<subset>.json, eval_batches/eval_batches_<subset>.json
    root/<cat>/<seq>/images/frame000001.jpg           RGB (jpg as CO3D, or png)
    root/<cat>/<seq>/masks/frame000001.png            8-bit foreground probability * 255
    root/<cat>/<seq>/depths/frame000001.jpg.geometric.png   float16 bits in a 16-bit PNG
    root/<cat>/<seq>/depth_masks/frame000001.png      1-bit valid-depth mask
    root/<cat>/<seq>/{mesh.ply, occupancy_64.npy, pointcloud.ply, object.json}  ground truth

All paths inside the annotations are relative to root, as in CO3Dv2.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Dict, List

import numpy as np
from PIL import Image
from pytorch3d.implicitron.dataset import types
from pytorch3d.implicitron.dataset.utils import get_bbox_from_mask

from holo3d.data.synthetic.co3d_subsets import FrameEntry, build_subsets
from holo3d.data.synthetic.ground_truth import write_ground_truth
from holo3d.data.synthetic.sequence import RenderedSequence
from holo3d.data.synthetic.sequence_sets import frame_type
from holo3d.data.synthetic.spec import SyntheticSpec

FPS = 30.0  # frame_timestamp = frame_number / FPS, like a 30 fps video


class Co3dWriter:
    """DatasetWriter for the CO3Dv2 layout (see the module docstring)."""

    needs_renders = True  # writes images (see writer_base.DatasetWriter)

    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        self.root = root
        self.spec = spec
        self.frame_annotations: Dict[str, List[types.FrameAnnotation]] = defaultdict(list)
        self.sequence_annotations: Dict[str, List[types.SequenceAnnotation]] = defaultdict(list)
        self.frames: Dict[str, Dict[str, List[FrameEntry]]] = defaultdict(dict)
        self.sets: Dict[str, Dict[str, str]] = defaultdict(dict)

    def add(self, sequence: RenderedSequence) -> None:
        rel_dir = os.path.join(sequence.category, sequence.name)
        n_points = write_ground_truth(sequence, self.spec, os.path.join(self.root, rel_dir))
        entries = []
        for i in range(len(sequence.cameras)):
            annotation = self._write_frame(sequence, i, rel_dir)
            self.frame_annotations[sequence.category].append(annotation)
            entries.append(
                FrameEntry(sequence.name, i, annotation.image.path, annotation.meta["frame_type"])
            )
        self.frames[sequence.category][sequence.name] = entries
        self.sets[sequence.category][sequence.name] = sequence.sequence_set
        self.sequence_annotations[sequence.category].append(
            types.SequenceAnnotation(
                sequence_name=sequence.name,
                category=sequence.category,
                point_cloud=types.PointCloudAnnotation(
                    path=os.path.join(rel_dir, "pointcloud.ply"), quality_score=1.0, n_points=n_points
                ),
                viewpoint_quality_score=1.0,
            )
        )

    def _write_frame(self, sequence: RenderedSequence, i: int, rel_dir: str) -> types.FrameAnnotation:
        """Writes frame i's four images; returns its annotation."""
        image_name = f"frame{i + 1:06d}.{self.spec.image_format}"
        paths = {
            "image": os.path.join(rel_dir, "images", image_name),
            "mask": os.path.join(rel_dir, "masks", f"frame{i + 1:06d}.png"),
            "depth": os.path.join(rel_dir, "depths", f"{image_name}.geometric.png"),
            "depth_mask": os.path.join(rel_dir, "depth_masks", f"frame{i + 1:06d}.png"),
        }
        views = sequence.views
        mask = views.mask[i].numpy()  # (H, W) bool
        depth = views.depth[i].numpy()  # (H, W) float32
        self._save(paths["image"], (views.rgb[i].numpy() * 255 + 0.5).astype(np.uint8))
        self._save(paths["mask"], mask.astype(np.uint8) * 255)
        self._save(paths["depth"], depth.astype(np.float16).view(np.uint16))  # CO3D's depth encoding
        self._save(paths["depth_mask"], depth > 0)
        return types.FrameAnnotation(
            sequence_name=sequence.name,
            frame_number=i,
            frame_timestamp=i / FPS,
            image=types.ImageAnnotation(path=paths["image"], size=tuple(sequence.image_size)),
            depth=types.DepthAnnotation(
                path=paths["depth"], scale_adjustment=1.0, mask_path=paths["depth_mask"]
            ),
            mask=types.MaskAnnotation(
                path=paths["mask"],
                mass=float(mask.sum()),
                bounding_box_xywh=_bbox(mask),
            ),
            viewpoint=_viewpoint(sequence, i),
            meta={"frame_type": frame_type(i, sequence.sequence_set)},
        )

    def _save(self, rel_path: str, array: np.ndarray) -> None:
        path = os.path.join(self.root, rel_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        options = {"quality": 95, "subsampling": 0} if path.endswith(".jpg") else {}
        Image.fromarray(array).save(path, **options)

    def finish(self) -> None:
        subset_names = {}
        for category in self.frame_annotations:
            subset_names[category] = self._write_category_index(category)
        with open(os.path.join(self.root, "category_to_subset_name_list.json"), "w") as f:
            json.dump(subset_names, f, indent=1)

    def _write_category_index(self, category: str) -> List[str]:
        folder = os.path.join(self.root, category)
        for name, annotations in (
            ("frame_annotations.jgz", self.frame_annotations[category]),
            ("sequence_annotations.jgz", self.sequence_annotations[category]),
        ):
            types.dump_dataclass_jgzip(os.path.join(folder, name), annotations)
        set_lists, eval_batches = build_subsets(self.frames[category], self.sets[category])
        for kind, per_subset in (("set_lists", set_lists), ("eval_batches", eval_batches)):
            os.makedirs(os.path.join(folder, kind), exist_ok=True)
            for subset, content in per_subset.items():
                with open(os.path.join(folder, kind, f"{kind}_{subset}.json"), "w") as f:
                    json.dump(content, f)
        return sorted(set_lists)


def _bbox(mask: np.ndarray):
    """The tight box Implicitron would compute from the mask itself (x0, y0, w, h), or None."""
    if not mask.any():
        return None
    return tuple(float(v) for v in get_bbox_from_mask(mask.astype(np.float32), 0.5))


def _viewpoint(sequence: RenderedSequence, i: int) -> types.ViewpointAnnotation:
    cameras = sequence.cameras
    return types.ViewpointAnnotation(
        R=tuple(tuple(float(v) for v in row) for row in cameras.R[i].tolist()),
        T=tuple(float(v) for v in cameras.T[i].tolist()),
        focal_length=tuple(float(v) for v in cameras.focal_length[i].tolist()),
        principal_point=tuple(float(v) for v in cameras.principal_point[i].tolist()),
        intrinsics_format="ndc_isotropic",
    )
