"""The monitoring dashboard: a visdom server on loopback with its envs stored inside the project.

    python -m holo3d.viz.dashboard [--port 8097] [--env-path exp/visdom_envs]   # or: make dashboard

Starts offline (the UI files come from ``python -m holo3d.viz.install_static`` at install time),
prints the URL, and stops cleanly on Ctrl-C or SIGTERM. ``DashboardProcess`` runs the same thing as
a subprocess for tests and notebooks and waits until it answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

HOST = "127.0.0.1"
DEFAULT_PORT = 8097


def project_root() -> Path:
    """The checkout holding the ``holo3d`` package (editable install), else the working dir."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def default_env_path() -> Path:
    return project_root() / "exp" / "visdom_envs"


def dashboard_url(port: int, env: Optional[str] = None) -> str:
    """The page of one env (visdom serves ``/env/<name>``), or the env picker without ``env``."""
    base = f"http://{HOST}:{port}"
    return f"{base}/env/{env}" if env else base


def free_port() -> int:
    """A loopback port nobody listens on right now (for tests and parallel dashboards)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001 (signal handler signature)
    raise KeyboardInterrupt


def serve(port: int = DEFAULT_PORT, env_path: Optional[Path] = None) -> None:
    """Runs the visdom server in this process until Ctrl-C / SIGTERM."""
    from visdom.server import app as visdom_app
    from visdom.server.run_server import start_server

    from holo3d.viz.install_static import is_installed

    if not is_installed():
        raise SystemExit("visdom's UI files are missing; run `python -m holo3d.viz.install_static` "
                         "once (needs npm and the registry) — the server would try CDNs and fail.")
    env_path = Path(env_path or default_env_path()).resolve()
    env_path.mkdir(parents=True, exist_ok=True)
    # visdom turns on tornado's debug mode, whose autoreload re-execs the server whenever any
    # imported source file changes; a long-lived dashboard must not restart under a live edit.
    visdom_app.tornado_settings["autoreload"] = False
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def announce(bound_port: int) -> None:
        print(f"holo3d dashboard: {dashboard_url(bound_port)}  (envs in {env_path})", flush=True)

    try:
        start_server(port=port, base_url="", env_path=f"{env_path}{os.sep}", bind_local=True,
                     print_func=announce)
    except KeyboardInterrupt:
        print("holo3d dashboard stopped", flush=True)
    except OSError as exc:  # typically the port is taken, e.g. by another dashboard
        raise SystemExit(f"cannot serve on {HOST}:{port}: {exc}") from None


def server_answers(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(dashboard_url(port), timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class DashboardProcess:
    """The dashboard as a child process: ``with DashboardProcess(port, env_path) as dash: ...``."""

    def __init__(self, port: Optional[int] = None, env_path: Optional[Path] = None,
                 log_path: Optional[Path] = None):
        self.port = port or free_port()
        self.env_path = Path(env_path or default_env_path())
        self.log_path = log_path
        self._proc: Optional[subprocess.Popen] = None
        self._log = None

    @property
    def url(self) -> str:
        return dashboard_url(self.port)

    def command(self) -> List[str]:
        return [sys.executable, "-m", "holo3d.viz.dashboard", "--port", str(self.port),
                "--env-path", str(self.env_path)]

    def start(self, timeout: float = 30.0) -> "DashboardProcess":
        """Spawns the server; returns once it serves its page (raises if it dies or times out)."""
        self._log = open(self.log_path, "w") if self.log_path else None
        self._proc = subprocess.Popen(self.command(), stdout=self._log or subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dashboard exited with code {self._proc.returncode}"
                                   + (f"; log: {self.log_path}" if self.log_path else ""))
            if server_answers(self.port, timeout=0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"dashboard did not answer on port {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM (the server exits cleanly), SIGKILL if it ignores it; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        code, self._proc = self._proc.returncode, None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> "DashboardProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="holo3d monitoring dashboard (visdom on loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--env-path", type=Path, default=None,
                        help=f"where envs are stored (default: {default_env_path()})")
    args = parser.parse_args(argv)
    serve(args.port, args.env_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
