"""holo3d.bench.official_step without the official code: its refusal, and the ratio table."""

from holo3d.bench.official_step import compare, format_rows, main


def _line(figure, value, scenes, bootstrap, precision, **extra):
    config = {"scenes": scenes, "bootstrap": bootstrap, "frames_per_scene": 16, "image_size": 800,
              "precision": precision}
    return {"figure": figure, "value": value, "status": "ok", "config": config, **extra}


def test_missing_official_code_fails_naming_official_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OFFICIAL_DIR", raising=False)
    assert main(["--official-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "OFFICIAL_DIR" in err and str(tmp_path) in err and "facebookresearch/holo_diffusion" in err
    assert main(["--device", "cpu"]) == 2  # neither --official-dir nor $OFFICIAL_DIR


def test_broken_official_checkout_reports_the_import_error(tmp_path, capsys):
    package = tmp_path / "holo_diffusion"
    package.mkdir()
    (package / "holo_diffusion_model.py").write_text("import a_module_that_is_not_installed\n")
    assert main(["--official-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "a_module_that_is_not_installed" in err and "OFFICIAL_DIR" in err


def test_compare_pairs_same_shapes_and_divides():
    holo = [_line("train.scenes_per_s", 40.0, 8, False, "bf16"), _line("train.scenes_per_s", 6.0, 1, False, "bf16"),
            _line("train.peak_memory", 19.0, 8, False, "bf16", per_scene_gib=2.0),
            _line("train.scenes_per_s", 30.0, 8, True, "bf16")]  # the official side has no bootstrap run
    official = [_line("official.train.scenes_per_s", 5.0, 8, False, "fp32"),
                _line("official.train.scenes_per_s", 6.0, 1, False, "fp32"),
                _line("official.train.peak_memory", 9.0, 8, False, "fp32", per_scene_gib=9.0)]
    official[1]["config"]["image_size"] = 400  # another batch shape: not paired
    (row,) = compare(holo, official)
    assert (row["scenes"], row["bootstrap"]) == (8, False)
    assert row["speedup"] == 8.0 and row["memory_ratio"] == 4.5
    assert "8.00x" in format_rows([row])
