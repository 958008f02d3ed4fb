"""holo3d.bench.unofficial_genvs_step without the public code: its refusals, its batch, the ratio table."""

import json

import pytest
import torch

from holo3d.bench import unofficial_genvs_step as ug
from holo3d.bench.unofficial_genvs_step import (EXPECTED_FILES, PublicCodeError, check_checkout, check_modules,
                                                compare, format_rows, main, relative_to_first, synthetic_batch)


def _holo(items_per_s, scenes, params_m=31.657, size=128, model="genvs", status="ok"):
    config = {"precision": "bf16", "system": {"params_m": params_m,
                                              "batch": {"scenes": scenes, "frames_per_scene": 2, "image_size": size}}}
    return {"figure": "system.train", "value": scenes / items_per_s, "status": status, "model": model,
            "items_per_s": items_per_s, "config": config}


def _public(images_per_s, scenes_per_step, params_m=189.047, size=128, figure="public.train.images_per_s"):
    config = {"scenes_per_step": scenes_per_step, "image_size": size, "precision": "fp32", "params_m": params_m}
    return {"figure": figure, "value": images_per_s, "status": "ok", "config": config}


def _fake_checkout(root, skip=None, models=True):
    for name in EXPECTED_FILES + (("k_diffusion/models/__init__.py",) if models else ()):
        if name != skip:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("")
    return root


def test_compare_pairs_scenes_per_step_and_divides():
    holo = [_holo(120.0, 16), _holo(30.0, 2), _holo(999.0, 16, model="viewfusion"), _holo(50.0, 8, size=64)]
    public = [_public(24.0, 16), _public(6.0, 2, size=64),  # other image size: not paired
              _public(7.0, 16, figure="public.train.step_time"), _public(1.0, 8)]
    (row,) = compare(holo, public)
    assert (row["scenes"], row["image_size"]) == (16, 128)
    assert row["speedup"] == pytest.approx(5.0)
    assert row["params_ratio"] == pytest.approx(31.657 / 189.047)
    table = format_rows([row])
    assert "5.00x" in table and "31.7 / 189.0" in table and "(bf16)" in table and "(fp32)" in table


def test_compare_ignores_failed_lines_and_main_reports_no_pair(tmp_path, capsys):
    holo, public = tmp_path / "h.jsonl", tmp_path / "p.jsonl"
    holo.write_text(json.dumps(_holo(120.0, 16, status="oom")) + "\n")
    public.write_text(json.dumps(_public(24.0, 16)) + "\n\n")
    assert compare([_holo(120.0, 16, status="oom")], [_public(24.0, 16)]) == []
    assert main(["--compare", str(holo), str(public)]) == 1
    assert "no (scenes per step, image size)" in capsys.readouterr().out


def test_main_compare_prints_the_ratio(tmp_path, capsys):
    holo, public = tmp_path / "h.jsonl", tmp_path / "p.jsonl"
    holo.write_text(json.dumps(_holo(90.0, 16)) + "\n")
    public.write_text(json.dumps(_public(30.0, 16)) + "\n")
    assert main(["--compare", str(holo), str(public)]) == 0
    assert "3.00x" in capsys.readouterr().out


def test_not_a_checkout_fails_naming_the_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ug.ENV_VAR, raising=False)
    missing = tmp_path / "nowhere"
    assert main(["--public-dir", str(missing), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert ug.ENV_VAR in err and str(missing) in err and "jfozard/genvs_unofficial" in err
    assert main(["--device", "cpu"]) == 2  # neither --public-dir nor the variable
    assert ug.ENV_VAR in capsys.readouterr().err


def test_a_missing_file_is_named(tmp_path):
    _fake_checkout(tmp_path, skip="nerf/network_multi.py")
    with pytest.raises(PublicCodeError, match="no nerf/network_multi.py") as caught:
        check_checkout(str(tmp_path))
    assert str(tmp_path) in str(caught.value)


def test_missing_k_diffusion_models_says_how_to_restore_it(tmp_path):
    _fake_checkout(tmp_path, models=False)
    with pytest.raises(PublicCodeError, match="k_diffusion/models") as caught:
        check_checkout(str(tmp_path))
    assert "checkout cd94d86 -- k_diffusion/models" in str(caught.value)
    _fake_checkout(tmp_path)
    assert check_checkout(str(tmp_path)) == tmp_path.resolve()


def test_missing_modules_are_named_with_their_packages():
    with pytest.raises(PublicCodeError) as caught:
        check_modules({"torch": "torch", "a_module_that_is_not_installed": "some-package",
                       "another_absent_module": "other-package"})
    text = str(caught.value)
    assert "a_module_that_is_not_installed (pip install some-package)" in text
    assert "another_absent_module (pip install other-package)" in text and "torch (" not in text


def test_import_failure_of_the_checkout_names_the_module(tmp_path, capsys, monkeypatch):
    _fake_checkout(tmp_path)
    (tmp_path / "genvs_model.py").write_text("import a_module_that_is_not_installed\n")
    monkeypatch.setattr(ug, "check_modules", lambda: None)
    monkeypatch.setattr(ug.sys, "path", list(ug.sys.path))
    monkeypatch.delitem(ug.sys.modules, "genvs_model", raising=False)
    assert main(["--public-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'a_module_that_is_not_installed' is missing" in err and str(tmp_path) in err


def test_cuda_device_without_cuda_names_the_hard_coded_calls(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--public-dir", str(tmp_path), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "genvs_model.py" in err and ".cuda()" in err and "--device cpu" in err


def test_synthetic_batch_has_its_loader_layout():
    batch = synthetic_batch(3, 4, 32, torch.device("cpu"), seed=0)
    assert batch["imgs"].shape == (3, 4, 3, 32, 32) and batch["imgs"].dtype == torch.float32
    assert -1 <= batch["imgs"].min() and batch["imgs"].max() <= 1
    assert batch["poses"].shape == (3, 4, 4, 4) and batch["intrinsics"].shape == (3, 4)
    assert batch["camera_k"].dtype == torch.float64 and batch["camera_d"].shape == (3,)
    first = batch["poses"][:, 0].double()
    assert torch.allclose(first[:, :3, :3], torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(batch["camera_d"], torch.full((3,), ug.SRN_DISTANCE, dtype=torch.float64))
    assert torch.allclose(first[:, :3, 3], torch.tensor([0, 0, ug.SRN_DISTANCE], dtype=torch.float64).expand(3, 3),
                          atol=1e-5)
    # every camera still looks at the origin (its -z axis points there) and keeps its distance
    poses = batch["poses"].double().view(-1, 4, 4)
    to_origin = torch.nn.functional.normalize(-poses[:, :3, 3], dim=-1)
    assert torch.allclose(-poses[:, :3, 2], to_origin, atol=1e-5)
    assert torch.allclose(poses[:, :3, 3].norm(dim=-1), torch.full((12,), ug.SRN_DISTANCE, dtype=torch.float64))


def test_relative_to_first_is_a_rigid_change_of_frame():
    poses = ug.orbit_poses(5, 2.0, torch.Generator().manual_seed(1))
    moved = relative_to_first(poses)
    # relative poses between cameras are unchanged
    assert torch.allclose(torch.linalg.inv(moved[0]) @ moved[3], torch.linalg.inv(poses[0]) @ poses[3], atol=1e-10)
