"""Procedural object categories: each module builds one random object as a list of Primitives.

A builder takes a ``numpy.random.Generator`` and returns parts in arbitrary units with +y up and the
object's front facing +z; ``holo3d.data.synthetic.shape`` centres and scales the result.
"""

from typing import Callable, Dict, List

import numpy as np

from holo3d.data.synthetic.categories import car, chair, lamp, mug, table
from holo3d.data.synthetic.primitives import Primitive

Builder = Callable[[np.random.Generator], List[Primitive]]

CATEGORIES: Dict[str, Builder] = {
    "car": car.build,
    "chair": chair.build,
    "lamp": lamp.build,
    "mug": mug.build,
    "table": table.build,
}


def get_builder(category: str) -> Builder:
    """The builder of a category; the error lists the known ones."""
    if category not in CATEGORIES:
        raise ValueError(
            f"unknown synthetic category {category!r}; built-in categories: {sorted(CATEGORIES)}"
        )
    return CATEGORIES[category]
