"""The interface the training loop logs through (visdom, TensorBoard, or nothing).

Loggers never raise into the training loop and never block it: an implementation that talks to a
server posts asynchronously or with a time limit and degrades to a single warning when the server
is gone.
"""

from __future__ import annotations

from typing import Dict

import torch


class ExperimentLogger:
    """Base class: every method is a no-op, so this is also the null logger."""

    def log_scalars(self, step: int, scalars: Dict[str, float], split: str = "train") -> None:
        """One point per named curve; ``split`` is "train" or "val" (curves of both share a plot)."""

    def log_images(self, step: int, images: Dict[str, torch.Tensor]) -> None:
        """Named images, each (3, H, W) or (1, H, W) float in [0, 1] on any device."""

    def log_video(self, step: int, name: str, frames: torch.Tensor, fps: int = 15) -> None:
        """A short clip: frames (T, 3, H, W) float in [0, 1]."""

    def close(self) -> None:
        """Flushes pending posts (bounded time) and releases resources."""
