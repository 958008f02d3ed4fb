"""Stopping a real training process the way schedulers and `timeout` do: SIGTERM to the whole
process group, data-loader workers included. The run must write its stop checkpoint and exit 143
(128 + SIGTERM: stopped, not finished)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sample"))

from sample_testdata import LOADER, LOOP, PROVIDER, TINY_MODEL, make_tiny_dataset  # noqa: E402

from holo3d.train.checkpoint import load_latest_checkpoint  # noqa: E402


def wait_for_iterations(log: Path, n: int, process: subprocess.Popen, timeout: float = 180) -> None:
    pattern = re.compile(rf"\|\s*(\d+)/1000")
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        done = [int(m) for m in pattern.findall(log.read_text(errors="ignore"))] if log.exists() else []
        if done and max(done) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"training did not reach {n} iterations:\n{log.read_text()[-2000:]}")


def test_sigterm_to_process_group_with_workers_writes_stop_checkpoint(tmp_path):
    data, exp_dir, log = make_tiny_dataset(tmp_path), tmp_path / "exp", tmp_path / "stderr.txt"
    command = [
        sys.executable, "experiment.py", "--config-name", "base.yaml", f"exp_dir={exp_dir}", *TINY_MODEL,
        f"{PROVIDER}.dataset_root={data}", f"{PROVIDER}.category=chair", f"{PROVIDER}.num_load_workers=0",
        f"{PROVIDER}.dataset_Holo3DJsonIndexDataset_args.image_height=32",
        f"{PROVIDER}.dataset_Holo3DJsonIndexDataset_args.image_width=32",
        f"{LOADER}.scenes_per_batch=1", f"{LOADER}.frames_per_scene=3", f"{LOADER}.num_workers=2",
        f"{LOADER}.dataset_length_train=1000", f"{LOOP}.max_epochs=1", f"{LOOP}.logger=none",
        f"{LOOP}.mixed_precision=no", f"{LOOP}.ema_decay=0.0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_MININTERVAL": "0"}
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        try:
            wait_for_iterations(log, 3, process)
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(timeout=120) == 143, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    state = load_latest_checkpoint(exp_dir)
    assert state is not None and state["epoch"] == 0 and 3 <= state["batch_in_epoch"] < 1000
    assert "stopped by signal" in (exp_dir / "train.log").read_text()
