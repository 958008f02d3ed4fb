"""Video files written frame by frame: mp4 (h264 through imageio-ffmpeg; OpenCV's mp4v where
imageio-ffmpeg is absent, as on the GPU hosts) and, optionally, a GIF next to it.

Frames stream into a hidden temporary file that is renamed to the final name only when the video is
complete, so an interrupted run never leaves a truncated file that looks like a result. "Complete"
is checked, not assumed: the encoder must exit with status 0 and the file must be a whole mp4 (its
top-level boxes span the file and include the ``moov`` index a player needs), so a full disk or a
crashed encoder raises VideoWriteError and leaves no file. Frames are padded by one replicated row
/ column to even sizes: h264 in yuv420p needs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import struct
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch

from holo3d.sample.input_checks import MissingDependencyError
from holo3d.io.atomic_file import open_atomic, temporary_sibling

logger = logging.getLogger(__name__)


class VideoWriteError(OSError):
    """The encoder failed or left an incomplete file (e.g. a full disk); nothing was kept."""


def video_backend() -> str:
    """The mp4 encoder available here: "imageio-ffmpeg" or "cv2"; MissingDependencyError if none.

    Called before any sampling starts, so a missing encoder costs nothing.
    """
    for module, name in (("imageio_ffmpeg", "imageio-ffmpeg"), ("cv2", "cv2")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise MissingDependencyError("no mp4 encoder here: install imageio-ffmpeg (or opencv-python-headless)")


def to_uint8_frames(frames: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """(T, 3, H, W) float in [0, 1], on any device -> (T, H', W', 3) uint8 on the CPU, with H', W'
    rounded up to even. Already converted (T, H, W, 3) uint8 arrays pass through."""
    if isinstance(frames, np.ndarray):
        return frames
    frames = frames.detach().float().clamp(0, 1)
    pad_h, pad_w = frames.shape[-2] % 2, frames.shape[-1] % 2
    if pad_h or pad_w:
        frames = torch.nn.functional.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")
    pixels = (frames * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)  # (T, H, W, 3)
    return pixels.cpu().numpy()  # converting first makes the device-to-host copy 4x smaller


class _FfmpegStream:
    """ffmpeg (imageio-ffmpeg's binary) fed raw RGB frames on stdin.

    Run directly rather than through ``imageio_ffmpeg.write_frames``, whose close ignores ffmpeg's
    exit status: a full disk then went unnoticed and a file without its index was kept.
    """

    def __init__(self, path: Path, size, fps: int):
        import imageio_ffmpeg

        self.path = path
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
            "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{size[1]}x{size[0]}", "-pix_fmt", "rgb24",
            "-r", str(fps), "-i", "-", "-an",
            "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10",  # imageio's quality 8
            str(path),
        ]
        # ffmpeg's messages go to a file, not a pipe: an unread pipe could fill and stall ffmpeg
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError) as error:
            self._process.wait()
            raise VideoWriteError(f"{self.path}: the encoder stopped ({error}): {self._messages()}") from error

    def close(self) -> None:
        try:
            self._process.stdin.close()
        except OSError:  # ffmpeg already exited; its status says why
            pass
        status = self._process.wait()
        if status != 0:
            raise VideoWriteError(f"{self.path}: ffmpeg exited with status {status}: {self._messages()}")

    def _messages(self) -> str:
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip()
        self._log.close()
        return text[-500:] or "(no message)"


class _OpenCVStream:
    def __init__(self, path: Path, size, fps: int):
        import cv2

        self._cv2 = cv2
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
        if not self._writer.isOpened():
            raise RuntimeError(f"OpenCV could not open {path} for writing")

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


class VideoWriter:
    """``with VideoWriter(path, fps) as video: video.append(frames)``; the file appears on exit.

    Args:
        path: the final .mp4 path.
        fps: frames per second.
        gif: also write ``path`` with a .gif suffix (kept in memory until closed).
    """

    def __init__(self, path: Path, fps: int = 25, gif: bool = False):
        self.path, self.fps, self.gif = Path(path), int(fps), gif
        self._tmp = temporary_sibling(self.path)
        self._stream = None
        self._gif_frames: List[np.ndarray] = []
        self.n_frames = 0
        self.written: List[Path] = []
        self.backend = video_backend()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, frames: Union[torch.Tensor, np.ndarray]) -> None:
        """Adds frames (T, 3, H, W) or one frame (3, H, W), float in [0, 1] (or ``to_uint8_frames``'
        output)."""
        pixels = to_uint8_frames(frames[None] if frames.ndim == 3 else frames)
        if self._stream is None:
            stream_cls = _FfmpegStream if self.backend == "imageio-ffmpeg" else _OpenCVStream
            self._stream = stream_cls(self._tmp, pixels.shape[1:3], self.fps)
        for frame in pixels:
            self._stream.write(frame)
        if self.gif:
            self._gif_frames.extend(pixels)
        self.n_frames += len(pixels)

    def close(self) -> List[Path]:
        """Finishes the files and moves them into place; returns the paths written."""
        if self._stream is None:
            raise ValueError(f"{self.path}: no frames were written")
        stream, self._stream = self._stream, None
        try:
            stream.close()
            check_mp4_complete(self._tmp)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        os.replace(self._tmp, self.path)
        self.written = [self.path]
        if self.gif:
            self.written.append(self._write_gif())
        return self.written

    def abort(self) -> None:
        """Drops everything written so far."""
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass
            self._stream = None
        self._tmp.unlink(missing_ok=True)

    def _write_gif(self) -> Path:
        from PIL import Image

        path = self.path.with_suffix(".gif")
        images = [Image.fromarray(frame) for frame in self._gif_frames]
        # GIF delays are in 1/100 s; below 2 cs browsers ignore them and play at 10 fps.
        duration_ms = max(20, round(1000 / max(1, self.fps)))
        with open_atomic(path) as stream:
            images[0].save(stream, format="GIF", save_all=True, append_images=images[1:],
                           duration=duration_ms, loop=0)
        self._gif_frames = []
        return path

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> Optional[bool]:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return None


def check_mp4_complete(path: Path) -> None:
    """VideoWriteError unless ``path`` is a whole mp4: its top-level boxes (ISO/IEC 14496-12,
    4.2: 32-bit size + 4-char type, size 1 -> 64-bit size follows, size 0 -> to the end) tile the
    file exactly and include ``ftyp`` and ``moov``. A truncated file (full disk, killed encoder)
    fails this. Written here, not with a media library: this is all the check needs."""
    size = path.stat().st_size if path.exists() else 0
    found, offset = [], 0
    with open(path, "rb") if size else contextlib.nullcontext() as stream:
        while offset < size:
            stream.seek(offset)
            header = stream.read(16)
            if len(header) < 8:
                break
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                break
            found.append(kind.decode("latin-1"))
            offset += box_size
    if size == 0 or offset != size or "ftyp" not in found or "moov" not in found:
        raise VideoWriteError(f"{path}: incomplete mp4 ({size} bytes, boxes {found}, index 'moov' "
                              f"{'present' if 'moov' in found else 'missing'}); disk full?")


def write_video(path: Path, frames, fps: int = 25, gif: bool = False) -> List[Path]:
    """Writes (T, 3, H, W) frames in [0, 1] as ``path`` (and a GIF beside it when asked)."""
    with VideoWriter(path, fps, gif) as video:
        video.append(frames)
    return video.written


class BackgroundVideoWriter:
    """Encodes whole videos on worker threads while the caller renders the next ones.

    Encoding runs in ffmpeg's own process (or OpenCV without the GIL), so threads overlap it with
    rendering. Frames are converted to uint8 on their device before they are handed over, and at
    most ``max_pending`` videos wait at once, which bounds the memory held.
    """

    def __init__(self, max_workers: int = 2, max_pending: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="video")
        self._pending: List[Future] = []
        self._max_pending = max_pending
        self.written: List[Path] = []

    def submit(self, path: Path, frames, fps: int = 25, gif: bool = False) -> None:
        pixels = to_uint8_frames(frames)
        self._pending.append(self._pool.submit(write_video, path, pixels, fps, gif))
        while len(self._pending) > self._max_pending:
            self.written += self._pending.pop(0).result()

    def wait(self) -> List[Path]:
        """Waits for every video; re-raises the first encoding error. Returns all paths written."""
        while self._pending:
            self.written += self._pending.pop(0).result()
        return self.written

    def __enter__(self) -> "BackgroundVideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            # On an error elsewhere, queued videos are dropped; running ones finish or clean up.
            self._pool.shutdown(wait=True, cancel_futures=True)
