"""Session fixtures for the sampling / reconstruction tests: a tiny built-in dataset and a tiny
trained HoloDiffusion experiment on it (helpers in sample_testdata.py, importable from here on).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sample_testdata import make_tiny_dataset, tiny_config  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and on a shared 2-core machine OpenMP threads spinning
    against other processes make a 0.3 ms convolution take 60 ms. Restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """3 chair sequences x 8 frames at 32 px, in CO3Dv2 format (train / val / test sequences)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_experiment(tmp_path_factory, tiny_dataset) -> Path:
    """A tiny HoloDiffusion experiment trained for 2 iterations (with EMA) on ``tiny_dataset``."""
    from holo3d.train.experiment import Experiment

    exp_dir = tmp_path_factory.mktemp("exp") / "tiny"
    cfg = tiny_config(exp_dir, tiny_dataset)
    Experiment(**cfg).run(cfg)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return exp_dir
