"""`python -m holo3d.bench --model X --cpu` for every system, the FLOP counter and the MFU arithmetic."""

import io
import json

import pytest
import torch

from holo3d.bench.__main__ import build_parser, main
from holo3d.bench.model_setup import backend_flags
from holo3d.bench.report import REQUIRED_FIELDS, Reporter
from holo3d.bench.systems import (
    SYSTEMS,
    count_flops,
    mfu_fields,
    peak_tflops,
    run,
    system_settings,
)

TRAIN_FIELDS = ("model", "item", "items_per_step", "items_per_s", "step_s", "peak_memory_gib", "flops",
                "achieved_tflops", "peak_tflops", "mfu", "mfu_reason")
SAMPLE_FIELDS = ("model", "item", "n", "sampler", "steps", "sample_s", "items_per_s", "peak_memory_gib", "what")


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """{model: (exit status, lines)} of one in-process `--model M --cpu` run per system."""
    threads = torch.get_num_threads()  # the CPU mode sets 1 thread for the process
    runs = {}
    try:
        for model in SYSTEMS:
            out = tmp_path_factory.mktemp(model) / "figures.jsonl"
            status = main(["--model", model, "--cpu", "--out", str(out)])
            runs[model] = (status, [json.loads(line) for line in out.read_text().splitlines()])
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("model", SYSTEMS)
def test_every_system_runs_on_cpu_with_the_expected_fields(cpu_runs, model):
    status, lines = cpu_runs[model]
    assert status == 0, [line.get("error") for line in lines]
    assert [line["figure"] for line in lines] == ["system.train", "system.sample"]
    train, sample = lines
    for line, fields in ((train, TRAIN_FIELDS), (sample, SAMPLE_FIELDS)):
        assert line["status"] == "ok", line.get("error")
        assert set(REQUIRED_FIELDS) <= set(line) and set(fields) <= set(line), set(fields) - set(line)
        assert line["model"] == model and line["unit"] == "s" and line["value"] > 0
        assert line["config"]["bench"] == "system-tiny-cpu" and line["config"]["precision"] == "fp32"
    assert train["value"] == train["step_s"] and sample["value"] == sample["sample_s"]
    assert train["items_per_s"] == pytest.approx(train["items_per_step"] / train["step_s"])
    assert train["flops"] > 0
    assert train["achieved_tflops"] == pytest.approx(train["flops"] / train["step_s"] / 1e12)
    assert train["mfu"] is None and "CPU" in train["mfu_reason"]  # no peak for a CPU
    assert sample["steps"] == 2 and sample["n"] >= 1
    system = train["config"]["system"]
    assert system["config"].startswith("configs/") and system["overrides"]  # the tiny variant says so
    assert system["params_m"] > 0


def test_voxel_ldm_uses_an_in_memory_autoencoder_and_restores_the_loader(cpu_runs):
    from holo3d.models import voxel_ldm

    system = cpu_runs["voxel_ldm"][1][0]["config"]["system"]
    assert "in memory" in system["autoencoder"] and system["batch"] == {"grids": 2, "resolution": 16}
    assert voxel_ldm.load_frozen_autoencoder.__name__ == "load_frozen_autoencoder"


def test_flop_counter_matches_the_closed_form_of_a_linear_layer():
    batch, n_in, n_out = 4, 8, 5
    layer = torch.nn.Linear(n_in, n_out)
    x = torch.randn(batch, n_in, requires_grad=True)
    forward = 2 * batch * n_in * n_out
    assert count_flops(lambda: layer(x)) == forward
    # backward: grad wrt input and grad wrt weight, each another 2 B in out
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * forward


def test_mfu_is_achieved_over_peak():
    fields = mfu_fields(flops=int(3e12), step_s=0.5, peak=12.0, source="test")
    assert fields["achieved_tflops"] == pytest.approx(6.0) and fields["mfu"] == pytest.approx(0.5)
    assert fields["mfu_reason"] is None
    none = mfu_fields(flops=int(3e12), step_s=0.5, peak=None, source="no entry")
    assert none["mfu"] is None and none["mfu_reason"] == "no entry" and none["achieved_tflops"] == pytest.approx(6.0)


