"""holo3d.bench.public_viewfusion_step without the public code: refusals, the ratio table, and the
harness driving a stand-in checkout (files written here with the public code's call signatures)."""

import json
import textwrap

import pytest
import torch

from holo3d.bench import public_viewfusion_step as pv
from holo3d.bench.public_viewfusion_step import ENV_VAR, compare, format_rows, main

STAND_IN_MODEL = '''
import torch
from torch import nn

CALLS = []

class ViewFusion(nn.Module):
    def __init__(self, denoise_fn, beta_schedule, weighting_train=True, weighting_inference=True):
        super().__init__()
        self.denoise_fn, self.beta_schedule = denoise_fn, beta_schedule
        print("stand-in settings")  # the public model prints its settings too

    def set_new_noise_schedule(self, device=torch.device("cuda"), phase="train"):
        self.num_timesteps = self.beta_schedule[phase]["num_timesteps"]
        self.register_buffer("gammas", torch.linspace(1, 0, self.num_timesteps, device=device))

    def forward(self, y_cond, view_count, angle, y_0=None, noise=None, generate=False):
        CALLS.append({"generate": generate, "y_cond": tuple(y_cond.shape), "angle": tuple(angle.shape),
                      "view_count": view_count.tolist(), "steps": self.num_timesteps,
                      "y_0": None if y_0 is None else tuple(y_0.shape)})
        x = y_cond[:, 0, :3] if y_0 is None else y_0
        out = self.denoise_fn(torch.cat([y_cond[:, 0], x], dim=1), angle, angle)
        return out.square().mean()
'''
STAND_IN_UNET = '''
from torch import nn

class UNet(nn.Module):
    def __init__(self, in_channel=6, out_channel=6, inner_channel=8, image_size=16, **unused):
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, 3, padding=1)

    def forward(self, x, angle, time):
        return self.conv(x)
'''
STAND_IN_SCHEDULER = '''
class LrScheduler:
    def __init__(self, peak_lr=1e-4, peak_it=10, decay_rate=0.5, decay_it=100):
        self.peak_lr = peak_lr

    def get_cur_lr(self, it):
        return self.peak_lr
'''
STAND_IN_CONFIG = '''
model:
  view_fusion_params:
    beta_schedule:
      train: {schedule: linear, num_timesteps: 2000, linear_start: 1.0e-06, linear_end: 0.01}
      test: {schedule: linear, num_timesteps: 1000, linear_start: 1.0e-04, linear_end: 0.09}
  denoise_net_params: {image_size: 64, in_channel: 6, out_channel: 6, inner_channel: 64}
data:
  params: {max_views: 6, batch_size: 112}
'''


def write_checkout(root, unet_source=STAND_IN_UNET):
    files = {"model/view_fusion.py": STAND_IN_MODEL, "model/unet.py": unet_source,
             "utils/schedulers.py": STAND_IN_SCHEDULER, "configs/small-v100-4.yaml": STAND_IN_CONFIG}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


# ------------------------------------------------------------------------------------- refusals


def test_no_checkout_given_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["--device", "cpu"]) == 2
    assert ENV_VAR in capsys.readouterr().err


