"""`python -m holo3d.bench --cpu` runs end to end and writes well-formed figures (no timing asserts)."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from holo3d.bench.report import REQUIRED_FIELDS
from holo3d.bench.settings import tiny_cpu_settings

REPO = Path(__file__).resolve().parents[2]
TINY = tiny_cpu_settings()


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One CPU-mode run of the CLI: (completed process, stdout lines parsed, --out file lines)."""
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "figures.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "holo3d.bench", "--cpu", "--out", str(out), "--e2e-dir", str(folder / "exp")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    stdout_lines = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON
    file_lines = [json.loads(line) for line in out.read_text().splitlines()]
    return result, stdout_lines, file_lines


def _by_figure(lines):
    grouped = {}
    for line in lines:
        grouped.setdefault(line["figure"], []).append(line)
    return grouped


def test_exits_cleanly_and_mirrors_stdout_to_out_file(cpu_run):
    result, lines, file_lines = cpu_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert lines == file_lines
    assert not [line for line in lines if line["status"] == "failed"]


def test_every_line_has_the_required_fields(cpu_run):
    _, lines, _ = cpu_run
    for line in lines:
        assert set(REQUIRED_FIELDS) <= set(line), line["figure"]
        assert line["gpu"] == "cpu" and line["torch"] == torch.__version__
        assert line["status"] in ("ok", "skipped")
        assert isinstance(line["config"], dict) and line["config"]["bench"] == "tiny-cpu"
        if line["status"] == "ok":
            assert isinstance(line["value"], float) and line["value"] >= 0.0, line


def test_training_figures_cover_every_configuration(cpu_run):
    figures = _by_figure(cpu_run[1])
    expected = set(itertools.product(TINY.scenes, TINY.precisions, TINY.bootstrap))
    for name in ("train.step_time", "train.scenes_per_s", "train.peak_memory"):
        seen = {(c["scenes"], c["precision"], c["bootstrap"]) for c in (l["config"] for l in figures[name])}
        assert seen == expected, name
    step = figures["train.step_time"][0]
    assert {"median_s", "min_s", "max_s", "repeats"} <= set(step)
    assert step["config"]["model"]["params_m"] > 0


def test_unet_sample_render_figures(cpu_run):
    figures = _by_figure(cpu_run[1])
    unet = {(l["config"]["batch"], l["config"]["precision"]) for l in figures["unet.step_time"]}
    assert unet == set(itertools.product(TINY.unet_batches, TINY.precisions))
    samplers = {(l["config"]["sampler"], l["config"]["steps"]) for l in figures["sample.time"]}
    assert ("ddpm", TINY.model["num_diffusion_steps"]) in samplers
    chunks = {l["config"]["chunk_size"] for l in figures["render.frame_time"]}
    assert chunks == {c if c else "full" for c in TINY.chunk_sizes}
    assert all(l["unit"] == "ms" for l in figures["render.frame_time"] + figures["unet.step_time"])


def test_numerics_figures_state_their_tolerance(cpu_run):
    figures = _by_figure(cpu_run[1])
    for name in ("unet", "render", "loss"):
        (line,) = figures[f"numerics.{name}_bf16_rel_err"]
        assert line["passed"] is True and 0.0 < line["value"] < line["tolerance"]


def test_end_to_end_runs_generate_samples(cpu_run):
    figures = _by_figure(cpu_run[1])
    lines = figures["e2e.generate_samples"]
    assert len(lines) == len(TINY.e2e_samplers)
    if not (REPO / "generate_samples.py").is_file():
        assert all(line["status"] == "skipped" for line in lines)
        return
    for line in lines:
        assert line["status"] == "ok", line.get("error")
        assert any(name.endswith(".mp4") for name in line["outputs"])
        assert "num_samples=" in line["config"]["command"]


def test_model_args_reach_the_model_and_the_figures_config():
    from holo3d.bench.__main__ import build_parser, settings_from_args

    args = build_parser().parse_args(["--cpu", "--model-arg", "lifter_args.checkpoint_backbone=true",
                                      "--model-arg", "bootstrap_prob=0.25"])
    model = settings_from_args(args).model
    assert model["lifter_args.checkpoint_backbone"] is True and model["bootstrap_prob"] == 0.25
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        settings_from_args(build_parser().parse_args(["--cpu", "--model-arg", "checkpoint_backbone"]))
