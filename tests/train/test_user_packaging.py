"""holo3d as an installed library: the package list, configs as package data, console scripts."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = ("holo3d-train", "holo3d-sample", "holo3d-reconstruct", "holo3d-distill", "holo3d-export", "holo3d-dashboard")


def test_explicit_package_list_is_complete():
    """pyproject lists packages by hand (configs/ is mapped to holo3d.configs); none may be missing."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set(find_packages(where=str(REPO), include=["holo3d", "holo3d.*"]))
    assert found - listed == set(), "add these subpackages to [tool.setuptools] packages in pyproject.toml"
    assert {"holo3d.configs", "holo3d.configs.data"} <= listed
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["holo3d.configs"] == "configs"
    assert set(PYPROJECT["project"]["scripts"]) == set(SCRIPTS)
    assert "torch==2.11.0" in PYPROJECT["project"]["dependencies"]  # pytorch3d._C needs exactly it


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_trains_help(tmp_path):
    """Build the wheel, install it (no deps: they come from this venv) into a fresh venv and run the
    console scripts from a folder that is not the checkout."""
    source = tmp_path / "src"  # a copy: setuptools builds in-tree (build/, egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "holo3d", "configs"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=600, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("holo3d-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "holo3d/configs/base.yaml" in names and "holo3d/configs/data/srn_cars.yaml" in names
    assert not any(n.startswith(("tests/", "configs/")) for n in names)
    shipped = {f"holo3d/assets/demo_voxel_ldm/{f}" for f in ("model.safetensors", "config.yaml", "export.json")}
    assert shipped <= set(names)  # the demo's pre-trained model travels with the library

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this venv's packages (torch, pytorch3d, Hydra...) after the fresh venv's own: no downloads
    Path(site, "deps_from_dev_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import holo3d, holo3d.train.config_cli as c; "
                            "print(holo3d.__file__); print(c.CONFIG_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in where and "site-packages/holo3d/configs" in where
    helped = subprocess.run([venv / "bin" / "holo3d-train", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "Short keys" in helped.stdout and "site-packages/holo3d/configs" in helped.stdout
    for script in SCRIPTS:
        assert (venv / "bin" / script).is_file()
