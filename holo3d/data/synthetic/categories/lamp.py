"""Lamps: a round or square foot, a straight or bent pole, a conical or globe shade over a bulb."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.patterns import Finish, random_finish
from holo3d.data.synthetic.primitives import Primitive, rotation_about


def build(rng: np.random.Generator) -> List[Primitive]:
    metal = random_finish(rng, patterns=("solid", "gradient"))
    foot_h = rng.uniform(0.03, 0.08)
    if rng.random() < 0.7:
        radius = rng.uniform(0.25, 0.45)
        parts = [Primitive("frustum", (radius, radius * rng.uniform(0.6, 1.0), foot_h), translation=[0, foot_h, 0], finish=metal)]
    else:
        half = rng.uniform(0.2, 0.35)
        parts = [Primitive("box", (half, foot_h, half), translation=[0, foot_h, 0], finish=metal)]
    pole_r = rng.uniform(0.02, 0.045)
    pole_h = rng.uniform(0.9, 1.6)
    parts.append(Primitive("frustum", (pole_r, pole_r, pole_h / 2), translation=[0, 2 * foot_h + pole_h / 2, 0], finish=metal))
    top = np.array([0.0, 2 * foot_h + pole_h, 0.0])
    if rng.random() < 0.4:
        parts_arm, top = _arm(rng, top, pole_r, metal)
        parts += parts_arm
    return parts + _shade(rng, top)


def _arm(rng, start: np.ndarray, pole_r: float, metal: Finish):
    """A second pole segment tilted towards +x; returns its parts and its far end."""
    angle = rng.uniform(0.4, 1.0)
    length = rng.uniform(0.35, 0.7)
    direction = np.array([np.sin(angle), np.cos(angle), 0.0])
    centre = start + direction * length / 2
    arm = Primitive("frustum", (pole_r, pole_r, length / 2), rotation=rotation_about("z", -angle), translation=centre, finish=metal)
    joint = Primitive("ellipsoid", (pole_r * 1.8,) * 3, translation=start, finish=metal)
    return [arm, joint], start + direction * length


def _shade(rng, top: np.ndarray) -> List[Primitive]:
    shade = random_finish(rng, patterns=("solid", "stripes", "dots", "checker", "gradient"))
    bulb = Finish(primary=np.array([1.0, 0.95, 0.6]), pattern="solid")
    if rng.random() < 0.7:
        half_h = rng.uniform(0.15, 0.3)
        r_bottom = rng.uniform(0.28, 0.5)
        r_top = r_bottom * rng.uniform(0.4, 0.8)
        centre = top + [0.0, half_h * 0.4, 0.0]
        return [
            Primitive("frustum", (r_bottom, r_top, half_h), translation=centre, finish=shade),
            Primitive("ellipsoid", (0.09, 0.11, 0.09), translation=centre - [0.0, half_h * 0.95, 0.0], finish=bulb),
        ]
    radius = rng.uniform(0.18, 0.32)
    return [Primitive("ellipsoid", (radius, radius * rng.uniform(0.8, 1.1), radius), translation=top + [0.0, radius * 0.8, 0.0], finish=shade)]
