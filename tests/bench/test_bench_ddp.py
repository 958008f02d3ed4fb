"""The multi-GPU throughput bench runs under torchrun (here: one CPU process, tiny model)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ddp_bench_runs_under_torchrun_and_reports_scenes_per_second(tmp_path):
    out = tmp_path / "ddp.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
         "-m", "holo3d.bench.ddp_train", "--tiny", "--scenes", "1", "--frames-per-scene", "3",
         "--image-size", "32", "--warmup", "1", "--repeats", "2", "--precision", "fp32", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_figure = {line["figure"]: line for line in lines}
    assert set(by_figure) == {"train.ddp_step_time", "train.ddp_scenes_per_s"}
    rate = by_figure["train.ddp_scenes_per_s"]
    assert rate["status"] == "ok" and rate["config"]["gpus"] == 1 and rate["config"]["launcher"] == "torchrun"
    assert abs(rate["value"] * by_figure["train.ddp_step_time"]["value"] - 1.0) < 1e-6
