"""``ExperimentLogger`` that fills a visdom env (one per experiment) from a background thread.

Panels: one line plot per scalar name with a "train" and a "val" trace (loss terms, PSNR, lr,
sec/it, GPU memory, ...), one image window per image name (target, render, depth, mask, the
feature-grid PCA, ...), and one window per video name showing an animated GIF. The caller only
copies tensors to the CPU and enqueues; encoding and HTTP happen on the poster's thread.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from holo3d.viz.background_poster import BackgroundPoster
from holo3d.viz.gif_encoding import encode_gif, frames_to_uint8
from holo3d.viz.grid_visualization import to_rgb
from holo3d.viz.logger_base import ExperimentLogger

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def env_name_from_exp_dir(exp_dir: str | Path) -> str:
    """The visdom env of an experiment: its directory name, made safe for a file name and a URL."""
    name = _UNSAFE.sub("-", Path(exp_dir).resolve().name).strip("-.")
    return name or "holo3d"


def display_size(height: int, width: int, smallest: int = 256, largest: int = 512):
    """On-screen (height, width): small renders scaled up to ``smallest`` px on their long side,
    big ones down to ``largest``, aspect kept."""
    long_side = max(height, width)
    scale = min(max(1.0, smallest / long_side), largest / long_side)
    return max(1, round(height * scale)), max(1, round(width * scale))


def window_id(kind: str, name: str) -> str:
    return f"{kind}_{_UNSAFE.sub('-', name)}"


class VisdomLogger(ExperimentLogger):
    """Posts to ``server:port``, env named from ``exp_dir`` unless ``env`` is given.

    Never blocks or raises into training: calls enqueue (bounded, oldest dropped), each HTTP
    request has ``timeout_s``, and an unreachable server yields one warning then silence.
    ``image_history`` keeps every logged step of an image behind a slider (costs server memory).
    """

    def __init__(self, exp_dir: str | Path, server: str = "http://127.0.0.1", port: int = 8097,
                 env: Optional[str] = None, timeout_s: float = 5.0, max_pending: int = 512,
                 retry_after_s: float = 30.0, save_every_s: float = 60.0,
                 image_history: bool = False):
        self.env = env or env_name_from_exp_dir(exp_dir)
        self.server, self.port, self.timeout_s = server, port, timeout_s
        self.image_history = image_history
        self._save_every_s = save_every_s
        self._last_save = time.monotonic()
        self._warned_input = False
        self.poster = BackgroundPoster(self._connect, self._deliver, f"visdom at {server}:{port}",
                                       max_pending=max_pending, retry_after_s=retry_after_s)

    # -- ExperimentLogger (caller's thread: cheap copies only) --------------------------------
    def log_scalars(self, step: int, scalars: Dict[str, float], split: str = "train") -> None:
        with self._caller_errors("scalars"):
            values = {k: float(v) for k, v in scalars.items()}
            self.poster.submit(("scalars", int(step), split, values))

    def log_images(self, step: int, images: Dict[str, torch.Tensor]) -> None:
        with self._caller_errors("images"):
            for name, image in images.items():
                self.poster.submit(("image", int(step), name, to_rgb(image).clone()))

    def log_video(self, step: int, name: str, frames: torch.Tensor, fps: int = 15) -> None:
        with self._caller_errors("a video"):
            frames = frames_to_uint8(frames)  # validates the shape here, where the bug is
            self.poster.submit(("video", int(step), name, frames, int(fps)))

    @contextlib.contextmanager
    def _caller_errors(self, what: str) -> Iterator[None]:
        """A malformed value (the caller's bug) skips that post with one warning, never a crash."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001
            if not self._warned_input:
                self._warned_input = True
                log.warning("visdom logger skipped %s it cannot post (%s: %s); further such "
                            "errors are silent", what, type(exc).__name__, exc)

    def close(self) -> None:
        self.poster.submit(("save",))
        self.poster.close(timeout_s=self.timeout_s + 2.0)

    @property
    def url(self) -> str:
        return f"{self.server}:{self.port}/env/{self.env}"

    # -- worker thread ---------------------------------------------------------------------
    def _connect(self) -> Any:
        from holo3d.viz.visdom_client import connect_visdom

        return connect_visdom(self.server, self.port, self.env, timeout_s=self.timeout_s)

    def _deliver(self, client: Any, batch: List[tuple]) -> None:
        for (name, split), points in _merge_scalars(batch).items():
            self._post_line(client, name, split, points)
        for item in _latest_per_name(batch, "image", keep_all=self.image_history):
            self._post_image(client, *item[1:])
        for item in _latest_per_name(batch, "video"):
            self._post_video(client, *item[1:])
        wants_save = any(item[0] == "save" for item in batch)
        if wants_save or time.monotonic() - self._last_save > self._save_every_s:
            client.save([self.env])  # the server keeps envs in memory; this writes env_path
            self._last_save = time.monotonic()

    def _post_line(self, client: Any, name: str, split: str, points: List[Tuple[int, float]]):
        import numpy as np

        steps, values = zip(*points)
        opts = dict(title=name, xlabel="step", ylabel=name, showlegend=True)
        # Appending to a missing window creates it, and a new trace name adds a trace, so train
        # and val share one plot without the logger tracking which windows exist.
        client.line(Y=np.asarray(values, dtype=np.float64), X=np.asarray(steps, dtype=np.float64),
                    win=window_id("scalar", name), name=split, update="append", opts=opts)

    def _post_image(self, client: Any, step: int, name: str, image: torch.Tensor) -> None:
        # visdom sizes an image window from opts width/height and stretches the image to it.
        height, width = display_size(*image.shape[-2:])
        opts = dict(title=f"{name}  (step {step})", width=width, height=height,
                    store_history=self.image_history)
        client.image(image.numpy(), win=window_id("image", name), opts=opts)

    def _post_video(self, client: Any, step: int, name: str, frames: torch.Tensor, fps: int):
        """``frames`` (T, H, W, 3) uint8, as ``log_video`` stored them."""
        import base64

        gif = base64.b64encode(encode_gif(frames, fps)).decode("ascii")
        height, width = display_size(*frames.shape[1:3])
        html = (f'<img src="data:image/gif;base64,{gif}" alt="{name}" '
                f'style="width:{width}px;height:{height}px;image-rendering:pixelated">')
        opts = dict(title=f"{name}  (step {step})", width=width + 30, height=height + 50)
        client.text(html, win=window_id("video", name), opts=opts)


def _merge_scalars(batch: List[tuple]) -> Dict[Tuple[str, str], List[Tuple[int, float]]]:
    """(name, split) -> [(step, value)] in posting order: one HTTP request per curve per batch."""
    curves: Dict[Tuple[str, str], List[Tuple[int, float]]] = {}
    for item in batch:
        if item[0] == "scalars":
            _, step, split, values = item
            for name, value in values.items():
                curves.setdefault((name, split), []).append((step, value))
    return curves


def _latest_per_name(batch: List[tuple], kind: str, keep_all: bool = False) -> List[tuple]:
    """Items of ``kind``; only the newest per name unless ``keep_all`` (older ones are stale)."""
    items = [item for item in batch if item[0] == kind]
    if keep_all:
        return items
    latest = {item[2]: item for item in items}
    return list(latest.values())
