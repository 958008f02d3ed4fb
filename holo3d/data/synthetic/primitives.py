"""Closed primitive solids (box, frustum, ellipsoid, torus) with a mesh and an exact inside test.

Every category is a union of these parts. Each part knows its own solid analytically, so the 64^3
occupancy grid of an object is the OR of exact per-part inside tests rather than a voxelisation of
a triangle soup. Meshes are built in a local frame (y is the part's axis) and moved to the world by
``world = local @ rotation.T + translation``. Faces wind counter-clockwise seen from outside, i.e.
``cross(v1 - v0, v2 - v0)`` points out of the solid, as PyTorch3D's shaders expect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
from pytorch3d.utils import ico_sphere, torus

from holo3d.data.synthetic.atlas import texel_positions
from holo3d.data.synthetic.patterns import Finish

KINDS = ("box", "frustum", "ellipsoid", "torus")


@dataclass
class Primitive:
    """One closed solid part of an object.

    Attributes:
        kind: one of KINDS.
        size: box: half extents (hx, hy, hz); frustum: (r_bottom, r_top, half_height) along y;
            ellipsoid: radii (rx, ry, rz); torus: (ring radius R, tube radius r) around the y axis.
        rotation: (3, 3) local-to-world rotation (column-vector convention).
        translation: (3,) world position of the local origin.
        finish: how the part is coloured (see patterns.Finish).
    """

    kind: str
    size: Tuple[float, ...]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    finish: Finish = field(default_factory=Finish)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown primitive kind {self.kind!r}; expected one of {KINDS}")
        self.rotation = np.asarray(self.rotation, dtype=np.float64)
        self.translation = np.asarray(self.translation, dtype=np.float64)

    def local_mesh(self) -> Tuple[np.ndarray, np.ndarray]:
        """(V, 3) float vertices and (F, 3) int faces in the part's local frame."""
        return _LOCAL_MESHES[self.kind](self.size)

    def world_mesh(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V, 3) world vertices, (F, 3) faces and (V, 3) RGB colours in [0, 1]."""
        local, faces = self.local_mesh()
        colours = self.finish.colour(local / np.maximum(self.extent(), 1e-6))
        return local @ self.rotation.T + self.translation, faces, colours

    def world_atlas(self, resolution: int) -> np.ndarray:
        """(F, R, R, 3) texture-atlas colours of the faces of ``local_mesh`` (see atlas.py)."""
        local, faces = self.local_mesh()
        texels = texel_positions(local, faces, resolution)  # (F, R, R, 3)
        colours = self.finish.colour(texels.reshape(-1, 3) / np.maximum(self.extent(), 1e-6))
        return colours.reshape(texels.shape)

    def extent(self) -> np.ndarray:
        """(3,) half extents of the part's local bounding box (used to normalise patterns)."""
        s = self.size
        if self.kind == "box":
            return np.array(s, dtype=np.float64)
        if self.kind == "frustum":
            r = max(s[0], s[1])
            return np.array([r, s[2], r])
        if self.kind == "ellipsoid":
            return np.array(s, dtype=np.float64)
        return np.array([s[0] + s[1], s[1], s[0] + s[1]])

    def world_bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        """(3,) low and high corners of a world box containing the solid."""
        corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
        world = (corners * self.extent()) @ self.rotation.T + self.translation  # (8, 3)
        return world.min(axis=0), world.max(axis=0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(P,) bool: which of the (P, 3) world points lie inside the solid."""
        local = (points - self.translation) @ self.rotation  # (P, 3), inverse of the rotation
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        s = self.size
        if self.kind == "box":
            return np.all(np.abs(local) <= np.asarray(s), axis=1)
        if self.kind == "frustum":
            t = np.clip((y + s[2]) / (2 * s[2]), 0.0, 1.0)
            radius = s[0] + (s[1] - s[0]) * t
            return (np.abs(y) <= s[2]) & (x * x + z * z <= radius * radius)
        if self.kind == "ellipsoid":
            return (local / np.asarray(s)) ** 2 @ np.ones(3) <= 1.0
        ring = np.sqrt(x * x + z * z) - s[0]
        return ring * ring + y * y <= s[1] * s[1]


def _grid_face(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """A unit square [-1, 1]^2 split into n x n quads: (n+1)^2 (u, v) points and 2 n^2 faces."""
    u, v = np.meshgrid(np.linspace(-1, 1, n + 1), np.linspace(-1, 1, n + 1), indexing="xy")
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return uv, faces  # faces wind counter-clockwise in (u, v), i.e. normal along u x v


def _box_mesh(size: Tuple[float, ...], n: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Six subdivided faces (vertices duplicated along edges so the edges stay sharp)."""
    uv, grid_faces = _grid_face(n)
    verts, faces = [], []
    for axis in range(3):
        u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3  # u x v = +axis (right-handed cycle)
        for sign in (1.0, -1.0):
            face = np.zeros((len(uv), 3))
            face[:, axis] = sign
            face[:, u_axis] = uv[:, 0]
            face[:, v_axis] = uv[:, 1] * sign  # flipping v flips the normal for the -axis face
            faces.append(grid_faces + sum(len(v) for v in verts))
            verts.append(face)
    return np.concatenate(verts) * np.asarray(size), np.concatenate(faces)


def _ring_strip(n_around: int, n_rows: int) -> np.ndarray:
    """Faces joining n_rows + 1 rings of n_around vertices (row-major). For rings running from +x
    towards +z and rows going up (+y) the normals point away from the axis."""
    faces = []
    for row in range(n_rows):
        for k in range(n_around):
            a, b = row * n_around + k, row * n_around + (k + 1) % n_around
            c, d = a + n_around, b + n_around
            faces += [(a, c, b), (b, c, d)]
    return np.array(faces)


def _frustum_mesh(size: Tuple[float, ...], segments: int = 20, rows: int = 2):
    """Side wall plus two capped discs (each cap has its own vertices for a sharp rim)."""
    r0, r1, hh = size
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(theta), np.zeros_like(theta), np.sin(theta)], 1)
    t = np.linspace(0, 1, rows + 1)[:, None, None]
    side = ring[None] * (r0 + (r1 - r0) * t) + np.array([0.0, 1.0, 0.0]) * (2 * t - 1) * hh
    verts, faces = [side.reshape(-1, 3)], [_ring_strip(segments, rows)]
    for y, r, up in ((-hh, r0, False), (hh, r1, True)):
        cap, cap_faces = _cap(ring, r, y, up)
        faces.append(cap_faces + sum(len(v) for v in verts))
        verts.append(cap)
    return np.concatenate(verts), np.concatenate(faces)


