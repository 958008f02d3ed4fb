"""The benchmark's parts on CPU: batches, timing, reporter, CLI parsing, variants, profile, exp folder."""

import io
import json

import pytest
import torch

from holo3d.bench.__main__ import build_parser, settings_from_args
from holo3d.bench.context import BenchContext
from holo3d.bench.denoiser_variants import use_variant, variants_for
from holo3d.bench.fresh_experiment import write_fresh_experiment
from holo3d.bench.profiling import run_profile
from holo3d.bench.report import REQUIRED_FIELDS, Reporter
from holo3d.bench.settings import tiny_cpu_settings
from holo3d.bench.synthetic_batch import synthetic_frame_data
from holo3d.bench.timing import time_fn
from holo3d.bench.train_step import log_warmup
from holo3d.bench.unet_step import make_denoise_step
from holo3d.data.scene_batch import SceneBatch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ctx():
    return BenchContext(tiny_cpu_settings(), Reporter(CPU, stream=io.StringIO()))


def test_synthetic_batch_is_scene_major_and_regroups():
    batch = synthetic_frame_data(3, 5, 24, CPU, seed=1)
    scenes = SceneBatch.from_frame_data(batch)
    assert scenes.image_rgb.shape == (3, 5, 3, 24, 24) and len(batch.camera) == 15
    assert scenes.sequence_name == ["bench_0000", "bench_0001", "bench_0002"]
    assert set(batch.fg_probability.unique().tolist()) == {0.0, 1.0}
    # every camera looks at the world origin: it projects to the image centre
    origin = torch.zeros(15, 1, 3)
    centre = batch.camera.transform_points_ndc(origin)[:, 0, :2]
    assert centre.abs().max() < 1e-4


def test_time_fn_counts_warmup_and_repeats():
    calls = []
    timing = time_fn(lambda: calls.append(1), CPU, warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.times_s) == 3
    assert set(timing.stats()) >= {"median_s", "min_s", "max_s", "wall_median_s", "repeats"}
    with pytest.raises(ValueError):
        time_fn(lambda: None, CPU, 0, 0)


def test_log_warmup_logs_only_the_warmup_calls_and_passes_results(caplog):
    calls = []
    step = log_warmup(lambda: calls.append(1) or len(calls), warmup=2)
    with caplog.at_level("INFO", logger="holo3d.bench.train_step"):
        results = [step() for _ in range(4)]
    assert results == [1, 2, 3, 4]
    logged = [r.getMessage() for r in caplog.records if "warm-up call" in r.getMessage()]
    assert len(logged) == 2 and "call 1 of 2" in logged[0] and "call 2 of 2" in logged[1]


def test_reporter_writes_json_lines(tmp_path):
    stream, path = io.StringIO(), tmp_path / "out.jsonl"
    reporter = Reporter(CPU, str(path), stream=stream)
    reporter.emit("x.time", float("nan"), "s", {"a": 1, "dtype": torch.float32}, extra=[1.0])
    line = json.loads(stream.getvalue())
    assert set(REQUIRED_FIELDS) <= set(line)
    assert line["value"] is None and line["config"]["dtype"] == "torch.float32"
    assert json.loads(path.read_text()) == line


def test_guard_reports_failures_and_oom_and_goes_on():
    stream = io.StringIO()
    guarded = BenchContext(tiny_cpu_settings(), Reporter(CPU, stream=stream))
    with guarded.guard([("a.time", "s"), ("a.memory", "GiB")], {"k": 1}):
        raise RuntimeError("boom\nsecond line")
    with guarded.guard([("b.time", "s")], {}):
        raise torch.OutOfMemoryError("CUDA out of memory")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(l["figure"], l["status"]) for l in lines] == [
        ("a.time", "failed"), ("a.memory", "failed"), ("b.time", "oom")]
    assert lines[0]["error"] == "RuntimeError: boom" and lines[0]["value"] is None
    assert guarded.reporter.n_failed == 2


def test_cli_parsing_overrides_settings():
    args = build_parser().parse_args(
        ["--cpu", "--scenes", "1,4", "--chunks", "4096,full", "--bootstrap", "on", "--tf32", "default",
         "--e2e-samplers", "ddpm:1000,ddim:50", "--e2e-arg", "batch_size=8", "--channels-last"])
    s = settings_from_args(args)
    assert s.scenes == [1, 4] and s.chunk_sizes == [4096, 0] and s.bootstrap == [True]
    assert s.tf32 is None and s.e2e_samplers == [("ddpm", 1000), ("ddim", 50)]
    assert s.e2e_extra == ["batch_size=8"] and s.channels_last and not s.compile
    assert variants_for(s, CPU) == ["eager", "channels_last_3d"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--only", "train,bogus"])


def test_channels_last_variant_matches_eager_and_restores(ctx):
    step = make_denoise_step(ctx, 2, "fp32")
    eager = step()
    with use_variant(ctx.model, "channels_last_3d", ctx.settings):
        weight = ctx.model.unet.unet.input_conv.weight
        assert weight.is_contiguous(memory_format=torch.channels_last_3d)
        fast = step()
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
    assert ctx.model.unet.input_conv.weight.is_contiguous()


def test_profile_writes_a_table(ctx, tmp_path):
    line = run_profile(ctx, "unet", str(tmp_path))
    assert line["figure"] == "profile.unet" and line["value"] > 0
    assert (tmp_path / "profile_unet.txt").read_text().count("\n") > 5
    assert line["top_ops"] and {"name", "ms_per_step", "share"} <= set(line["top_ops"][0])


def test_fresh_experiment_loads_in_the_sampling_script(tmp_path):
    loader = pytest.importorskip("holo3d.sample.experiment_loader")
    settings = tiny_cpu_settings()
    folder = write_fresh_experiment(tmp_path / "exp", settings.model, seed=3)
    loaded = loader.load_experiment(str(folder), device="cpu")
    assert loaded.model.grid_resolution == settings.model["grid_resolution"]
    assert loaded.epoch == 0 and loaded.weights == "model"
    # the zero-initialised output layer was randomised: samples are not constant
    assert loaded.model.unet.out[-1].weight.abs().sum() > 0
