"""Legs and supports shared by furniture categories (chairs, tables)."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.parts import box, cylinder
from holo3d.data.synthetic.patterns import Finish
from holo3d.data.synthetic.primitives import Primitive

LEG_STYLES = ("square", "round", "tapered")


def leg(style: str, x: float, z: float, top: float, thickness: float, finish: Finish) -> Primitive:
    """A vertical leg standing on y = 0 and reaching up to y = top, centred at (x, z)."""
    half = top / 2
    if style == "square":
        return box((thickness, half, thickness), (x, half, z), finish)
    bottom = thickness * (0.55 if style == "tapered" else 1.0)
    return cylinder(bottom, thickness, half, (x, half, z), finish)


def corner_legs(
    style: str, half_w: float, half_d: float, inset: float, top: float, thickness: float, finish: Finish
) -> List[Primitive]:
    """Four legs at the corners of a (2 half_w) x (2 half_d) rectangle, moved ``inset`` inwards."""
    xs = (-half_w + inset, half_w - inset)
    zs = (-half_d + inset, half_d - inset)
    return [leg(style, x, z, top, thickness, finish) for x in xs for z in zs]


def pedestal(top: float, column: float, base_radius: float, finish: Finish) -> List[Primitive]:
    """A central column on a flat round foot, reaching up to y = top."""
    foot_h = 0.03 + 0.02 * column / 0.1
    return [
        cylinder(base_radius, base_radius * 0.8, foot_h / 2, (0, foot_h / 2, 0), finish),
        cylinder(column, column, top / 2, (0, top / 2, 0), finish),
    ]


def random_leg_style(rng: np.random.Generator) -> str:
    return str(rng.choice(LEG_STYLES))