def test_folder_without_the_model_files_is_refused_naming_folder_and_file(tmp_path, capsys):
    write_checkout(tmp_path)
    (tmp_path / "model" / "unet.py").unlink()
    assert main(["--public-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "model" / "unet.py") in err and "bronemos/view-fusion" in err


def test_missing_config_file_is_named(tmp_path, capsys):
    write_checkout(tmp_path)
    assert main(["--public-dir", str(tmp_path), "--device", "cpu", "--config", "configs/nope.yaml"]) == 2
    assert "configs/nope.yaml" in capsys.readouterr().err


def test_missing_dependency_of_the_public_code_is_named(tmp_path, capsys):
    write_checkout(tmp_path, unet_source="import a_module_that_is_not_installed\n")
    assert main(["--public-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'a_module_that_is_not_installed'" in err and "model/unet.py" in err


def test_cuda_requested_without_cuda_is_refused(tmp_path, capsys, monkeypatch):
    write_checkout(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--public-dir", str(tmp_path), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_too_few_generation_steps_are_refused():
    with pytest.raises(SystemExit):
        main(["--generation", "--generation-steps", "3"])


# ------------------------------------------------------------------------------------- the harness


def test_training_step_feeds_the_public_loaders_shapes(tmp_path, capsys):
    write_checkout(tmp_path)
    out = tmp_path / "public.jsonl"
    argv = ["--public-dir", str(tmp_path), "--device", "cpu", "--batch", "3", "--warmup", "1", "--repeats", "2",
            "--out", str(out)]
    assert main(argv) == 0
    (line,) = [json.loads(t) for t in out.read_text().splitlines()]
    assert line["figure"] == "public.train" and line["status"] == "ok"
    assert line["config"]["batch"] == {"scenes": 3, "frames_per_scene": 7, "image_size": 64}
    assert line["items_per_s"] == pytest.approx(3 / line["step_s"])
    captured = capsys.readouterr()
    assert "stand-in settings" in captured.err and "stand-in settings" not in captured.out  # stdout: JSON only


def test_public_batch_layout_and_relative_mode():
    cfg = {"model": {"denoise_net_params": {"image_size": 16}}}
    batch = pv.public_batch(cfg, 2, torch.device("cpu"), seed=0)
    assert batch["y_0"].shape == (2, 3, 16, 16) and batch["y_cond"].shape == (2, 23, 3, 16, 16)
    assert batch["angle"].shape == (2, 1) and 0 <= float(batch["y_cond"].min()) <= float(batch["y_cond"].max()) <= 1
    relative = pv.public_batch({"model": {**cfg["model"], "relative": True}}, 2, torch.device("cpu"), seed=0)
    assert relative["y_cond"].shape == (2, 23, 6, 16, 16)
    assert torch.equal(relative["y_cond"][:, 5, :3], batch["y_cond"][:, 0])  # view 1 stacked onto each view
    assert torch.equal(relative["y_cond"][:, 5, 3:], batch["y_cond"][:, 5])


def test_step_draws_view_counts_within_max_views(tmp_path):
    write_checkout(tmp_path)
    root = pv.checkout_root(str(tmp_path), pv.DEFAULT_CONFIG)
    cfg, _ = pv.public_config(root, pv.DEFAULT_CONFIG, tiny=True)
    model, optimizer, lr = pv.build_public(root, cfg, torch.device("cpu"), seed=0)
    calls = model.forward.__globals__["CALLS"]  # the stand-in's record of its calls
    batch = pv.public_batch(cfg, 4, torch.device("cpu"), seed=0)
    for it in range(5):
        pv.public_step(model, optimizer, lr, batch, cfg["data"]["params"]["max_views"], it)
    counts = [c for call in calls for c in call["view_count"]]
    assert all(1 <= c <= pv.TINY_MAX_VIEWS for c in counts) and len(counts) == 20
    assert calls[0]["y_cond"] == (4, 23, 3, 16, 16) and calls[0]["y_0"] == (4, 3, 16, 16)


def test_generation_uses_six_views_and_the_requested_steps(tmp_path):
    write_checkout(tmp_path)
    out = tmp_path / "gen.jsonl"
    assert main(["--public-dir", str(tmp_path), "--device", "cpu", "--generation", "--generation-steps", "12",
                 "--out", str(out)]) == 0
    (line,) = [json.loads(t) for t in out.read_text().splitlines()]
    assert line["figure"] == "public.generation"
    assert (line["n"], line["steps"], line["views_per_target"]) == (1, 12, 6)


# ------------------------------------------------------------------------------------- ratios


def _holo(figure, scenes=32, frames=7, size=64, status="ok", model="viewfusion", **extra):
    system = {"params_m": 36.6, "batch": {"scenes": scenes, "frames_per_scene": frames, "image_size": size}}
    return {"figure": figure, "status": status, "model": model, "config": {"precision": "bf16", "system": system},
            **extra}


def _public(figure, scenes=32, frames=7, size=64, **extra):
    batch = {"scenes": scenes, "frames_per_scene": frames, "image_size": size} if figure == "public.train" \
        else {"image_size": size}
    return {"figure": figure, "status": "ok", "model": "viewfusion_public",
            "config": {"precision": "fp32", "params_m": 33.9, "batch": batch}, **extra}


def test_compare_pairs_same_shapes_and_divides():
    gen = {"n": 1, "steps": 1000, "views_per_target": 6}
    holo = [_holo("system.train", items_per_s=400.0, peak_memory_gib=10.0),
            _holo("system.train", scenes=8, items_per_s=100.0),  # the public side has no 8-scene run
            _holo("system.train", scenes=28, status="failed", items_per_s=None),
            _holo("system.train", model="genvs", items_per_s=1.0),  # another system: never paired
            _holo("system.sample", items_per_s=0.5, sample_s=2.0, sampler="ddim", **gen)]
    public = [_public("public.train", items_per_s=100.0, peak_memory_gib=20.0),
              _public("public.train", scenes=28, items_per_s=90.0),
              _public("public.generation", items_per_s=0.1, sample_s=10.0, **gen),
              _public("public.generation", items_per_s=1.0, sample_s=1.0, **{**gen, "steps": 50})]
    train, generation = compare(holo, public)
    assert (train["kind"], train["speedup"], train["target"]) == ("train", 4.0, 3.0)
    assert (train["holo3d_params_m"], train["public_params_m"]) == (36.6, 33.9)
    assert (train["holo3d_gib"], train["public_gib"]) == (10.0, 20.0)
    assert (generation["kind"], generation["speedup"], generation["target"]) == ("generation", 5.0, 5.0)
    table = format_rows([train, generation])
    assert "4.00x (>= 3x met)" in table and "5.00x (>= 5x met)" in table and "36.6 / 33.9" in table


def test_compare_reports_a_missed_target(tmp_path, capsys):
    holo, public = tmp_path / "h.jsonl", tmp_path / "p.jsonl"
    holo.write_text(json.dumps(_holo("system.train", items_per_s=150.0)) + "\n")
    public.write_text(json.dumps(_public("public.train", items_per_s=100.0)) + "\n")
    assert main(["--compare", str(holo), str(public)]) == 0
    assert "1.50x (>= 3x not met)" in capsys.readouterr().out
    public.write_text(json.dumps(_public("public.train", scenes=4, items_per_s=100.0)) + "\n")
    assert main(["--compare", str(holo), str(public)]) == 1  # nothing measured by both
