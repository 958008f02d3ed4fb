"""The training loop's periodic generation-quality evaluation (training_loop.generation_eval_*):
figures reach the logger and train.log at the interval only, training stays bitwise the same with it
on, and models / data sources it cannot score are skipped with one line saying why."""

import dataclasses
import logging
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample"))

from sample_testdata import LOOP, tiny_config  # noqa: E402

from holo3d.eval.generation_quality import GenerationQualityReport  # noqa: E402
from holo3d.train.checkpoint import load_latest_checkpoint  # noqa: E402
from holo3d.train.experiment import Experiment  # noqa: E402
from holo3d.viz.logger_base import ExperimentLogger  # noqa: E402

MODEL_CLASS = "model_factory_HoloModelFactory_args.model_class_type"
ALWAYS_LOGGED = {"n_empty", "nna_cd_floor", "appearance_spread", "appearance_ratio"}
SHAPE_FIGURES = {"cov_cd", "mmd_cd", "nna_cd", "jsd", "cov_cd_to_ceiling", "mmd_cd_to_ceiling",
                 "nna_cd_to_ceiling"}


class RecordingLogger(ExperimentLogger):
    def __init__(self):
        self.scalar_calls = []

    def log_scalars(self, step, scalars, split="train"):
        self.scalar_calls.append((step, split, dict(scalars)))

    def generation(self):
        return [(step, values) for step, split, values in self.scalar_calls if split == "generation"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest on the shared 2-core machines (as tests/sample do)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def recorder(monkeypatch):
    """The logger every run of the test gets instead of the configured one."""
    sink = RecordingLogger()
    monkeypatch.setattr("holo3d.viz.logger_factory.make_logger", lambda *args, **kwargs: sink)
    return sink


@pytest.fixture(scope="module")
def chairs(tmp_path_factory) -> Path:
    """6 chair sequences (4 train, 1 dev, 1 test) with ground-truth occupancy (16^3) and meshes."""
    from holo3d.data.synthetic.generate import generate_dataset
    from holo3d.data.synthetic.spec import get_preset

    spec = dataclasses.replace(get_preset("tiny"), categories=("chair",), sequences=6, frames=6,
                               image_size=(32, 32), occupancy_resolution=16)
    return Path(generate_dataset(spec, str(tmp_path_factory.mktemp("data") / "tiny"), progress=False))


def train(exp_dir: Path, data: Path, *overrides: str) -> Path:
    """The tiny HoloDiffusion (2 iterations an epoch), 2-sample 2-step evaluations, logger on."""
    cfg = tiny_config(exp_dir, data, f"{LOOP}.logger=tensorboard", f"{LOOP}.generation_eval_samples=2",
                      f"{LOOP}.generation_eval_steps=2", *overrides)
    Experiment(**cfg).run(cfg)
    return exp_dir


def test_figures_reach_the_logger_and_log_file_at_the_interval(chairs, recorder, tmp_path):
    exp = train(tmp_path / "on", chairs, f"{LOOP}.max_epochs=3", f"{LOOP}.generation_eval_interval_epochs=2")
    generation = recorder.generation()
    assert [step for step, _ in generation] == [4]  # end of epoch 2 only, at iteration 2 * 2
    figures = generation[0][1]
    assert ALWAYS_LOGGED <= set(figures) <= ALWAYS_LOGGED | SHAPE_FIGURES
    assert all(math.isfinite(v) for v in figures.values())
    assert figures["appearance_spread"] >= 0 and figures["n_empty"] in (0.0, 1.0, 2.0)
    log = (exp / "train.log").read_text()
    assert log.count("generation quality") == 1
    assert "iteration 4 generation quality" in log and "ceiling" in log and "floor" in log
    assert all(f"{key}=" in log for key in ALWAYS_LOGGED | SHAPE_FIGURES)  # NaN ones too, in the log
    assert any(split == "val" for _, split, _ in recorder.scalar_calls)  # the usual curves still flow


def test_off_by_default(chairs, recorder, tmp_path):
    exp = train(tmp_path / "off", chairs, f"{LOOP}.max_epochs=2")
    assert recorder.generation() == []
    assert "generation quality" not in (exp / "train.log").read_text()


def test_training_is_bitwise_the_same_with_the_evaluation_on(chairs, tmp_path, monkeypatch):
    """No EMA, so the evaluation runs on the very model being trained; weights, optimizer state and
    every RNG state in the last checkpoint must match a run without it, bit for bit."""
    monkeypatch.setattr("holo3d.viz.logger_factory.make_logger", lambda *a, **k: ExperimentLogger())
    common = (f"{LOOP}.max_epochs=2", f"{LOOP}.ema_decay=0.0")
    on = train(tmp_path / "on", chairs, *common, f"{LOOP}.generation_eval_interval_epochs=1")
    off = train(tmp_path / "off", chairs, *common, f"{LOOP}.generation_eval_interval_epochs=0")
    assert (on / "train.log").read_text().count("generation quality") == 2  # it really ran, twice
    a, b = load_latest_checkpoint(on), load_latest_checkpoint(off)
    assert a["iteration"] == b["iteration"] == 4
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
    for pid, state in b["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(a["optimizer"]["state"][pid][key]), torch.as_tensor(value))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["numpy"]["keys"], b["rng"]["numpy"]["keys"])
    assert a["rng"]["numpy"]["pos"] == b["rng"]["numpy"]["pos"]
    assert torch.equal(a["rng"]["python"]["state"], b["rng"]["python"]["state"])


def test_data_source_without_ground_truth_is_skipped_once(recorder, tmp_path, caplog):
    from test_training_loop import TINY, run_tiny  # the trainer's tiny model and data source

    assert "training_loop_HoloTrainingLoop_args.logger=none" in TINY
    with caplog.at_level(logging.INFO, logger="holo3d"):
        run_tiny(tmp_path, f"{LOOP}.max_epochs=2", f"{LOOP}.generation_eval_interval_epochs=1")
    skipped = [r.getMessage() for r in caplog.records if "generation-quality evaluation skipped" in r.getMessage()]
    assert len(skipped) == 1 and "TinyTestDataSource declares no ground-truth shapes" in skipped[0]
    assert "generation quality (" not in (tmp_path / "train.log").read_text()


def test_model_that_cannot_be_scored_is_skipped_once(chairs, recorder, tmp_path, caplog):
    """TinyImageDDPM is a GenerativeModel of images, not radiance fields: said once over 2 epochs."""
    with caplog.at_level(logging.INFO, logger="holo3d"):
        train(tmp_path, chairs, f"{MODEL_CLASS}=TinyImageDDPM", f"{LOOP}.max_epochs=2",
              f"{LOOP}.generation_eval_interval_epochs=1")
    skipped = [r.getMessage() for r in caplog.records if "generation-quality evaluation skipped" in r.getMessage()]
    assert len(skipped) == 1 and "TinyImageDDPM must also be a FieldModel" in skipped[0]
    assert recorder.generation() == []


@pytest.mark.parametrize("override, message", [
    ("generation_eval_samples=1", "generation_eval_samples=1; the set metrics need >= 2"),
    ("generation_eval_steps=0", "generation_eval_steps=0"),
    ("generation_eval_sampler=nope", "generation_eval_sampler='nope'; expected one of"),
])
def test_bad_values_fail_at_start_naming_the_option(tmp_path, override, message):
    from test_training_loop import run_tiny

    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        run_tiny(tmp_path, f"{LOOP}.max_epochs=1", f"{LOOP}.generation_eval_interval_epochs=1",
                 f"{LOOP}.{override}")
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def test_report_scalars_are_the_samples_row_over_the_ceiling():
    shapes = {
        "samples": {"cov_cd": 0.25, "mmd_cd": 0.02, "nna_cd": 0.9, "jsd": 0.3, "n_shapes": 4, "n_empty": 1},
        "ceiling": {"cov_cd": 0.5, "mmd_cd": 0.01, "nna_cd": 0.6, "jsd": 0.1, "n_shapes": 4, "n_empty": 0},
        "floor": {"cov_cd": 0.25, "mmd_cd": 0.05, "nna_cd": 1.0, "jsd": 0.5, "n_shapes": 4, "n_empty": 0},
    }
    figures = GenerationQualityReport(shapes, {"samples": 0.1, "ground_truth": 0.2, "ratio": 0.5}).scalars()
    assert figures["cov_cd_to_ceiling"] == pytest.approx(0.5)
    assert figures["mmd_cd_to_ceiling"] == pytest.approx(2.0)
    assert figures["nna_cd_to_ceiling"] == pytest.approx(1.5)
    assert (figures["nna_cd_floor"], figures["n_empty"], figures["appearance_ratio"]) == (1.0, 1.0, 0.5)
    empty = GenerationQualityReport({**shapes, "samples": {**shapes["samples"], "cov_cd": math.nan}}).scalars()
    assert math.isnan(empty["cov_cd_to_ceiling"]) and math.isnan(empty["appearance_spread"])
