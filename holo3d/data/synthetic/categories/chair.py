"""Chairs: a seat on four legs or a pedestal, a backrest (solid, slats or rails), optional arms."""

from __future__ import annotations

from typing import List

import numpy as np

from holo3d.data.synthetic.categories.legs import corner_legs, pedestal, random_leg_style
from holo3d.data.synthetic.categories.parts import box
from holo3d.data.synthetic.patterns import random_finish
from holo3d.data.synthetic.primitives import Primitive

WOOD_HUES = (0.04, 0.12)


def build(rng: np.random.Generator) -> List[Primitive]:
    half_w, half_d = rng.uniform(0.38, 0.6), rng.uniform(0.36, 0.55)
    seat_t = rng.uniform(0.03, 0.07)
    seat_y = rng.uniform(0.75, 1.1)
    wooden = rng.random() < 0.6
    frame = random_finish(rng, hue=WOOD_HUES if wooden else None, patterns=("solid", "gradient", "stripes"))
    cushion = random_finish(rng)
    parts = [box((half_w, seat_t, half_d), (0, seat_y, 0), cushion)]
    thickness = rng.uniform(0.03, 0.07)
    if rng.random() < 0.2:
        parts += pedestal(seat_y - seat_t, thickness * 1.3, half_w * 0.8, frame)
    else:
        inset = thickness + rng.uniform(0.0, 0.06)
        style = random_leg_style(rng)
        parts += corner_legs(style, half_w, half_d, inset, seat_y - seat_t, thickness, frame)
    back_h = rng.uniform(0.6, 1.2)
    parts += _backrest(rng, half_w, half_d, seat_y + seat_t, back_h, thickness, frame, cushion)
    if rng.random() < 0.35:
        parts += _arms(rng, half_w, half_d, seat_y + seat_t, thickness, frame)
    return parts


def _backrest(rng, half_w, half_d, base_y, height, thickness, frame, cushion) -> List[Primitive]:
    z, mid_y = -half_d + thickness, base_y + height / 2
    style = rng.choice(["solid", "slats", "rails"])
    if style == "solid":
        return [box((half_w, height / 2, rng.uniform(0.025, 0.06)), (0, mid_y, z), cushion)]
    post = (thickness, height / 2, thickness)
    posts = [box(post, (x, mid_y, z), frame) for x in (-half_w + thickness, half_w - thickness)]
    rail = box((half_w, 0.05, thickness), (0, base_y + height - 0.05, z), frame)
    n = int(rng.integers(2, 6))
    if style == "slats":
        bar = (thickness * 0.6, height / 2, thickness * 0.6)
        bars = [box(bar, (x, mid_y, z), frame) for x in np.linspace(-half_w, half_w, n + 2)[1:-1]]
    else:
        bar = (half_w, 0.025, thickness * 0.7)
        bars = [box(bar, (0, y, z), cushion) for y in np.linspace(base_y, base_y + height, n + 1)[1:-1]]
    return posts + [rail] + bars


def _arms(rng, half_w, half_d, base_y, thickness, frame) -> List[Primitive]:
    height = rng.uniform(0.2, 0.35)
    parts = []
    for x in (-half_w, half_w):
        parts.append(box((thickness, height / 2, thickness), (x, base_y + height / 2, half_d * 0.6), frame))
        parts.append(box((thickness * 1.4, thickness * 0.7, half_d * 0.9), (x, base_y + height, 0), frame))
    return parts
