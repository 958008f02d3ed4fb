"""Bad input: clear errors naming what is wrong (and what is there), or skip-with-warning."""

import gzip
import json
import os

import pytest
import torch

from holo3d.data import SceneBatch, UnreadableFrameWarning, UnreadableSequenceError
from holo3d.data.annotation_checks import AnnotationError
from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.multi_scene_sampler import scene_index


def _train(make_source, root):
    return make_source(root, "chair").dataset_map_provider.get_dataset_map().train


def _frame_path(root, sequence, number, kind="images"):
    name = f"frame{number + 1:06d}.png"
    return os.path.join(root, "chair", sequence, kind, name if kind != "depths" else f"{name}.geometric.png")


def _rewrite_frames(root, edit):
    path = os.path.join(root, "chair", "frame_annotations.jgz")
    with gzip.open(path, "rt") as f:
        frames = json.load(f)
    edit(frames)
    with gzip.open(path, "wt") as f:
        json.dump(frames, f)
    return path


def test_missing_root_names_it_and_lists_its_parent(co3d_root, make_source, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"dataset root .*nowhere does not exist.*'elsewhere'"):
        make_source(tmp_path / "nowhere")


def test_missing_category_lists_the_categories(co3d_root, make_source):
    with pytest.raises(DatasetLayoutError, match=r"category 'lamp' not found.*\['chair', 'mug'\]"):
        make_source(co3d_root, "lamp")


def test_missing_subset_lists_the_subsets(co3d_root, make_source):
    with pytest.raises(DatasetLayoutError, match=r"subset 'manyview_dev_7' not found.*'fewview_dev', 'fewview_test'"):
        make_source(co3d_root, "chair", "manyview_dev_7")


def test_missing_eval_batches_says_how_to_do_without(co3d_copy, make_source):
    os.remove(os.path.join(co3d_copy, "chair", "eval_batches", "eval_batches_fewview_dev.json"))
    with pytest.raises(DatasetLayoutError, match="eval_batches_fewview_dev.json is missing; set load_eval_batches=False"):
        make_source(co3d_copy)


def test_empty_root_without_builtin_names_the_settings(make_source, source_config, monkeypatch):
    monkeypatch.delenv("CO3DV2_DATASET_ROOT", raising=False)
    from holo3d.data import Holo3DDataSource

    cfg = source_config("")
    cfg.builtin_preset = ""
    with pytest.raises(DatasetLayoutError, match="dataset_root is empty.*CO3DV2_DATASET_ROOT"):
        Holo3DDataSource(**cfg)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda f: f[3]["viewpoint"].__setitem__("R", "oops"), r"entry 3 \(chair_000/3\): field 'viewpoint.R' should be a list"),
        (lambda f: f[7].pop("image"), r"entry 7 \(chair_001/1\): field 'image' is missing"),
        (lambda f: f[2]["mask"].__setitem__("mass", None), r"entry 2 .*field 'mask.mass' is missing"),
        (lambda f: f[0]["viewpoint"].__setitem__("intrinsics_format", "opencv"), r"field 'viewpoint.intrinsics_format' is 'opencv'"),
        (lambda f: f[5].__setitem__("frame_number", "5"), r"field 'frame_number' should be an integer"),
    ],
)
def test_unparsable_frame_annotations_name_the_file_and_field(co3d_copy, make_source, edit, message):
    path = _rewrite_frames(co3d_copy, edit)
    with pytest.raises(AnnotationError, match=message) as error:
        make_source(co3d_copy)
    assert path in str(error.value)


def _break_set_list(root):
    with open(os.path.join(root, "chair", "set_lists", "set_lists_fewview_dev.json"), "w") as f:
        json.dump({"train": [["chair_000", "zero", "x.png"]], "val": [], "test": []}, f)


def _break_sequence_annotations(root):
    with open(os.path.join(root, "chair", "sequence_annotations.jgz"), "wb") as f:
        f.write(b"not gzip")


@pytest.mark.parametrize(
    "damage,message",
    [
        (_break_set_list, r"set_lists_fewview_dev.json: field 'train\[0\]' must be \[sequence_name"),
        (_break_sequence_annotations, "chair/sequence_annotations.jgz: not valid gzipped JSON"),
    ],
)
def test_corrupt_json_files_are_named(co3d_copy, make_source, damage, message):
    damage(co3d_copy)
    with pytest.raises(AnnotationError, match=message):
        make_source(co3d_copy)


def _warned(record, text):
    return any(text in str(w.message) for w in record)


def test_missing_image_skips_the_frame_with_a_warning_and_keeps_the_scene(co3d_copy, make_source):
    os.remove(_frame_path(co3d_copy, "chair_000", 2))
    train = _train(make_source, co3d_copy)
    scenes = scene_index(train)
    wanted = scenes["chair_000"][:4] + scenes["chair_001"][:4]
    with pytest.warns(UnreadableFrameWarning, match=r"skipping frame chair_000/2: .*chair_000/images/frame000003.png: file is missing"):
        frames = train.__getitems__(wanted)
    assert [f.sequence_name for f in frames] == ["chair_000"] * 4 + ["chair_001"] * 4
    numbers = [int(f.frame_number) for f in frames[:4]]
    assert 2 not in numbers and len(set(numbers)) == 4  # replaced by an unused frame of the sequence
    batch = SceneBatch.from_frame_data(train.frame_data_type.collate(frames), frames_per_scene=4)
    assert batch.image_rgb.shape == (2, 4, 3, 64, 64)


def test_truncated_depth_png_is_named(co3d_copy, make_source):
    path = _frame_path(co3d_copy, "chair_001", 0, "depths")
    with open(path, "r+b") as f:
        f.truncate(60)
    train = _train(make_source, co3d_copy)
    with pytest.warns(UnreadableFrameWarning, match=r"chair_001/0: .*frame000001.png.geometric.png: cannot decode"):
        frame = train[scene_index(train)["chair_001"][0]]
    assert frame.sequence_name == "chair_001" and int(frame.frame_number) != 0


def test_a_sequence_with_no_readable_frame_says_so_and_is_replaced(co3d_copy, make_source):
    for number in range(6):
        os.remove(_frame_path(co3d_copy, "chair_000", number, "masks"))
    train = _train(make_source, co3d_copy)
    scenes = scene_index(train)
    with pytest.warns(UnreadableFrameWarning) as record:
        frames = train.__getitems__(scenes["chair_000"][:3] + scenes["chair_001"][:3])
    assert _warned(record, "every frame of sequence chair_000 is unreadable (6 frames); sequence chair_001 replaces it")
    assert _warned(record, "chair_000/masks/frame000006.png: file is missing")
    assert [f.sequence_name for f in frames] == ["chair_001"] * 6
    assert torch.isfinite(train.frame_data_type.collate(frames).image_rgb).all()


def test_no_readable_sequence_left_is_an_error(co3d_copy, make_source):
    for sequence in ("chair_000", "chair_001"):
        for number in range(6):
            os.remove(_frame_path(co3d_copy, sequence, number))
    train = _train(make_source, co3d_copy)
    with pytest.warns(UnreadableFrameWarning), pytest.raises(UnreadableSequenceError, match="every frame of sequence chair_000"):
        train.__getitems__(scene_index(train)["chair_000"][:2])
