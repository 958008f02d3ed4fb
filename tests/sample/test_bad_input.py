"""Unusable experiment folders: one line naming what is missing or different, non-zero exit status,
and no output that could pass for a result."""

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from sample_testdata import MODEL, error_lines, run_script
from holo3d.sample.experiment_loader import load_experiment
from holo3d.sample.input_checks import ExperimentLoadError
from holo3d.train.checkpoint import list_checkpoints


def _copy(experiment, tmp_path):
    """A copy of the trained experiment without its outputs."""
    copy = tmp_path / "exp"
    shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns("generated_samples", "reconstructions"))
    return copy


def _edit_config(exp_dir, edit):
    cfg = OmegaConf.load(exp_dir / "expconfig.yaml")
    edit(cfg)
    (exp_dir / "expconfig.yaml").write_text(OmegaConf.to_yaml(cfg))


def _model_args(cfg):
    first, second = MODEL.split(".")
    return cfg[first][second]


def test_loads_ema_weights_by_default(trained_experiment):
    loaded = load_experiment(str(trained_experiment))
    state = torch.load(list_checkpoints(trained_experiment)[-1], weights_only=False)
    assert loaded.weights == "ema" and not loaded.model.training
    name, tensor = next(iter(state["ema"].items()))
    torch.testing.assert_close(loaded.model.state_dict()[name], tensor)
    assert load_experiment(str(trained_experiment), use_ema=False).weights == "model"


@pytest.mark.parametrize("problem, expected", [
    ("missing", r"exp_dir .*nowhere does not exist"),
    ("no_checkpoint", r"no usable checkpoint \(no .*checkpoints/epoch_\*\.pth\)"),
    ("format_version", r"format version 0; this holo3d reads version 1"),
    ("unknown_key", r"does not fit this holo3d version: .*no_such_setting"),
    ("tensor_shapes", r"does not match the configured model: .*shape: .*checkpoint .* vs model"),
])
def test_unusable_experiments_are_named_in_one_line(trained_experiment, tmp_path, problem, expected):
    exp_dir = _copy(trained_experiment, tmp_path)
    if problem == "missing":
        exp_dir = tmp_path / "nowhere"
    elif problem == "no_checkpoint":
        shutil.rmtree(exp_dir / "checkpoints")
    elif problem == "format_version":
        path = list_checkpoints(exp_dir)[-1]
        torch.save({**torch.load(path, weights_only=False), "format_version": 0}, path)
    elif problem == "unknown_key":
        _edit_config(exp_dir, lambda cfg: _model_args(cfg).__setitem__("no_such_setting", 1))
    elif problem == "tensor_shapes":
        _edit_config(exp_dir, lambda cfg: _model_args(cfg).__setitem__("feature_size", 16))
    with pytest.raises(ExperimentLoadError, match=expected) as error:
        load_experiment(str(exp_dir))
    assert "\n" not in str(error.value)


def test_scripts_exit_non_zero_with_one_line_and_write_nothing(trained_experiment, tmp_path):
    exp_dir = _copy(trained_experiment, tmp_path)
    shutil.rmtree(exp_dir / "checkpoints")
    result = run_script("generate_samples.py", f"exp_dir={exp_dir}", "num_samples=1")
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.startswith("generate_samples.py: error:") and "no usable checkpoint" in line
    assert "Traceback" not in result.stderr
    result = run_script("visualize_reconstruction.py", f"exp_dir={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "does not exist" in line and "Traceback" not in result.stderr
    assert sorted(p.name for p in exp_dir.iterdir()) == ["expconfig.yaml", "train.log"]  # no output folder


def test_reconstruction_baseline_cannot_sample(trained_experiment, tmp_path):
    from holo3d.sample.generate import generate_samples
    from holo3d.sample.script_config import SampleConfig

    exp_dir = _copy(trained_experiment, tmp_path)
    _edit_config(exp_dir, lambda cfg: _model_args(cfg).__setitem__("use_diffusion", False))
    cfg = OmegaConf.structured(SampleConfig(exp_dir=str(exp_dir), num_samples=1))
    with pytest.raises(ExperimentLoadError, match="use_diffusion=False.*visualize_reconstruction.py"):
        generate_samples(cfg)
    assert not (exp_dir / "generated_samples").exists()
