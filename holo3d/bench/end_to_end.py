"""Figure 4: ``generate_samples.py`` end to end, as a user runs it, on a fresh experiment folder.

The bench writes an experiment folder with random weights (``fresh_experiment``), then for each
(sampler, steps) runs, as a subprocess in the repository root,

    python generate_samples.py exp_dir=EXP num_samples=15 sampler=S steps=N n_frames=75 \
        render_size=[256,256] video_size=[256,256] up=[0,1,0] distance=3.5 device=D

and reports its wall time: interpreter start and imports, loading the checkpoint, sampling, rendering
the turntables and encoding the videos (the script picks the encoder the host has: imageio-ffmpeg,
or OpenCV where there is no ffmpeg, as on the GPU hosts). ``up`` and ``distance`` are given so the
script never looks for a dataset. Its output goes to ``EXP/generate_<sampler>_<steps>.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from holo3d.bench.context import BenchContext
from holo3d.bench.fresh_experiment import write_fresh_experiment
from holo3d.bench.report import REPO_ROOT
from holo3d.bench.synthetic_batch import ORBIT_DISTANCE

GENERATE_SAMPLES = REPO_ROOT / "generate_samples.py"


def generate_command(ctx: BenchContext, exp_dir: Path, sampler: str, steps: int) -> List[str]:
    s = ctx.settings
    size = lambda n: f"[{n},{n}]"  # noqa: E731 - Hydra list syntax
    return [
        sys.executable, str(GENERATE_SAMPLES), f"exp_dir={exp_dir}", f"num_samples={s.e2e_samples}",
        f"sampler={sampler}", f"steps={steps}", f"n_frames={s.e2e_frames}",
        f"render_size={size(s.e2e_render_size)}", f"video_size={size(s.e2e_video_size)}",
        "up=[0.0,1.0,0.0]", f"distance={ORBIT_DISTANCE}", f"device={ctx.device.type}",
        *s.e2e_extra,
    ]


def _file_times(folder: Path) -> Dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")
            if p.is_file() and p.suffix != ".log"}


def _written(before: Dict[str, float], after: Dict[str, float]) -> List[str]:
    """Files the script created or rewrote."""
    return sorted(name for name, mtime in after.items() if before.get(name) != mtime)


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def measure_generate(ctx: BenchContext, exp_dir: Path, sampler: str, steps: int) -> None:
    s = ctx.settings
    command = generate_command(ctx, exp_dir, sampler, steps)
    config = ctx.config(backend=False, num_samples=s.e2e_samples, sampler=sampler, steps=steps, n_frames=s.e2e_frames,
                        render_size=s.e2e_render_size, video_size=s.e2e_video_size,
                        command=" ".join(command[1:]))
    log_path = exp_dir / f"generate_{sampler}_{steps}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if s.threads:
        env["OMP_NUM_THREADS"] = str(s.threads)
    with ctx.guard([("e2e.generate_samples", "s")], config):
        before = _file_times(exp_dir)
        start = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log:
            result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=s.e2e_timeout_s, env=env)
        elapsed = time.perf_counter() - start
        outputs = _written(before, _file_times(exp_dir))
        if result.returncode != 0:
            ctx.emit("e2e.generate_samples", None, "s", config, status="failed", log=str(log_path),
                     error=f"exit status {result.returncode}: {_tail(log_path)}")
            return
        ctx.emit("e2e.generate_samples", elapsed, "s", config, log=str(log_path),
                 n_outputs=len(outputs), outputs=outputs[:8])


def run_e2e(ctx: BenchContext) -> None:
    s = ctx.settings
    if not GENERATE_SAMPLES.is_file():
        for sampler, steps in s.e2e_samplers:
            ctx.emit("e2e.generate_samples", None, "s", ctx.config(backend=False, sampler=sampler, steps=steps),
                     status="skipped", error=f"{GENERATE_SAMPLES} does not exist")
        return
    root = Path(s.e2e_dir) if s.e2e_dir else Path(tempfile.mkdtemp(prefix="holo3d_bench_e2e_"))
    exp_dir = write_fresh_experiment(root, s.model, s.seed)
    for sampler, steps in s.e2e_samplers:
        measure_generate(ctx, exp_dir, sampler, steps)
