"""Fixtures for the dashboard tests: a running visdom server, Chromium, and an artefact folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from holo3d.viz.dashboard import DashboardProcess
from holo3d.viz.install_static import is_installed

# Test helpers next to this file (viz_chromium) are imported by name; --import-mode=importlib does
# not put test folders on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
INSTALL_BROWSER = REPO / "scripts" / "install_browser.sh"


@pytest.fixture(scope="session")
def visdom_static() -> None:
    """The UI files must be there (scripts/install.sh puts them); without them the server would
    reach for CDNs, which is the failure this whole set-up exists to prevent."""
    assert is_installed(), ("visdom's static files are missing or stale: run "
                            "`python -m holo3d.viz.install_static` (part of scripts/install.sh)")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, visdom_static):
    """A dashboard on a free loopback port with its envs in a temporary folder (one per module:
    starting one costs ~2 s, mostly importing visdom)."""
    folder = tmp_path_factory.mktemp("dashboard")
    server = DashboardProcess(env_path=folder / "envs", log_path=folder / "dashboard.log")
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium, installed on first use by scripts/install_browser.sh (apt, as root).

    Skips — visibly, with the reason — where it cannot be installed (not root, no apt, offline).
    """
    try:
        proc = subprocess.run(["bash", str(INSTALL_BROWSER)], capture_output=True, text=True,
                              timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Chromium could not be installed for the browser test: {exc}")
    path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not os.access(path, os.X_OK):
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"Chromium not available and could not be installed "
                    f"(scripts/install_browser.sh exit {proc.returncode}: {reason})")
    return path


@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    """Where screenshots go: $HOLO3D_TEST_ARTIFACTS, else tests/viz/artifacts (git-ignored by the
    .gitignore written into it, so CI can upload it and a checkout stays clean)."""
    path = Path(os.environ.get("HOLO3D_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return path
