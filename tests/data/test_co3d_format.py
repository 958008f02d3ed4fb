"""The generated dataset is in the real CO3Dv2 format, file by file."""

import gzip
import json
import os

import numpy as np
from PIL import Image
from pytorch3d.implicitron.dataset import types
from pytorch3d.io import IO

from holo3d.data.synthetic import read_manifest, render_sequence

SUBSETS = ["fewview_dev", "fewview_test", "manyview_dev_0", "manyview_test_0"]


def _frames(root, category):
    return types.load_dataclass_jgzip(os.path.join(root, category, "frame_annotations.jgz"), list[types.FrameAnnotation])


def test_layout_and_index_files(co3d_root, tiny_spec):
    assert read_manifest(co3d_root)["spec"]["sequences"] == tiny_spec.sequences
    with open(os.path.join(co3d_root, "category_to_subset_name_list.json")) as f:
        assert json.load(f) == {c: SUBSETS for c in tiny_spec.categories}
    for category in tiny_spec.categories:
        folder = os.path.join(co3d_root, category)
        for subset in SUBSETS:
            assert os.path.isfile(os.path.join(folder, "set_lists", f"set_lists_{subset}.json"))
            assert os.path.isfile(os.path.join(folder, "eval_batches", f"eval_batches_{subset}.json"))
        sequences = types.load_dataclass_jgzip(os.path.join(folder, "sequence_annotations.jgz"), list[types.SequenceAnnotation])
        assert [s.sequence_name for s in sequences] == [f"{category}_{i:03d}" for i in range(tiny_spec.sequences)]
        assert all(s.category == category for s in sequences)


def test_frame_annotations_point_at_real_files(co3d_root, tiny_spec):
    frames = _frames(co3d_root, "mug")
    assert len(frames) == tiny_spec.sequences * tiny_spec.frames
    for frame in frames:
        for path in (frame.image.path, frame.mask.path, frame.depth.path, frame.depth.mask_path):
            assert os.path.isfile(os.path.join(co3d_root, path)), path
        assert frame.image.size == tiny_spec.image_size
        assert frame.viewpoint.intrinsics_format == "ndc_isotropic"
        assert frame.meta["frame_type"].split("_")[1] in ("known", "unseen")
        mask = np.array(Image.open(os.path.join(co3d_root, frame.mask.path)))
        assert mask.dtype == np.uint8 and frame.mask.mass == (mask > 127).sum() > 0


def test_depth_png_holds_float16_bits_of_the_rendered_depth(co3d_root, tiny_spec):
    frame = _frames(co3d_root, "chair")[7]  # chair_001, frame 1
    with Image.open(os.path.join(co3d_root, frame.depth.path)) as png:
        assert png.mode in ("I;16", "I") and png.size == tiny_spec.image_size[::-1]
        bits = np.array(png, dtype=np.uint16)
    depth = bits.view(np.float16).astype(np.float32)
    rendered = render_sequence(tiny_spec, "chair", 1).views.depth[1].numpy()
    assert np.array_equal(depth, rendered.astype(np.float16).astype(np.float32))
    with Image.open(os.path.join(co3d_root, frame.depth.mask_path)) as png:
        assert np.array_equal(np.array(png.convert("L")) > 0, rendered > 0)


def test_ground_truth_files(co3d_root):
    folder = os.path.join(co3d_root, "mug", "mug_002")
    occupancy = np.load(os.path.join(folder, "occupancy_64.npy"))
    assert occupancy.shape == (64, 64, 64) and occupancy.dtype == bool and occupancy.any()
    mesh = IO().load_mesh(os.path.join(folder, "mesh.ply"))
    assert mesh.verts_packed().norm(dim=1).max() <= 0.8 + 1e-4
    assert IO().load_pointcloud(os.path.join(folder, "pointcloud.ply")).points_packed().shape[0] > 1000
    with open(os.path.join(folder, "object.json")) as f:
        assert json.load(f)["category"] == "mug"


def test_jgz_is_plain_gzipped_json(co3d_root):
    with gzip.open(os.path.join(co3d_root, "chair", "frame_annotations.jgz"), "rt") as f:
        first = json.load(f)[0]
    assert set(first) == {"sequence_name", "frame_number", "frame_timestamp", "image", "depth", "mask", "viewpoint", "meta"}
