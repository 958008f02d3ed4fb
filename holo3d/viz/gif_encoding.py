"""Short clips as animated GIF bytes: the one video format that every browser, visdom's HTML panes
and TensorBoard's image tab show without ffmpeg, OpenCV or moviepy (the GPU hosts have none)."""

from __future__ import annotations

import io

import torch


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``(T, 1|3, H, W)`` float in [0, 1] on any device -> ``(T, H, W, 3)`` uint8 on the CPU."""
    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"expected frames (T, 1|3, H, W), got shape {tuple(frames.shape)}")
    frames = frames.detach().float().cpu().clamp(0, 1)
    frames = frames.expand(-1, 3, -1, -1)
    return (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def encode_gif(frames: torch.Tensor, fps: int = 15) -> bytes:
    """Encodes a looping animated GIF from ``frames (T, 1|3, H, W)`` float in [0, 1], or from the
    ``(T, H, W, 3)`` uint8 that ``frames_to_uint8`` makes (4x smaller to keep in a queue)."""
    from PIL import Image

    pixels = (frames if frames.dtype == torch.uint8 else frames_to_uint8(frames)).cpu().numpy()
    images = [Image.fromarray(frame) for frame in pixels]
    buffer = io.BytesIO()
    # GIF stores delays in 1/100 s; below 2 cs browsers ignore the delay and play at 10 fps.
    duration_ms = max(20, round(1000 / max(1, fps)))
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration_ms, loop=0, optimize=False)
    return buffer.getvalue()
