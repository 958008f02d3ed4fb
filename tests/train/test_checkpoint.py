"""Checkpoint files: atomic writes, retention, corrupt-file fallback, compatibility errors."""

import logging

import pytest
import torch

from holo3d.train.checkpoint import (
    CheckpointError,
    check_state_dict_compatible,
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)


def state(value: float):
    return {"model": {"w": torch.full((2, 3), value)}, "epoch": int(value)}


def test_keeps_last_k_and_loads_newest(tmp_path):
    for epoch in range(1, 5):
        save_checkpoint(tmp_path, epoch, state(epoch), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_00003.pth", "epoch_00004.pth"]
    assert load_latest_checkpoint(tmp_path)["epoch"] == 4


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    save_checkpoint(tmp_path, 1, state(1), keep_last=0)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path, 2, {"model": {}, "bad": Unpicklable()}, keep_last=0)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch_00001.pth"]


def test_truncated_newest_falls_back_to_previous(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, state(1), keep_last=0)
    save_checkpoint(tmp_path, 2, state(2), keep_last=0)
    newest = checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        assert load_latest_checkpoint(tmp_path)["epoch"] == 1
    assert "epoch_00002.pth is corrupt" in caplog.text


def test_requested_corrupt_or_missing_epoch_is_an_error(tmp_path):
    save_checkpoint(tmp_path, 1, state(1), keep_last=0)
    checkpoint_path(tmp_path, 1).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="epoch_00001.pth is corrupt"):
        load_latest_checkpoint(tmp_path, epoch=1)
    with pytest.raises(CheckpointError, match="no checkpoint .*epoch_00007.pth"):
        load_latest_checkpoint(tmp_path, epoch=7)


def test_incompatible_state_names_tensors():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1)}
    saved = {"a": torch.zeros(2), "b": torch.zeros(3, 5), "d": torch.zeros(1)}
    with pytest.raises(CheckpointError) as error:
        check_state_dict_compatible(saved, expected, source="ckpt.pth")
    message = str(error.value)
    assert "missing: c" in message and "unexpected: d" in message
    assert "b: checkpoint (3, 5) vs model (3, 4)" in message


def test_newest_checkpoint_of_a_reader_counts_a_stops_mid_epoch_file(tmp_path):
    # Readers below train/ (e.g. the voxel LDM loading its autoencoder) see the same order as resume:
    # a stop's epoch_N_iter_I file continues epoch N's end-of-epoch one and precedes epoch N+1's.
    from holo3d.io.experiment_files import newest_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert newest_checkpoint(tmp_path) is None
    (folder / "epoch_00004.pth").touch()
    (folder / "epoch_00005_iter_00000596.pth").touch()
    (folder / "notes.txt").touch()
    assert newest_checkpoint(tmp_path).name == "epoch_00005_iter_00000596.pth"
    (folder / "epoch_00005.pth").touch()
    assert newest_checkpoint(tmp_path).name == "epoch_00005_iter_00000596.pth"
    (folder / "epoch_00006.pth").touch()
    assert newest_checkpoint(tmp_path).name == "epoch_00006.pth"
