"""Contact sheets: one PNG with a row per sample and a column per fixed view, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from holo3d.io.atomic_file import open_atomic

_GAP = 4  # white pixels between tiles


def sheet_view_indices(n_frames: int, n_views: int) -> list:
    """Turntable frame indices of ``n_views`` evenly spaced azimuths (the sheet's columns)."""
    n_views = max(1, min(n_views, n_frames))
    return [round(j * n_frames / n_views) % n_frames for j in range(n_views)]


def compose_sheet(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Rows of views, each (V, 3, H, W) in [0, 1] -> one (3, H', W') image on a white background."""
    n_rows, (n_views, _, h, w) = len(rows), rows[0].shape
    sheet = torch.ones(3, n_rows * (h + _GAP) + _GAP, n_views * (w + _GAP) + _GAP)
    for r, views in enumerate(rows):
        for c, view in enumerate(views):
            top, left = _GAP + r * (h + _GAP), _GAP + c * (w + _GAP)
            sheet[:, top : top + h, left : left + w] = view.float().cpu().clamp(0, 1)
    return sheet


def write_png(path: Path, image: torch.Tensor) -> Path:
    """Writes (3, H, W) in [0, 1] as an 8-bit PNG through a temporary file."""
    from PIL import Image

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    with open_atomic(Path(path)) as stream:
        stream.write(buffer.getvalue())
    return Path(path)
