"""The Python API round trip: train (tiny) -> export -> holo3d.load -> sample -> render_turntable."""

import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent / "sample"))

import holo3d  # noqa: E402
from holo3d.export import CONFIG_NAME, INFO_NAME, WEIGHTS_NAME, main as export_main  # noqa: E402
from holo3d.sample.input_checks import ExperimentLoadError  # noqa: E402
from holo3d.train.checkpoint import list_checkpoints  # noqa: E402
from sample_testdata import make_tiny_dataset, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny HoloDiffusion experiment (2 iterations, EMA) on a tiny built-in dataset."""
    from accelerate.state import AcceleratorState

    from holo3d.train.experiment import Experiment

    data = make_tiny_dataset(tmp_path_factory.mktemp("data"))
    exp_dir = tmp_path_factory.mktemp("exp") / "tiny"
    cfg = tiny_config(exp_dir, data)
    Experiment(**cfg).run(cfg)
    AcceleratorState._reset_state()
    return exp_dir


def test_checkpoint_opens_with_default_torch_load(trained):
    state = torch.load(list_checkpoints(trained)[-1])  # weights_only=True, torch's default
    assert state["epoch"] == 1 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_export_load_sample_render_round_trip(trained, tmp_path):
    out = tmp_path / "export"
    assert export_main([f"exp_dir={trained}", f"out={out}"]) == 0
    assert {p.name for p in out.iterdir()} == {WEIGHTS_NAME, CONFIG_NAME, INFO_NAME}
    info = json.loads((out / INFO_NAME).read_text())
    assert info["weights"] == "ema" and info["model"] == "HoloDiffusionModel"
    assert "optimizer" not in OmegaConf.load(out / CONFIG_NAME)  # a config, not a training state
    assert (out / WEIGHTS_NAME).stat().st_size < list_checkpoints(trained)[-1].stat().st_size / 2

    from_export, from_exp = holo3d.load(out, device="cpu"), holo3d.load(trained, device="cpu")
    for name, tensor in from_exp.state_dict().items():
        torch.testing.assert_close(from_export.state_dict()[name], tensor, rtol=0, atol=0)
    assert not from_export.training

    grids = [m.sample(2, steps=3, generator=torch.Generator().manual_seed(0)) for m in (from_export, from_exp)]
    torch.testing.assert_close(grids[0], grids[1])
    frames = holo3d.render_turntable(from_export, grids[0], n_frames=48, image_size=16)
    assert frames.shape == (2, 48, 3, 16, 16) and 0 <= frames.min() <= frames.max() <= 1
    assert not torch.equal(frames[:, 0], frames[:, 12])  # the camera really moves around


def test_load_names_what_is_wrong(tmp_path):
    with pytest.raises(ExperimentLoadError, match="not a folder"):
        holo3d.load(tmp_path / "missing")
    with pytest.raises(ExperimentLoadError, match="checkpoint"):
        holo3d.load(tmp_path)
    with pytest.raises(SystemExit, match="usage"):
        export_main([f"exp_dir={tmp_path}"])
