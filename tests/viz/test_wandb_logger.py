"""The Weights & Biases logger: offline runs with no network, an optional dependency, never raising."""

import logging
import sys
import types

import pytest
import torch

from holo3d.viz.logger_factory import make_logger


def test_missing_wandb_fails_at_start_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'holo3d\[wandb\]'"):
        make_logger("wandb", tmp_path)


def test_failures_warn_once_and_never_raise(tmp_path, monkeypatch, caplog):
    def init(**kwargs):
        raise RuntimeError("no service")

    fake = types.SimpleNamespace(init=init)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = make_logger("wandb", tmp_path)
    with caplog.at_level(logging.WARNING):
        logger.log_scalars(1, {"loss": 1.0})
        logger.log_scalars(2, {"loss": 0.5})
        logger.close()
    assert caplog.text.count("W&B logging") == 1


def test_offline_run_writes_scalars_images_video_and_resumes(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = make_logger("wandb", tmp_path / "exp")
    logger.log_scalars(1, {"objective": 0.5, "psnr": 12.0}, split="train")
    logger.log_scalars(1, {"objective": 0.6}, split="val")
    logger.log_images(1, {"render": torch.rand(3, 8, 8)})
    logger.log_video(1, "sample", torch.rand(4, 3, 8, 8), fps=4)
    run = logger._run
    assert run is not None and run.settings.mode == "offline" and not logger._warned
    run_id = run.id
    logger.close()
    runs = list((tmp_path / "exp" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert runs and list(runs[0].glob("*.wandb"))  # the run's data, ready for `wandb sync`
    again = make_logger("wandb", tmp_path / "exp")
    again.log_scalars(2, {"objective": 0.4})
    assert again._run.id == run_id  # a resumed experiment continues its run
    again.close()
    assert wandb.run is None
