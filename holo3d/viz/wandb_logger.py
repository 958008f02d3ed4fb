"""``ExperimentLogger`` for Weights & Biases, offline by default (an optional extra: pip install wandb).

Runs are written under ``<exp_dir>/wandb``; with the default ``mode="offline"`` nothing touches the
network and ``wandb sync <exp_dir>/wandb/offline-run-*`` uploads later. ``WANDB_MODE`` in the
environment wins over the argument (``WANDB_MODE=online`` for live dashboards). The run id is kept
in ``<exp_dir>/wandb_run_id`` so a resumed training appends to the same run. Videos are logged as
GIFs (``wandb.Video`` of a GIF file needs neither moviepy nor ffmpeg). Like the other loggers, a
failure gives one warning and training continues.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Dict, Optional

import torch

from holo3d.viz.gif_encoding import encode_gif
from holo3d.viz.grid_visualization import to_rgb
from holo3d.viz.logger_base import ExperimentLogger

log = logging.getLogger(__name__)


def import_wandb():
    """The wandb module, or an ImportError that says how to get it."""
    try:
        import wandb
    except ImportError as error:
        raise ImportError("logger=wandb needs the optional package wandb: pip install 'holo3d[wandb]' "
                          "(or use logger=tensorboard / visdom / none)") from error
    return wandb


class WandbLogger(ExperimentLogger):
    """Scalars as ``<split>/<name>``, images as ``wandb.Image``, clips as GIF ``wandb.Video``."""

    def __init__(self, exp_dir: str | Path, project: str = "holo3d", mode: str = "offline",
                 name: Optional[str] = None):
        self.exp_dir = Path(exp_dir)
        self._wandb = import_wandb()  # fail at start, naming the fix, not at the first log call
        self._mode, self._project, self._name = mode, project, name or self.exp_dir.name
        self._run = None
        self._warned = False

    def _ensure_run(self):
        if self._run is None:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            self._run = self._wandb.init(
                project=self._project, name=self._name, dir=str(self.exp_dir), id=self._run_id(),
                resume="allow", mode=os.environ.get("WANDB_MODE", self._mode),
            )
        return self._run

    def _run_id(self) -> str:
        """One run per experiment folder: resumed training continues the same run."""
        path = self.exp_dir / "wandb_run_id"
        if path.is_file():
            return path.read_text().strip()
        run_id = uuid.uuid4().hex[:8]  # wandb's ids: 8 lowercase alphanumerics
        path.write_text(run_id + "\n")
        return run_id

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("W&B logging of %s failed (%s: %s); training continues, further failures are "
                        "silent", what, type(exc).__name__, exc)

    def log_scalars(self, step: int, scalars: Dict[str, float], split: str = "train") -> None:
        try:
            data = {f"{split}/{name}": float(value) for name, value in scalars.items()}
            self._ensure_run().log(data, step=int(step))
        except Exception as exc:  # noqa: BLE001 (never raise into training)
            self._failed("scalars", exc)

    def log_images(self, step: int, images: Dict[str, torch.Tensor]) -> None:
        try:
            data = {name: self._wandb.Image(to_rgb(image).permute(1, 2, 0).numpy()) for name, image in images.items()}
            self._ensure_run().log(data, step=int(step))
        except Exception as exc:  # noqa: BLE001
            self._failed("images", exc)

    def log_video(self, step: int, name: str, frames: torch.Tensor, fps: int = 15) -> None:
        try:
            with tempfile.NamedTemporaryFile(suffix=".gif", dir=self.exp_dir, delete=False) as gif:
                gif.write(encode_gif(frames, fps))
            try:
                self._ensure_run().log({name: self._wandb.Video(gif.name, format="gif")}, step=int(step))
            finally:
                os.unlink(gif.name)
        except Exception as exc:  # noqa: BLE001
            self._failed("a video", exc)

    def close(self) -> None:
        if self._run is not None:
            try:
                self._run.finish()
            except Exception as exc:  # noqa: BLE001
                self._failed("close", exc)
            self._run = None
