"""Per-face texture atlases, so that low-polygon parts still show fine colour patterns.

PyTorch3D's ``TexturesAtlas`` gives every face an R x R grid of texels and picks one from the
barycentric coordinates (w0, w1) of a pixel: the cell (floor(R w0), floor(R w1)) when the point lies
in the cell's lower-left half, and the mirrored index (R-1-i, R-1-j) of the cell when it lies in its
upper-right half. So texel (ix, iy) covers a small triangle whose centroid is
((ix + 1/3) / R, (iy + 1/3) / R) if ix + iy < R, and ((R-1-ix + 2/3) / R, (R-1-iy + 2/3) / R)
otherwise. Colouring each texel at that centroid's 3D position paints the pattern onto the face.
"""

from __future__ import annotations

import numpy as np


def texel_barycentrics(resolution: int) -> np.ndarray:
    """(R, R, 3) barycentric coordinates of the texel centroids, indexed [iy, ix]."""
    r = resolution
    iy, ix = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
    lower = ix + iy < r
    w0 = np.where(lower, ix + 1 / 3, r - 1 - ix + 2 / 3) / r
    w1 = np.where(lower, iy + 1 / 3, r - 1 - iy + 2 / 3) / r
    return np.stack([w0, w1, 1.0 - w0 - w1], axis=-1)


def texel_positions(verts: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """(F, R, R, 3) positions of every face's texel centroids, for (V, 3) verts, (F, 3) faces."""
    bary = texel_barycentrics(resolution)  # (R, R, 3)
    return np.einsum("yxk,fkc->fyxc", bary, verts[faces])
