"""Reliability of checkpoints and start-up checks (issue 21, items 1, 4 and 6).

Unreadable checkpoints never make a run start over at epoch 0 (permission / I/O / memory errors are
injected: the tests run as root, where chmod does not stop reads); stale partial files are cleaned;
a mid-epoch stop checkpoint never replaces a validated one; bad start-up settings stop before any
data is loaded.
"""

import errno
import logging
from pathlib import Path

import pytest
import torch

from holo3d.train import checkpoint as ckpt
from holo3d.train.checkpoint import CheckpointError, list_checkpoints, load_latest_checkpoint, save_checkpoint
from holo3d.train.training_loop import StoppedBySignal
from test_training_loop import LOOP, run_tiny


def _files(exp_dir: Path):
    return {p.name: p.read_bytes() for p in (exp_dir / "checkpoints").iterdir()}


def _failing_load(failures):
    """torch.load that raises ``failures[file name]`` for the named files and loads the others."""
    real_load = torch.load

    def load(path, *args, **kwargs):
        error = failures.get(Path(path).name)
        if error is not None:
            raise error
        return real_load(path, *args, **kwargs)

    return load


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny experiment trained 2 epochs (checkpoints epoch_00001 and epoch_00002)."""
    exp_dir = tmp_path_factory.mktemp("trained")
    run_tiny(exp_dir, f"{LOOP}.max_epochs=2")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return exp_dir


def test_unreadable_checkpoints_make_training_refuse_to_start_and_keep_them(trained, monkeypatch):
    """The issue's reproduction: every checkpoint unreadable for the training user (EACCES)."""
    before = _files(trained)
    denied = PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(torch, "load", _failing_load({name: denied for name in before}))
    with pytest.raises(CheckpointError, match="^refusing to start") as raised:
        run_tiny(trained, f"{LOOP}.max_epochs=3")
    for name in before:  # every file is named with its real cause
        assert any(name in line and "permission denied" in line for line in str(raised.value).splitlines())
    assert _files(trained) == before  # nothing overwritten, nothing retrained


@pytest.mark.parametrize("error, cause", [
    (OSError(errno.EIO, "Input/output error"), "I/O error"),
    (MemoryError(), "out of memory"),
    (RuntimeError("PytorchStreamReader failed reading zip archive"), "corrupt or truncated"),
])
def test_no_loadable_checkpoint_names_each_file_and_cause(trained, monkeypatch, error, cause):
    names = [p.name for p in list_checkpoints(trained)]
    monkeypatch.setattr(torch, "load", _failing_load({name: error for name in names}))
    with pytest.raises(CheckpointError, match="^refusing to start") as raised:
        load_latest_checkpoint(trained)
    for name in names:
        assert any(name in line and cause in line for line in str(raised.value).splitlines())


def test_unreadable_newest_is_not_skipped_but_a_corrupt_one_is(trained, monkeypatch, caplog):
    newest = list_checkpoints(trained)[-1].name
    monkeypatch.setattr(torch, "load", _failing_load({newest: OSError(errno.EIO, "Input/output error")}))
    with pytest.raises(CheckpointError, match=f"(?s)never skipped.*{newest}.*I/O error"):
        load_latest_checkpoint(trained)
    monkeypatch.setattr(torch, "load", _failing_load({newest: RuntimeError("invalid header")}))
    with caplog.at_level(logging.WARNING):
        assert load_latest_checkpoint(trained)["epoch"] == 1
    assert f"{newest} is corrupt or truncated" in caplog.text and "falling back" in caplog.text


