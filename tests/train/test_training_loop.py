"""The trainer on a tiny model: exact resume, non-finite handling, signals, EMA, bad exp_dir."""

import logging
import os
import signal

import pytest
import torch

from holo3d.train.checkpoint import list_checkpoints, load_latest_checkpoint
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment
from holo3d.train.training_loop import NonFiniteLossError

TINY = [
    "data_source_class_type=TinyTestDataSource",
    "model_factory_HoloModelFactory_args.model_class_type=TinyTestModel",
    "training_loop_HoloTrainingLoop_args.logger=none",
    "optimizer_factory_HoloOptimizerFactory_args.lr=0.05",
    "optimizer_factory_HoloOptimizerFactory_args.lr_policy=multistep",
    "optimizer_factory_HoloOptimizerFactory_args.multistep_milestones=[1]",
    "optimizer_factory_HoloOptimizerFactory_args.gamma=0.5",
    "optimizer_factory_HoloOptimizerFactory_args.warmup_iters=1",
]
LOOP = "training_loop_HoloTrainingLoop_args"
MODEL = "model_factory_HoloModelFactory_args.model_TinyTestModel_args"


def run_tiny(exp_dir, *overrides):
    cfg = compose_config("base", [f"exp_dir={exp_dir}", *TINY, *overrides])
    experiment = Experiment(**cfg)
    experiment.run(cfg)
    return experiment


def final_weights(exp_dir):
    return load_latest_checkpoint(exp_dir)["model"]


def test_resume_continues_exactly(tmp_path):
    """2 iterations, stop, resume for 2 more == 4 uninterrupted (weights, EMA and optimizer)."""
    run_tiny(tmp_path / "straight", f"{LOOP}.max_epochs=2", f"{LOOP}.ema_decay=0.9")
    run_tiny(tmp_path / "split", f"{LOOP}.max_epochs=1", f"{LOOP}.ema_decay=0.9")
    run_tiny(tmp_path / "split", f"{LOOP}.max_epochs=2", f"{LOOP}.ema_decay=0.9")
    straight = load_latest_checkpoint(tmp_path / "straight")
    split = load_latest_checkpoint(tmp_path / "split")
    assert straight["iteration"] == split["iteration"] == 4
    for key in ("model", "ema"):
        for name, tensor in straight[key].items():
            torch.testing.assert_close(split[key][name], tensor, rtol=1e-6, atol=1e-7)
    assert straight["scheduler"]["last_epoch"] == split["scheduler"]["last_epoch"] == 4
    # and the run really trained: the weights moved away from a fresh initialisation
    fresh = run_tiny(tmp_path / "fresh", f"{LOOP}.max_epochs=0").model_factory.model.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in straight["model"].items())


def test_writes_config_log_and_keeps_last_checkpoints(tmp_path):
    run_tiny(tmp_path, f"{LOOP}.max_epochs=4", f"{LOOP}.keep_last_checkpoints=2")
    assert (tmp_path / "expconfig.yaml").read_text().count("TinyTestModel") >= 1
    assert "epoch 3 train" in (tmp_path / "train.log").read_text()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_00003.pth", "epoch_00004.pth"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_nonfinite_loss_is_skipped_then_stops(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run_tiny(tmp_path / "skip", f"{LOOP}.max_epochs=2", f"{MODEL}.nan_at_iterations=[1]")
    assert "iteration 1: non-finite" in caplog.text
    with caplog.at_level(logging.WARNING):
        run_tiny(tmp_path / "model_check", f"{LOOP}.max_epochs=2", f"{MODEL}.raise_at_iterations=[2]")
    assert "non-finite values in grid at iteration 2" in caplog.text
    assert load_latest_checkpoint(tmp_path / "model_check")["iteration"] == 4
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        run_tiny(tmp_path / "stop", f"{LOOP}.max_epochs=3", f"{LOOP}.max_nonfinite_steps=3",
                 f"{MODEL}.nan_at_iterations=[1,2,3,4]")


def test_sigterm_writes_checkpoint_and_resume_finishes(tmp_path, monkeypatch):
    from tiny_components import TinyTestModel

    original = TinyTestModel.forward

    def forward_then_signal(self, **kwargs):
        if kwargs.get("iteration") == 1 and not getattr(TinyTestModel, "_signalled", False):
            TinyTestModel._signalled = True
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, **kwargs)

    monkeypatch.setattr(TinyTestModel, "forward", forward_then_signal)
    with pytest.raises(SystemExit) as stop:
        run_tiny(tmp_path, f"{LOOP}.max_epochs=3")
    assert stop.value.code == 143  # 128 + SIGTERM: a stop, not a finished run
    stopped = load_latest_checkpoint(tmp_path)
    assert (stopped["epoch"], stopped["batch_in_epoch"], stopped["iteration"]) == (0, 2, 2)
    run_tiny(tmp_path, f"{LOOP}.max_epochs=3")
    assert load_latest_checkpoint(tmp_path)["iteration"] == 6


def test_unwritable_exp_dir_fails_before_data(tmp_path, monkeypatch):
    from tiny_components import TinyTestDataSource

    def must_not_load(self):
        raise AssertionError("data was loaded before exp_dir was checked")

    monkeypatch.setattr(TinyTestDataSource, "get_datasets_and_dataloaders", must_not_load)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="exp_dir=.*not writable"):
        run_tiny(blocker / "exp")


def test_bf16_autocast_and_accumulation_train(tmp_path):
    run_tiny(tmp_path, f"{LOOP}.max_epochs=2", f"{LOOP}.mixed_precision=bf16",
             f"{LOOP}.gradient_accumulation_steps=2", f"{LOOP}.clip_grad_norm=1.0")
    state = load_latest_checkpoint(tmp_path)
    assert state["iteration"] == 4 and state["scheduler"]["last_epoch"] == 2  # 2 optimizer steps


def test_too_few_frames_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="frames_per_scene=3 but TinyTestModel needs at least 4"):
        run_tiny(tmp_path, f"{MODEL}.n_targets=3")
