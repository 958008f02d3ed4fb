"""The config backbone: golden default config, every YAML composes, readable errors for bad keys."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from holo3d.train.config_cli import CONFIG_DIR, compose_config, explain_config_error, split_cli
from holo3d.train.experiment import default_config, pruned_config

GOLDEN = Path(__file__).parent / "golden_default_config.yaml"
REPO = Path(__file__).resolve().parents[2]


def test_default_config_matches_golden_file():
    """Pins every default; regenerate with HOLO3D_UPDATE_GOLDEN=1 after an intended change."""
    text = OmegaConf.to_yaml(pruned_config(default_config()))
    if os.environ.get("HOLO3D_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "default config changed; if intended, rerun with HOLO3D_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_config_composes_and_starts_from_defaults(name):
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    assert "\ndefaults:" in "\n" + text.split("\n\n", 1)[-1] or text.lstrip("#").find("defaults:") >= 0
    cfg = compose_config(name)
    assert cfg.exp_dir and "hydra" not in cfg


def test_unknown_key_names_key_and_close_matches():
    with pytest.raises(Exception) as error:
        compose_config("base", ["training_loop_HoloTrainingLoop_args.max_epoch=3"])
    message = explain_config_error(error.value)
    assert "max_epoch" in message and "training_loop_HoloTrainingLoop_args.max_epochs" in message


def test_wrong_type_names_key():
    with pytest.raises(Exception) as error:
        compose_config("base", ["training_loop_HoloTrainingLoop_args.max_epochs=many"])
    assert "max_epochs" in explain_config_error(error.value)


def test_cli_rejects_bad_key_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "experiment.py", "--config-name", "base.yaml",
         f"exp_dir={tmp_path / 'exp'}", "training_loop.max_epochs=3"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "training_loop" in result.stderr and "Did you mean" in result.stderr
    assert "training_loop_HoloTrainingLoop_args.max_epochs" in result.stderr
    assert not (tmp_path / "exp").exists()


def test_split_cli():
    assert split_cli(["--config-name", "demo.yaml", "a=1", "hydra.run.dir=x", "-m"]) == ("demo", ["a=1"])
