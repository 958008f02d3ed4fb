"""Short constructors for the primitives categories are built from (y up, front towards +z)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from holo3d.data.synthetic.patterns import Finish
from holo3d.data.synthetic.primitives import Primitive


def box(half: Sequence[float], at: Sequence[float], finish: Finish, rotation=None) -> Primitive:
    """A box with half extents (hx, hy, hz) centred at ``at``."""
    return Primitive("box", tuple(half), _rotation(rotation), _point(at), finish)


def cylinder(
    r_bottom: float, r_top: float, half_height: float, at: Sequence[float], finish: Finish, rotation=None
) -> Primitive:
    """A capped (possibly tapered) cylinder along y, centred at ``at``."""
    return Primitive("frustum", (r_bottom, r_top, half_height), _rotation(rotation), _point(at), finish)


def ellipsoid(radii: Sequence[float], at: Sequence[float], finish: Finish) -> Primitive:
    return Primitive("ellipsoid", tuple(radii), np.eye(3), _point(at), finish)


def ring(radius: float, tube: float, at: Sequence[float], finish: Finish, rotation=None) -> Primitive:
    """A torus around the y axis (before ``rotation``)."""
    return Primitive("torus", (radius, tube), _rotation(rotation), _point(at), finish)


def _rotation(rotation: Optional[np.ndarray]) -> np.ndarray:
    return np.eye(3) if rotation is None else rotation


def _point(at: Sequence[float]) -> np.ndarray:
    return np.asarray(at, dtype=float)
