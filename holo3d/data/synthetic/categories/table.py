"""Tables: a rectangular or round top on four legs, a pedestal or two slab trestles; maybe a shelf."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.legs import corner_legs, pedestal, random_leg_style
from holo3d.data.synthetic.categories.parts import box, cylinder
from holo3d.data.synthetic.patterns import random_finish
from holo3d.data.synthetic.primitives import Primitive


def build(rng: np.random.Generator) -> List[Primitive]:
    height = rng.uniform(0.6, 1.0)
    top_t = rng.uniform(0.025, 0.06)
    top_finish = random_finish(rng)
    leg_finish = random_finish(rng, patterns=("solid", "gradient"))
    round_top = rng.random() < 0.3
    if round_top:
        radius = rng.uniform(0.6, 0.9)
        half_w = half_d = radius * 0.7
        top = cylinder(radius, radius, top_t, (0, height, 0), top_finish)
    else:
        half_w, half_d = rng.uniform(0.6, 1.1), rng.uniform(0.35, 0.7)
        top = box((half_w, top_t, half_d), (0, height, 0), top_finish)
    thickness = rng.uniform(0.03, 0.08)
    support = rng.choice(["legs", "legs", "pedestal", "trestle"])
    leg_top = height - top_t
    if support == "pedestal" or (round_top and rng.random() < 0.5):
        legs = pedestal(leg_top, thickness * 1.5, min(half_w, half_d) * 0.9, leg_finish)
    elif support == "trestle":
        slab = (thickness, leg_top / 2, half_d * 0.85)
        legs = [box(slab, (x, leg_top / 2, 0), leg_finish) for x in (-half_w * 0.8, half_w * 0.8)]
    else:
        style = random_leg_style(rng)
        legs = corner_legs(style, half_w, half_d, thickness * 1.5, leg_top, thickness, leg_finish)
    parts = [top] + legs
    if support != "pedestal" and not round_top and rng.random() < 0.35:
        shelf = (half_w * 0.85, top_t * 0.7, half_d * 0.85)
        parts.append(box(shelf, (0, height * rng.uniform(0.2, 0.4), 0), top_finish))
    return parts
