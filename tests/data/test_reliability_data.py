"""Reliability of data loading (issue 21, items 5 and 6): losing much of a dataset stops training
with a clear error, smaller losses are summarised in the log, empty masks and NaN cameras are
caught, set lists naming missing frames are reported."""

import gzip
import json
import logging
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from holo3d.data import UnreadableFrameWarning
from holo3d.data.annotation_checks import AnnotationError
from holo3d.data.multi_scene_sampler import scene_index
from holo3d.data.robust_dataset import TooManyUnreadableFramesError, check_dataset_files, log_unreadable_frames


def _path(root, sequence, number, kind="images"):
    return os.path.join(root, "chair", sequence, kind, f"frame{number + 1:06d}.png")


def _edit_json(path, edit):
    opener = gzip.open if path.endswith(".jgz") else open
    with opener(path, "rt") as f:
        data = json.load(f)
    edit(data)
    with opener(path, "wt") as f:
        json.dump(data, f)


def _datasets(make_source, root):
    return make_source(root, "chair").dataset_map_provider.get_dataset_map()


def test_most_of_a_split_unreadable_stops_with_a_summary(co3d_copy, make_source):
    for number in range(6):  # one of the two training sequences: half the frames
        os.remove(_path(co3d_copy, "chair_000", number))
    with pytest.raises(TooManyUnreadableFramesError) as error:
        check_dataset_files(_datasets(make_source, co3d_copy))
    message = str(error.value)
    assert "train split: 6 of 12 frames (50%) and 1 of 2 whole sequences" in message
    assert "chair_000/images/frame000001.png: file is missing" in message
    assert "max_skipped_fraction=0.2" in message and "dataset_Holo3DJsonIndexDataset_args" in message


def test_a_small_loss_is_summarised_in_the_log_and_skipped_quietly(co3d_copy, make_source, caplog):
    os.remove(_path(co3d_copy, "chair_001", 4, "masks"))
    open(_path(co3d_copy, "chair_001", 5), "wb").close()  # an empty file (e.g. a full disk at copy time)
    datasets = _datasets(make_source, co3d_copy)
    with caplog.at_level(logging.WARNING, logger="holo3d"):
        check_dataset_files(datasets)
    assert "train split: 2 of 12 frames (17%) and 0 of 2 whole sequences" in caplog.text
    assert "frame000006.png: file is empty" in caplog.text
    train = datasets.train
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already summarised: no warning per frame
        frames = train.__getitems__(scene_index(train)["chair_001"])
    assert {int(f.frame_number) for f in frames} <= {0, 1, 2, 3}


def test_frame_warnings_go_to_the_log(caplog):
    with caplog.at_level(logging.WARNING, logger="holo3d"), log_unreadable_frames():
        warnings.warn("holo3d: skipping frame a/1: x.png: file is missing", UnreadableFrameWarning)
    assert "skipping frame a/1" in caplog.text


def test_all_zero_mask_with_annotated_mass_is_detected(co3d_copy, make_source):
    path = _path(co3d_copy, "chair_000", 1, "masks")
    with Image.open(path) as mask:
        Image.fromarray(np.zeros_like(np.asarray(mask))).save(path)
    train = _datasets(make_source, co3d_copy).train
    index = scene_index(train)["chair_000"][1]
    with pytest.warns(UnreadableFrameWarning, match=r"chair_000/1: .*frame000002.png: mask is all zero but .*mask.mass="):
        frame = train[index]
    assert frame.sequence_name == "chair_000" and int(frame.frame_number) != 1


def test_set_list_naming_missing_frames_is_reported(co3d_copy, make_source, caplog):
    set_list = os.path.join(co3d_copy, "chair", "set_lists", "set_lists_fewview_dev.json")
    _edit_json(set_list, lambda d: d["train"].extend([["chair_000", 99, "chair/chair_000/images/x.png"]]))
    with caplog.at_level(logging.WARNING, logger="holo3d"):
        _datasets(make_source, co3d_copy)
    assert "1 of the 13 frames a set list names are not in" in caplog.text and "chair_000/99" in caplog.text
    _edit_json(set_list, lambda d: d.update(train=[["chair_000", 99, "a.png"], ["nowhere", 0, "b.png"]]))
    with pytest.raises(TooManyUnreadableFramesError, match="none of the 2 frames a set list names.*chair_000/99"):
        _datasets(make_source, co3d_copy)


def test_nan_camera_fails_the_annotation_check(co3d_copy, make_source):
    annotations = os.path.join(co3d_copy, "chair", "frame_annotations.jgz")
    _edit_json(annotations, lambda frames: frames[3]["viewpoint"]["T"].__setitem__(1, float("nan")))
    with pytest.raises(AnnotationError, match=r"frame entry 3 .*field 'viewpoint.T' holds a non-finite value \(nan\)"):
        make_source(co3d_copy, "chair")
