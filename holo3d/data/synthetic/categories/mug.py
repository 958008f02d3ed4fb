"""Mugs: a (possibly tapered) cylindrical body with a dark liquid surface, a rim and a handle."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.patterns import Finish, random_finish
from holo3d.data.synthetic.primitives import Primitive, rotation_about


def build(rng: np.random.Generator) -> List[Primitive]:
    r_bottom = rng.uniform(0.32, 0.5)
    r_top = r_bottom * rng.uniform(0.85, 1.25)
    half_h = rng.uniform(0.35, 0.65)
    body = random_finish(rng, patterns=("solid", "stripes", "dots", "rings", "checker", "gradient"))
    liquid = Finish(primary=np.array([0.25, 0.13, 0.05]) * rng.uniform(0.6, 1.4), pattern="solid")
    rim_tube = rng.uniform(0.015, 0.035)
    parts = [
        Primitive("frustum", (r_bottom, r_top, half_h), translation=[0, half_h, 0], finish=body),
        Primitive("frustum", (r_top - rim_tube, r_top - rim_tube, 0.01), translation=[0, 2 * half_h + 0.005, 0], finish=liquid),
        Primitive("torus", (r_top - rim_tube, rim_tube), translation=[0, 2 * half_h, 0], finish=body),
    ]
    return parts + _handle(rng, r_bottom, r_top, half_h, body)


def _handle(rng, r_bottom, r_top, half_h, body) -> List[Primitive]:
    handle_finish = body if rng.random() < 0.6 else random_finish(rng, patterns=("solid",))
    ring = half_h * rng.uniform(0.45, 0.7)
    tube = rng.uniform(0.035, 0.07)
    side = (r_bottom + r_top) / 2
    if rng.random() < 0.75:
        # a torus whose ring stands in the xy plane, half sunk into the body's side
        return [Primitive("torus", (ring, tube), rotation=rotation_about("x", np.pi / 2), translation=[side + ring * 0.35, half_h * 1.05, 0], finish=handle_finish)]
    reach = ring * 1.2
    return [
        Primitive("box", (reach / 2, tube, tube), translation=[side + reach / 2, half_h * 1.05 + ring, 0], finish=handle_finish),
        Primitive("box", (reach / 2, tube, tube), translation=[side + reach / 2, half_h * 1.05 - ring, 0], finish=handle_finish),
        Primitive("box", (tube, ring + tube, tube), translation=[side + reach, half_h * 1.05, 0], finish=handle_finish),
    ]
