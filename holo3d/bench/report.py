"""Reporter: one JSON line per figure, with the fields that say where and when it was measured.

Every line has ``figure, value, unit, status, gpu, torch, cuda, config, commit, date``; extra keys
(timing statistics, tolerances, errors) follow. Lines go to stdout (flushed, so a run that dies
late keeps its earlier figures) and, when asked, are appended to a file.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Type

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_FIELDS = ("figure", "value", "unit", "status", "gpu", "torch", "config", "commit", "date")


def device_name(device: torch.device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or "cpu"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def git_commit(repo: Path = REPO_ROOT) -> Optional[str]:
    """HOLO3D_COMMIT if set (a copied tree without .git, e.g. on a GPU machine), else the checkout's
    HEAD with "-dirty" when the tree has changes; None when neither is known."""
    if os.environ.get("HOLO3D_COMMIT"):
        return os.environ["HOLO3D_COMMIT"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def checkout_commit(folder) -> Optional[str]:
    """HEAD of another git checkout (e.g. a paper's public code being compared), or None."""
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def read_json_lines(path: str) -> List[Dict[str, Any]]:
    """The Reporter lines of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def compare_or_run(args, prog: str, compare: Callable, format_rows: Callable, run: Callable,
                   refused: Type[Exception], nothing: str) -> int:
    """The side-by-side harnesses' main: ``--compare A B`` prints the ratio table of two runs' lines
    (status 1 when nothing pairs up, with ``nothing``); otherwise ``run(args)``, whose ``refused``
    errors (the other code missing or unusable) are printed as one line with status 2."""
    if args.compare:
        rows = compare(read_json_lines(args.compare[0]), read_json_lines(args.compare[1]))
        print(format_rows(rows) if rows else nothing, flush=True)
        return 0 if rows else 1
    try:
        return run(args)
    except refused as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2


def _jsonable(value: Any) -> Any:
    # NaN / inf are not JSON: a figure that could not be computed is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    return value


class Reporter:
    """Writes figures as JSON lines and keeps them (``lines``) for the caller's summary."""

    def __init__(self, device: torch.device, out_path: Optional[str] = None, stream: TextIO = sys.stdout):
        self.stream = stream
        self.out_path = out_path
        self.lines: List[Dict[str, Any]] = []
        self.env = {
            "gpu": device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None,
            "commit": git_commit(),
        }

    def emit(self, figure: str, value: Optional[float], unit: str, config: Dict[str, Any],
             status: str = "ok", **extra: Any) -> Dict[str, Any]:
        """Writes one figure. status: ok | oom | skipped | failed (value is None unless ok)."""
        line = {"figure": figure, "value": value, "unit": unit, "status": status, "gpu": self.env["gpu"],
                "torch": self.env["torch"], "cuda": self.env["cuda"], "config": config,
                "commit": self.env["commit"],
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        line.update(extra)
        line = _jsonable(line)
        text = json.dumps(line, sort_keys=False)
        print(text, file=self.stream, flush=True)
        if self.out_path:
            with open(self.out_path, "a", encoding="utf-8") as stream:
                stream.write(text + "\n")
        self.lines.append(line)
        return line

    @property
    def n_failed(self) -> int:
        return sum(line["status"] == "failed" for line in self.lines)
