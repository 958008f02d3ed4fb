"""The training CLI as a user meets it: Hydra's own features, short keys, errors, --help.

Subprocess tests run ``holo3d.train.config_cli.main`` exactly as experiment.py does, with the tiny
test components registered first (a wrapper script), so real training jobs finish in seconds.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import holo3d.data.srn  # noqa: F401  (registers SrnDatasetMapProvider; holo3d.data does not yet)
from holo3d.train.config_cli import SHORT_KEYS, compose_config, short_key_targets
from holo3d.train.experiment import Experiment

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "data_source_class_type": "TinyTestDataSource",
    "model_factory_HoloModelFactory_args.model_class_type": "TinyTestModel",
    "training_loop_HoloTrainingLoop_args.logger": "none",
}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]


def run_cli(tmp_path, *args, timeout=180):
    """``experiment.py ARGS`` with the tiny components registered; returns the CompletedProcess."""
    script = tmp_path / "train_tiny.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests' / 'train')!r})
        import tiny_components  # registers TinyTestModel / TinyTestDataSource
        from holo3d.train.config_cli import main
        main()
    """))
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)


def test_short_keys_are_short_and_resolve_in_every_shipped_config():
    assert all(len(name) <= 40 for name in SHORT_KEYS)
    cfg = compose_config("demo")
    assert short_key_targets(cfg, "lr") == ["optimizer_factory_HoloOptimizerFactory_args.lr"]
    assert len(short_key_targets(cfg, "image_size")) == 2  # height and width


def test_short_key_overrides_reach_the_optimizer_and_beat_long_keys(tmp_path):
    cfg = compose_config("base", [f"exp_dir={tmp_path}", *TINY_ARGS, "lr=3e-3", "epochs=7",
                                  "optimizer_factory_HoloOptimizerFactory_args.warmup_iters=0"])
    assert "lr" not in cfg and "epochs" not in cfg  # Experiment gets long keys only
    assert cfg.training_loop_HoloTrainingLoop_args.max_epochs == 7
    experiment = Experiment(**cfg)
    model = experiment.model_factory(str(tmp_path))
    optimizer, _ = experiment.optimizer_factory(model, 4, 7)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)


def test_short_keys_follow_the_selected_component():
    cfg = compose_config("base", ["+data=srn_cars", "data_root=/data/srn", "image_size=64"])
    srn = cfg.data_source_Holo3DDataSource_args.dataset_map_provider_SrnDatasetMapProvider_args
    assert srn.dataset_root == "/data/srn" and srn.image_size == 64
    co3d = compose_config("base", ["image_size=96"]).data_source_Holo3DDataSource_args
    dataset = co3d.dataset_map_provider_JsonIndexDatasetMapProviderV2_args.dataset_Holo3DJsonIndexDataset_args
    assert (dataset.image_height, dataset.image_width) == (96, 96)


def test_short_keys_work_in_a_user_yaml_from_config_dir(tmp_path):
    (tmp_path / "mine.yaml").write_text("defaults:\n  - base\n  - _self_\nlr: 2.0e-3\nscenes_per_step: 3\n")
    cfg = compose_config("mine", config_dir=str(tmp_path))
    assert cfg.optimizer_factory_HoloOptimizerFactory_args.lr == pytest.approx(2e-3)
    loader = cfg.data_source_Holo3DDataSource_args.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args
    assert loader.scenes_per_batch == 3


def test_multirun_sweep_from_a_user_config_dir(tmp_path):
    """--config-dir + --config-name of a user's YAML, and a --multirun sweep: one exp_dir per job."""
    user = tmp_path / "my_configs"
    user.mkdir()
    body = "\n".join(f"{k}: {v}" for k, v in TINY.items() if "." not in k)
    (user / "mine.yaml").write_text(textwrap.dedent(f"""\
        defaults:
          - base
          - _self_
        {body}
        model_factory_HoloModelFactory_args:
          model_class_type: TinyTestModel
        epochs: 1
        logger: none
        exp_dir: {tmp_path / 'sweep'}
    """))
    result = run_cli(tmp_path, "--config-dir", str(user), "--config-name", "mine", "--multirun",
                     "seed=1,2", "lr=0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    for job, seed in ((0, 1), (1, 2)):
        saved = OmegaConf.load(tmp_path / "sweep" / str(job) / "expconfig.yaml")
        assert saved.seed == seed and saved.optimizer_factory_HoloOptimizerFactory_args.lr == 0.01
        assert "lr" not in saved  # long keys only: loadable by generate_samples / holo3d.load
        state = torch.load(next((tmp_path / "sweep" / str(job) / "checkpoints").glob("*.pth")))
        assert state["epoch"] == 1  # and it opens with torch.load's default weights_only=True
    assert not (tmp_path / "multirun").exists()


def test_errors_keep_hydras_reason_and_suggest_keys(tmp_path):
    wrong_type = run_cli(tmp_path, "lr=fast", f"exp_dir={tmp_path / 'a'}")
    assert wrong_type.returncode == 2
    assert "could not be converted to Float" in wrong_type.stderr and "full_key: lr" in wrong_type.stderr
    misspelt = run_cli(tmp_path, "epoch=3", f"exp_dir={tmp_path / 'b'}")
    assert misspelt.returncode == 2
    assert "Key 'epoch' is not in struct" in misspelt.stderr  # Hydra's own words
    assert "Did you mean: epochs" in misspelt.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cfg_resolve_info_and_help(tmp_path):
    shown = run_cli(tmp_path, "--config-name", "demo.yaml", "--cfg", "job", "--resolve", "lr=5e-3")
    assert shown.returncode == 0, shown.stderr
    assert OmegaConf.create(shown.stdout).lr == 5e-3
    info = run_cli(tmp_path, "--info", "defaults")
    assert info.returncode == 0 and "default_config" in info.stdout
    helped = run_cli(tmp_path, "--config-name", "demo.yaml", "--help", "lr=4e-3")
    assert helped.returncode == 0, helped.stderr
    assert "lr=0.004" in helped.stdout and "base learning rate" in helped.stdout
    assert "image_size=64" in helped.stdout and len(helped.stdout.splitlines()) < 120
    completion = run_cli(tmp_path, "-sc", "install=bash")
    assert completion.returncode == 0 and "complete" in completion.stdout