def test_stale_partial_checkpoints_are_removed_at_start(trained):
    folder = trained / "checkpoints"
    stale = [folder / ".epoch_00003.pth.abc123.tmp", folder / ".epoch_00002_iter_00000005.pth.x9.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 4096)  # what a kill -9 mid-write leaves
    keep = folder / "notes.txt"
    keep.write_text("mine")
    run_tiny(trained, f"{LOOP}.max_epochs=2")  # nothing left to train: only the start-up runs
    assert not any(p.exists() for p in stale) and keep.exists()
    keep.unlink()
    assert [p.name for p in list_checkpoints(trained)] == ["epoch_00001.pth", "epoch_00002.pth"]


def test_stop_in_an_epoch_keeps_the_validated_checkpoint_and_exits_143(tmp_path, monkeypatch):
    import os
    import signal

    from tiny_components import TinyTestModel

    run_tiny(tmp_path, f"{LOOP}.max_epochs=1")
    validated = (tmp_path / "checkpoints" / "epoch_00001.pth").read_bytes()
    original = TinyTestModel.forward

    def forward_then_signal(self, **kwargs):
        if kwargs.get("iteration") == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, **kwargs)

    monkeypatch.setattr(TinyTestModel, "forward", forward_then_signal)
    with pytest.raises(StoppedBySignal) as stopped:
        run_tiny(tmp_path, f"{LOOP}.max_epochs=2")
    assert stopped.value.code == 130 and "Resume with the same command" in stopped.value.message
    assert (tmp_path / "checkpoints" / "epoch_00001.pth").read_bytes() == validated
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["epoch_00001.pth", "epoch_00001_iter_00000003.pth"]
    assert load_latest_checkpoint(tmp_path)["batch_in_epoch"] == 1
    monkeypatch.setattr(TinyTestModel, "forward", original)
    run_tiny(tmp_path, f"{LOOP}.max_epochs=2")  # finishing the epoch makes the stop file obsolete
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_00001.pth", "epoch_00002.pth"]


def test_checkpoint_names_order_and_retention(tmp_path):
    def state(epoch, batch, iteration):
        return {"model": {}, "epoch": epoch, "batch_in_epoch": batch, "iteration": iteration}

    save_checkpoint(tmp_path, 1, state(1, 0, 4), keep_last=3)
    save_checkpoint(tmp_path, 1, state(1, 2, 6), keep_last=3)
    assert load_latest_checkpoint(tmp_path)["iteration"] == 6
    assert load_latest_checkpoint(tmp_path, epoch=1)["iteration"] == 4  # an epoch asks for its validated file
    save_checkpoint(tmp_path, 2, state(2, 0, 8), keep_last=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_00001.pth", "epoch_00002.pth"]


def test_negative_and_zero_max_epochs_are_not_silent(trained, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"training_loop.max_epochs=-1"):
        run_tiny(tmp_path / "neg", f"{LOOP}.max_epochs=-1")
    with caplog.at_level(logging.WARNING):
        run_tiny(tmp_path / "zero", f"{LOOP}.max_epochs=0")
    assert "max_epochs=0: nothing to train" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_tiny(trained, f"{LOOP}.max_epochs=2")
    assert "already trained 2 epochs" in caplog.text


def test_empty_exp_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="exp_dir is empty"):
        run_tiny("")
    assert list(tmp_path.iterdir()) == []


def _no_data(monkeypatch):
    from tiny_components import TinyTestDataSource

    def must_not_load(self):
        raise AssertionError("data was loaded before the destinations were checked")

    monkeypatch.setattr(TinyTestDataSource, "get_datasets_and_dataloaders", must_not_load)


def test_unwritable_checkpoints_folder_fails_before_data(tmp_path, monkeypatch):
    _no_data(monkeypatch)
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(PermissionError, match="checkpoints folder is not writable"):
        run_tiny(tmp_path / "blocked")
    # an immutable / read-only folder (chattr +i, a read-only mount): injected, root ignores modes
    import builtins

    real_open = builtins.open

    def read_only_checkpoints(path, mode="r", *args, **kwargs):
        if Path(path).parent.name == "checkpoints" and "w" in mode:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_checkpoints)
    with pytest.raises(PermissionError, match="checkpoints folder is not writable.*Read-only file system"):
        run_tiny(tmp_path / "readonly")
    assert not [p for p in (tmp_path / "readonly" / "checkpoints").iterdir()]


def test_failed_checkpoint_write_on_a_full_disk_keeps_the_previous(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(3)}, "iteration": 2}, keep_last=1)
    real_save = torch.save

    def disk_full(obj, stream, *args, **kwargs):
        real_save(obj, stream, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, 2, {"model": {"w": torch.zeros(3)}, "iteration": 4}, keep_last=1)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch_00001.pth"]
