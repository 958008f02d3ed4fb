"""The built-in dataset: generated on first use, atomically; and the command line."""

import os

import pytest

from holo3d.data.synthetic import builtin, generate, read_manifest, render_sequence, spec
from holo3d.data.synthetic.__main__ import main

SMALL = spec.SyntheticSpec(categories=("mug",), sequences=3, frames=4, image_size=(32, 32))


@pytest.fixture
def small_tiny_preset(monkeypatch):
    monkeypatch.setitem(spec.PRESETS, "tiny", SMALL)


def test_ensure_generates_once_with_a_message(tmp_path, capsys, small_tiny_preset):
    root = str(tmp_path / "builtin_tiny")
    assert builtin.ensure_builtin_dataset(root, "tiny") == root
    assert "built-in dataset 'tiny' (co3d format) not found" in capsys.readouterr().err
    assert read_manifest(root)["preset"] == "tiny"
    assert sorted(os.listdir(tmp_path)) == ["builtin_tiny", "builtin_tiny.lock"]  # no partial left over
    mtime = os.path.getmtime(os.path.join(root, generate.MANIFEST))
    assert builtin.ensure_builtin_dataset(root, "tiny") == root
    assert capsys.readouterr().err == "" and os.path.getmtime(os.path.join(root, generate.MANIFEST)) == mtime


def test_ensure_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "builtin_demo").mkdir()
    (tmp_path / "builtin_demo" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not a complete holo3d synthetic dataset.*notes.txt"):
        builtin.ensure_builtin_dataset(str(tmp_path / "builtin_demo"), "demo")


def test_interrupted_generation_leaves_nothing_that_looks_valid(tmp_path, monkeypatch, small_tiny_preset):
    calls = []

    def render_then_fail(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # Ctrl-C while rendering the second sequence
        calls.append(1)
        return render_sequence(*args, **kwargs)

    monkeypatch.setattr(generate, "render_sequence", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        builtin.ensure_builtin_dataset(str(tmp_path / "builtin_tiny"), "tiny")
    assert [p for p in os.listdir(tmp_path) if not p.endswith(".lock")] == []


def test_data_source_generates_the_builtin_dataset_when_root_is_empty(tmp_path, monkeypatch, source_config, small_tiny_preset):
    from holo3d.data import Holo3DDataSource

    monkeypatch.setenv(builtin.ROOT_ENV, str(tmp_path))
    cfg = source_config("", "mug")
    cfg.builtin_preset, cfg.builtin_device = "tiny", "cpu"
    cfg.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.frames_per_scene = 2
    datasets, loaders = Holo3DDataSource(**cfg).get_datasets_and_dataloaders()
    assert os.path.isfile(tmp_path / "builtin_tiny" / generate.MANIFEST)
    assert len(datasets.train) == 4 and next(iter(loaders.train)).image_rgb.shape[0] == 2


def test_cli_writes_a_dataset_and_reports_bad_options(tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = ["--out", out, "--preset", "tiny", "--categories", "mug", "--sequences", "3", "--frames", "4", "--image-size", "32", "24", "--no-progress"]
    assert main(args) == 0
    manifest = read_manifest(out)
    assert manifest["spec"]["image_size"] == [32, 24] and manifest["spec"]["categories"] == ["mug"]
    assert "wrote 3 sequences x 4 frames" in capsys.readouterr().out
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--sequences", "2"]) == 2
    assert "sequences=2: need >= 3" in capsys.readouterr().err


def test_missing_builtin_dataset_without_generation_says_how_to_make_it(tmp_path, monkeypatch, source_config):
    from holo3d.data import Holo3DDataSource
    from holo3d.data.dataset_layout import DatasetLayoutError

    monkeypatch.setenv(builtin.ROOT_ENV, str(tmp_path))
    cfg = source_config("", "mug")
    cfg.builtin_preset, cfg.generate_builtin_if_missing = "demo", False
    with pytest.raises(DatasetLayoutError, match=r"make it with: python -m holo3d.data.synthetic --out .*builtin_demo"):
        Holo3DDataSource(**cfg)