def _cap(ring: np.ndarray, radius: float, y: float, up: bool, rows: int = 1):
    """A disc of concentric rings around a centre vertex at height y; normal +y if up."""
    n = len(ring)
    radii = np.linspace(radius, 0.0, rows + 1)[:-1]
    verts = np.concatenate([ring * r + [0.0, y, 0.0] for r in radii] + [[[0.0, y, 0.0]]])
    faces = [tuple(f) for f in _ring_strip(n, rows - 1)] if rows > 1 else []
    centre, last = len(verts) - 1, (rows - 1) * n
    faces += [(last + k, centre, last + (k + 1) % n) for k in range(n)]
    faces = np.array(faces)
    # with rings running outside-in the strip as built faces +y; the bottom cap is flipped
    return verts, faces if up else faces[:, ::-1].copy()


def _ellipsoid_mesh(size: Tuple[float, ...], level: int = 2):
    sphere = ico_sphere(level)
    return sphere.verts_packed().numpy().astype(np.float64) * np.asarray(size), sphere.faces_packed().numpy()


def _torus_mesh(size: Tuple[float, ...], sides: int = 8, rings: int = 20):
    mesh = torus(float(size[1]), float(size[0]), sides, rings)
    verts = mesh.verts_packed().numpy().astype(np.float64)
    # PyTorch3D's torus has its axis along z; swap to y (x, y, z) -> (x, z, -y) keeps handedness
    verts = np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1)
    return verts, mesh.faces_packed().numpy()


_LOCAL_MESHES = {
    "box": _box_mesh,
    "frustum": _frustum_mesh,
    "ellipsoid": _ellipsoid_mesh,
    "torus": _torus_mesh,
}


def rotation_about(axis: str, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the world x, y or z axis."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot
