"""The progressive-sampling animation: the sampler's current x0 estimate, rendered every k steps while
the camera moves one turntable position per frame.

Used as the sampler's ``callback(i, x, x0)``. Frames are taken after steps k-1, 2k-1, ... and after
the last step, so a chain of N steps gives ceil(N / k) frames and always ends on the final sample
(the original code stopped after a fixed number of frames, 300 of 1000 steps). Each sample's frames
stream straight into its video, so long chains cost no memory.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from pytorch3d.renderer.cameras import CamerasBase

from holo3d.models.protocol import RenderableModel
from holo3d.sample.frame_renderer import resize_frames
from holo3d.sample.video_writer import VideoWriter


class ProgressiveRenderer:
    """Sampler callback writing one frame per ``every`` steps into one video per sample.

    Args:
        model: a model of the protocol (``render_samples``).
        writers: one open VideoWriter per sample in the batch.
        cameras: the turntable; frame j is seen from camera j mod len(cameras) (None: image models).
        image_size / video_size: render size and written size, (H, W).
        every: k, steps per rendered frame.
        chunk_size: rays per rendering pass.
    """

    def __init__(
        self,
        model: RenderableModel,
        writers: List[VideoWriter],
        cameras: Optional[CamerasBase],
        image_size: Sequence[int],
        video_size: Sequence[int],
        every: int,
        chunk_size: int,
        progress=None,
    ):
        if every < 1:
            raise ValueError(f"progressive_sampling_steps_per_render={every} must be >= 1")
        self.model, self.writers, self.cameras = model, writers, cameras
        self.image_size, self.video_size = tuple(image_size), tuple(video_size)
        self.every, self.chunk_size, self.progress = every, chunk_size, progress
        self.n_frames = 0
        self.n_steps = 0
        self._pending: Optional[torch.Tensor] = None  # x0 of the last step when not yet rendered

    def __call__(self, step: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        """x, x0: (B, ...) samples after sampler step ``step`` (0-based)."""
        self.n_steps = step + 1
        if (step + 1) % self.every == 0:
            self._render(x0)
            self._pending = None
        else:
            self._pending = x0
        if self.progress is not None:
            self.progress.update(1)

    def finish(self) -> int:
        """Renders the last step when the chain length is not a multiple of k; returns the frames."""
        if self._pending is not None:
            self._render(self._pending)
            self._pending = None
        return self.n_frames

    @torch.no_grad()
    def _render(self, x0: torch.Tensor) -> None:
        n = x0.shape[0]
        cameras = None
        if self.cameras is not None:
            cameras = self.cameras[[self.n_frames % len(self.cameras)] * n]
        out = self.model.render_samples(x0, cameras, self.image_size, self.chunk_size)  # rgb (B, 1, 3, H, W)
        frames = resize_frames(out["rgb"][:, 0].float(), self.video_size)  # (B, 3, h, w)
        for writer, frame in zip(self.writers, frames):
            writer.append(frame)
        self.n_frames += 1
