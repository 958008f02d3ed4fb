"""Mugs: a (possibly tapered) cylindrical body with a dark liquid surface, a rim and a handle."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.parts import box, cylinder, ring
from holo3d.data.synthetic.patterns import Finish, random_finish
from holo3d.data.synthetic.primitives import Primitive, rotation_about

BODY_PATTERNS = ("solid", "stripes", "dots", "rings", "checker", "gradient")


def build(rng: np.random.Generator) -> List[Primitive]:
    r_bottom = rng.uniform(0.32, 0.5)
    r_top = r_bottom * rng.uniform(0.85, 1.25)
    half_h = rng.uniform(0.35, 0.65)
    body = random_finish(rng, patterns=BODY_PATTERNS)
    liquid = Finish(primary=np.array([0.25, 0.13, 0.05]) * rng.uniform(0.6, 1.4), pattern="solid")
    rim = rng.uniform(0.015, 0.035)
    parts = [
        cylinder(r_bottom, r_top, half_h, (0, half_h, 0), body),
        cylinder(r_top - rim, r_top - rim, 0.01, (0, 2 * half_h + 0.005, 0), liquid),
        ring(r_top - rim, rim, (0, 2 * half_h, 0), body),
    ]
    return parts + _handle(rng, (r_bottom + r_top) / 2, half_h, body)


def _handle(rng, side: float, half_h: float, body: Finish) -> List[Primitive]:
    finish = body if rng.random() < 0.6 else random_finish(rng, patterns=("solid",))
    radius = half_h * rng.uniform(0.45, 0.7)
    tube = rng.uniform(0.035, 0.07)
    y = half_h * 1.05
    if rng.random() < 0.75:
        # a torus standing in the xy plane, partly sunk into the body's side
        return [ring(radius, tube, (side + radius * 0.35, y, 0), finish, rotation_about("x", np.pi / 2))]
    reach = radius * 1.2
    return [
        box((reach / 2, tube, tube), (side + reach / 2, y + radius, 0), finish),
        box((reach / 2, tube, tube), (side + reach / 2, y - radius, 0), finish),
        box((tube, radius + tube, tube), (side + reach, y, 0), finish),
    ]
