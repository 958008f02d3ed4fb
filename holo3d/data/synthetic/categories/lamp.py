"""Lamps: a round or square foot, a straight or bent pole, a conical or globe shade over a bulb."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.parts import box, cylinder, ellipsoid
from holo3d.data.synthetic.patterns import Finish, random_finish
from holo3d.data.synthetic.primitives import Primitive, rotation_about

SHADE_PATTERNS = ("solid", "stripes", "dots", "checker", "gradient")
BULB = Finish(primary=np.array([1.0, 0.95, 0.6]), pattern="solid")


def build(rng: np.random.Generator) -> List[Primitive]:
    metal = random_finish(rng, patterns=("solid", "gradient"))
    foot_h = rng.uniform(0.03, 0.08)
    if rng.random() < 0.7:
        radius = rng.uniform(0.25, 0.45)
        parts = [cylinder(radius, radius * rng.uniform(0.6, 1.0), foot_h, (0, foot_h, 0), metal)]
    else:
        half = rng.uniform(0.2, 0.35)
        parts = [box((half, foot_h, half), (0, foot_h, 0), metal)]
    pole_r = rng.uniform(0.02, 0.045)
    pole_h = rng.uniform(0.9, 1.6)
    parts.append(cylinder(pole_r, pole_r, pole_h / 2, (0, 2 * foot_h + pole_h / 2, 0), metal))
    top = np.array([0.0, 2 * foot_h + pole_h, 0.0])
    if rng.random() < 0.4:
        arm, top = _arm(rng, top, pole_r, metal)
        parts += arm
    return parts + _shade(rng, top)


def _arm(rng, start: np.ndarray, pole_r: float, metal: Finish):
    """A second pole segment tilted towards +x; returns its parts and its far end."""
    angle = rng.uniform(0.4, 1.0)
    length = rng.uniform(0.35, 0.7)
    direction = np.array([np.sin(angle), np.cos(angle), 0.0])
    tilt = rotation_about("z", -angle)
    arm = cylinder(pole_r, pole_r, length / 2, start + direction * length / 2, metal, tilt)
    joint = ellipsoid((pole_r * 1.8,) * 3, start, metal)
    return [arm, joint], start + direction * length


def _shade(rng, top: np.ndarray) -> List[Primitive]:
    shade = random_finish(rng, patterns=SHADE_PATTERNS)
    if rng.random() < 0.7:
        half_h = rng.uniform(0.15, 0.3)
        r_bottom = rng.uniform(0.28, 0.5)
        centre = top + [0.0, half_h * 0.4, 0.0]
        return [
            cylinder(r_bottom, r_bottom * rng.uniform(0.4, 0.8), half_h, centre, shade),
            ellipsoid((0.09, 0.11, 0.09), centre - [0.0, half_h * 0.95, 0.0], BULB),
        ]
    radius = rng.uniform(0.18, 0.32)
    radii = (radius, radius * rng.uniform(0.8, 1.1), radius)
    return [ellipsoid(radii, top + [0.0, radius * 0.8, 0.0], shade)]
