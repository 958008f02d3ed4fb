"""Cars: a body box on four (or six) wheels with a cabin (sedan, hatchback or pickup) and lights."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.parts import box, cylinder, ellipsoid
from holo3d.data.synthetic.patterns import Finish, random_finish
from holo3d.data.synthetic.primitives import Primitive, rotation_about

PAINT_PATTERNS = ("solid", "solid", "stripes", "gradient", "checker")
LAMP = Finish(primary=np.array([1.0, 0.95, 0.7]), pattern="solid")
GLASS = Finish(primary=np.array([0.15, 0.2, 0.28]), secondary=np.array([0.35, 0.45, 0.55]), pattern="gradient")
TYRE = Finish(primary=np.full(3, 0.08), secondary=np.array([0.55, 0.55, 0.6]), pattern="rings", frequency=2.0)
CABIN_LENGTH = {"sedan": (0.45, 0.6), "hatchback": (0.55, 0.7), "pickup": (0.3, 0.4)}  # of the half length


def build(rng: np.random.Generator) -> List[Primitive]:
    half_l, half_w = rng.uniform(0.8, 1.15), rng.uniform(0.35, 0.48)
    body_h = rng.uniform(0.14, 0.24)
    wheel_r = rng.uniform(0.14, 0.22)
    paint = random_finish(rng, patterns=PAINT_PATTERNS)
    body_y = wheel_r + body_h * 0.6
    parts = [box((half_l, body_h, half_w), (0, body_y, 0), paint)]
    parts += _cabin(rng, half_l, half_w, body_y + body_h, paint)
    parts += _wheels(rng, half_l, half_w, wheel_r)
    for z in (-half_w * 0.65, half_w * 0.65):
        parts.append(ellipsoid((0.03, 0.05, 0.08), (half_l, body_y + body_h * 0.3, z), LAMP))
    return parts


def _cabin(rng, half_l, half_w, base_y, paint) -> List[Primitive]:
    style = str(rng.choice(list(CABIN_LENGTH)))
    cabin_l = half_l * rng.uniform(*CABIN_LENGTH[style])
    cabin_h = rng.uniform(0.12, 0.2)
    offset = {
        "sedan": rng.uniform(-0.15, 0.05),
        "hatchback": -half_l + cabin_l + 0.05,
        "pickup": half_l - cabin_l - 0.1,
    }[style]
    finish = paint if rng.random() < 0.5 else GLASS
    half = (cabin_l, cabin_h, half_w * rng.uniform(0.8, 0.95))
    return [box(half, (offset, base_y + cabin_h, 0), finish)]


def _wheels(rng, half_l, half_w, radius) -> List[Primitive]:
    n_axles = 3 if rng.random() < 0.15 else 2
    width = rng.uniform(0.06, 0.1)
    axle = rotation_about("x", np.pi / 2)  # the cylinder's y axis onto z: wheels roll along x
    return [
        cylinder(radius, radius, width, (x, radius, side * (half_w - width * 0.5)), TYRE, axle)
        for x in np.linspace(-half_l * 0.7, half_l * 0.7, n_axles)
        for side in (-1.0, 1.0)
    ]