def test_peak_table_by_gpu_name_precision_and_override():
    assert peak_tflops("NVIDIA H200", "bf16")[0] == 989.4
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16")[0] == 312.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16")[0] < peak_tflops("NVIDIA H100 80GB HBM3", "bf16")[0]
    with backend_flags(True, False):
        assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32")[0] == 494.7  # TF32 on
    with backend_flags(False, False):
        assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32")[0] < 100  # plain fp32
    assert peak_tflops("cpu", "fp32") == (None, "CPU: no peak table entry (pass --peak-tflops)")
    assert peak_tflops("Some GPU", "bf16")[0] is None
    assert peak_tflops("cpu", "fp32", override=2.5) == (2.5, "--peak-tflops")


def test_peak_override_gives_an_mfu_on_cpu():
    stream = io.StringIO()
    threads = torch.get_num_threads()
    try:
        settings = system_settings("voxel_ldm", True, figures=("train",), peak_tflops=0.5, repeats=1)
        assert run(settings, Reporter(torch.device("cpu"), stream=stream)) == 0
    finally:
        torch.set_num_threads(threads)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["peak_tflops"] == 0.5 and line["peak_source"] == "--peak-tflops"
    assert line["mfu"] == pytest.approx(line["achieved_tflops"] / 0.5)


@pytest.mark.parametrize("argv", [["--model", "genvs", "--bootstrap", "on"], ["--model", "genvs", "--only", "unet"],
                                  ["--peak-tflops", "1"], ["--model", "holo", "--sample-steps", "3"]])
def test_flags_of_another_model_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv + ["--cpu"])
    assert stop.value.code == 2 and "--model" in capsys.readouterr().err


def test_default_model_is_holo_with_every_figure():
    args = build_parser().parse_args([])
    assert args.model == "holo" and args.only is None  # main() runs every family, as before --model


def test_config_args_change_the_model_and_are_recorded(tmp_path):
    key = "model_factory_HoloModelFactory_args.model_GenvsModel_args.unet_args.model_channels"
    lines = {}
    threads = torch.get_num_threads()
    try:
        for width in (16, 32):  # the tiny config's width, then twice it
            out = tmp_path / f"w{width}.jsonl"
            assert main(["--model", "genvs", "--cpu", "--only", "train", "--repeats", "1", "--warmup", "0",
                         "--config-arg", f"{key}={width}", "--out", str(out)]) == 0
            (lines[width],) = [json.loads(t) for t in out.read_text().splitlines() if '"system.train"' in t]
    finally:
        torch.set_num_threads(threads)
    assert lines[32]["config"]["system"]["overrides"][key] == 32
    assert lines[32]["config"]["system"]["params_m"] > lines[16]["config"]["system"]["params_m"]
    with pytest.raises(SystemExit, match="--config-arg model_factory_HoloModelFactory_args.no_such_key"):
        main(["--model", "genvs", "--cpu", "--config-arg", "model_factory_HoloModelFactory_args.no_such_key=1"])


def test_compile_model_in_the_config_compiles_the_models_target(tmp_path, monkeypatch):
    """--config-arg ...compile_model=true times the loop's compiled forward (its compile_target)."""
    import holo3d.train.step as step_module

    compiled = []

    def fake_compile(target, **kwargs):
        compiled.append(getattr(target, "__name__", type(target).__name__))
        return target

    monkeypatch.setattr(step_module.torch, "compile", fake_compile)
    threads = torch.get_num_threads()
    try:
        assert main(["--model", "viewfusion", "--cpu", "--only", "train", "--repeats", "1", "--warmup", "0",
                     "--config-arg", "training_loop_HoloTrainingLoop_args.compile_model=true",
                     "--out", str(tmp_path / "f.jsonl")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert compiled == ["denoise_pairs"]
