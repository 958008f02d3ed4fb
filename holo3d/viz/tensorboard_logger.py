"""``ExperimentLogger`` writing TensorBoard event files under ``<exp_dir>/tensorboard``.

Train and val go to sibling runs (``tensorboard/train``, ``tensorboard/val``) under the same tags,
so TensorBoard overlays their curves in one chart, as the visdom logger does. Videos are animated
GIFs in the image tab: ``SummaryWriter.add_video`` would need moviepy, which GIF encoding here
does not. Writing is already asynchronous (the writer's own thread); errors give one warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import torch

from holo3d.viz.gif_encoding import encode_gif
from holo3d.viz.grid_visualization import to_rgb
from holo3d.viz.logger_base import ExperimentLogger

log = logging.getLogger(__name__)


class TensorBoardLogger(ExperimentLogger):
    """View with ``tensorboard --logdir <exp_dir>/tensorboard``."""

    def __init__(self, exp_dir: str | Path, subdir: str = "tensorboard", flush_secs: int = 30):
        self.log_dir = Path(exp_dir) / subdir
        self._flush_secs = flush_secs
        self._writers: Dict[str, object] = {}
        self._warned = False

    def _writer(self, split: str):
        """One ``SummaryWriter`` per split, made on first use (no empty runs in the UI)."""
        if split not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[split] = SummaryWriter(str(self.log_dir / split),
                                                 flush_secs=self._flush_secs)
        return self._writers[split]

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("TensorBoard logging of %s failed (%s: %s); training continues, further "
                        "failures are silent", what, type(exc).__name__, exc)

    def log_scalars(self, step: int, scalars: Dict[str, float], split: str = "train") -> None:
        try:
            writer = self._writer(split)
            for name, value in scalars.items():
                writer.add_scalar(name, float(value), int(step))
        except Exception as exc:  # noqa: BLE001 (never raise into training)
            self._failed("scalars", exc)

    def log_images(self, step: int, images: Dict[str, torch.Tensor]) -> None:
        try:
            writer = self._writer("train")
            for name, image in images.items():
                writer.add_image(name, to_rgb(image), int(step), dataformats="CHW")
        except Exception as exc:  # noqa: BLE001
            self._failed("images", exc)

    def log_video(self, step: int, name: str, frames: torch.Tensor, fps: int = 15) -> None:
        try:
            self._add_gif(name, frames, int(step), fps)
        except Exception as exc:  # noqa: BLE001
            self._failed("a video", exc)

    def _add_gif(self, tag: str, frames: torch.Tensor, step: int, fps: int) -> None:
        # The same image summary add_video writes, with the GIF encoded here instead of by moviepy.
        from tensorboard.compat.proto.summary_pb2 import Summary

        height, width = frames.shape[-2:]
        image = Summary.Image(height=int(height), width=int(width), colorspace=3,
                              encoded_image_string=encode_gif(frames, fps))
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self._writer("train")._get_file_writer().add_summary(summary, step)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001
                self._failed("close", exc)
        self._writers.clear()

    def run_dir(self, split: str = "train") -> Optional[Path]:
        """Where ``split``'s event files are (None before anything was logged to it)."""
        return self.log_dir / split if split in self._writers else None
