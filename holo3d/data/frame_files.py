"""Finds which file of a frame is missing or unreadable, so a skipped frame's warning can name it."""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from PIL import Image
from pytorch3d.implicitron.dataset import types


def frame_files(annotation: types.FrameAnnotation, dataset_root: str) -> List[str]:
    """Absolute paths of the image, mask, depth and depth-mask files a frame refers to."""
    relative = [annotation.image.path if annotation.image else None]
    if annotation.mask is not None:
        relative.append(annotation.mask.path)
    if annotation.depth is not None:
        relative += [annotation.depth.path, annotation.depth.mask_path]
    return [os.path.join(dataset_root, p) for p in relative if p]


def find_bad_file(annotation: types.FrameAnnotation, dataset_root: str) -> Optional[Tuple[str, str]]:
    """(path, reason) of the first file of the frame that is missing or does not decode, or None."""
    for path in frame_files(annotation, dataset_root):
        if not os.path.isfile(path):
            return path, "file is missing"
        try:
            with Image.open(path) as image:
                image.load()  # decodes the pixels, so truncated files fail here too
        except (OSError, SyntaxError, ValueError) as error:
            return path, f"cannot decode: {error}"
    return None
