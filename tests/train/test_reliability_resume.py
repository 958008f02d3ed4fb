"""Exact resume from stops in the middle of epochs, as processes (issue 21, items 2 and 6).

Each run is a separate process: SIGTERM / SIGINT to the whole process group (data-loader workers
included) at an iteration drawn at random inside an epoch, exit status 143 / 130, then the same
command again. The final weights, optimizer state and RNG must equal an uninterrupted run's bit
for bit. The data set draws random numbers in its workers and the model in the main process, so
any shift of either RNG stream (e.g. the workers' base seed drawn by ``iter(loader)`` once more
after a resume) shows up as a difference.

This file is also the driver of those processes: ``python test_reliability_resume.py EXP_DIR
MAX_EPOCHS STOP_AT SIGNAL``.
"""

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
N_BATCHES = 4  # per epoch


def _register_worker_source():
    """TinyTestDataSource with 2 workers and data that draws from the workers' RNG (registered
    here, in the driver process only: registration must precede the config's first expansion)."""
    from pytorch3d.implicitron.dataset.data_loader_map_provider import DataLoaderMap
    from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap
    from pytorch3d.implicitron.dataset.frame_data import FrameData
    from pytorch3d.implicitron.tools.config import registry
    from tiny_components import TinyTestDataSource, _SceneBatchSampler, _TinyDataset

    from holo3d.data.multi_scene_provider import ignore_stop_signals

    class NoisyDataset(_TinyDataset):
        def __getitem__(self, index):
            frame = super().__getitem__(index)
            frame.image_rgb = (frame.image_rgb + 0.1 * torch.rand_like(frame.image_rgb)).clamp(0, 1)
            return frame

    @registry.register
    class TinyWorkerDataSource(TinyTestDataSource):
        def get_datasets_and_dataloaders(self):
            dataset = NoisyDataset(self.n_scenes, self.frames_per_scene, self.image_size)

            def loader(n_batches, seed, workers):
                sampler = _SceneBatchSampler(dataset, self.scenes_per_batch, n_batches, seed)
                return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=FrameData.collate,
                                                   num_workers=workers, worker_init_fn=ignore_stop_signals)

            return (DatasetMap(train=dataset, val=dataset, test=None),
                    DataLoaderMap(train=loader(self.dataset_length_train, self.seed, 2),
                                  val=loader(1, self.seed + 1, 0), test=None))


def _drive(exp_dir: str, max_epochs: int, stop_at: int, signum: int) -> None:
    sys.path[:0] = [str(HERE), str(REPO)]
    import tiny_components

    _register_worker_source()
    from holo3d.train.config_cli import compose_config
    from holo3d.train.experiment import Experiment
    from test_training_loop import TINY

    original = tiny_components.TinyTestModel.forward

    def forward(self, **kwargs):
        if kwargs.get("iteration") == stop_at:  # as `timeout` / a scheduler does: the whole group
            os.killpg(os.getpgid(0), signum)
        return original(self, **kwargs)

    tiny_components.TinyTestModel.forward = forward
    loop = "training_loop_HoloTrainingLoop_args"
    cfg = compose_config("base", [
        f"exp_dir={exp_dir}", *TINY, "data_source_class_type=TinyWorkerDataSource",
        f"data_source_TinyWorkerDataSource_args.dataset_length_train={N_BATCHES}",
        f"{loop}.max_epochs={max_epochs}", f"{loop}.ema_decay=0.9", f"{loop}.keep_last_checkpoints=2",
    ])
    Experiment(**cfg).run(cfg)


def _run(exp_dir: Path, max_epochs: int, stop_at: int = -1, signum: int = signal.SIGTERM):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, __file__, str(exp_dir), str(max_epochs), str(stop_at), str(int(signum))],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)


def _final_state(exp_dir: Path):
    from holo3d.train.checkpoint import load_latest_checkpoint

    return load_latest_checkpoint(exp_dir)


def _assert_identical(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


@pytest.mark.slow  # 4 training processes: ~25 s of CPU
def test_stops_at_random_iterations_inside_epochs_resume_bit_exactly(tmp_path):
    max_epochs = 2
    straight = _run(tmp_path / "straight", max_epochs)
    assert straight.returncode == 0, straight.stderr[-3000:]
    # two stops at random iterations that are not epoch ends (a stop after iteration i's step)
    rng = random.Random(21)
    inside = [i for i in range(max_epochs * N_BATCHES - 1) if (i + 1) % N_BATCHES]
    stops = sorted(rng.sample(inside, 2))
    split = tmp_path / "split"
    for stop_at, signum in zip(stops, (signal.SIGTERM, signal.SIGINT)):
        stopped = _run(split, max_epochs, stop_at, signum)
        assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
        assert "Resume with the same command" in stopped.stderr
        state = _final_state(split)
        assert (state["iteration"], state["batch_in_epoch"]) == (stop_at + 1, (stop_at + 1) % N_BATCHES)
    finished = _run(split, max_epochs)
    assert finished.returncode == 0, finished.stderr[-3000:]
    a, b = _final_state(tmp_path / "straight"), _final_state(split)
    assert a["iteration"] == b["iteration"] == max_epochs * N_BATCHES
    for key in ("model", "ema", "optimizer", "scheduler", "rng"):
        _assert_identical(a[key], b[key], key)
    assert "stopped by signal SIGTERM" in (split / "train.log").read_text()


if __name__ == "__main__":
    _drive(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
