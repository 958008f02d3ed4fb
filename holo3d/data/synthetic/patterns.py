"""Per-vertex colour patterns, so that views of an object carry information beyond its silhouette.

A ``Finish`` maps vertex positions in a part's local frame, normalised by the part's half extents to
roughly [-1, 1]^3, to RGB colours. Patterns are periodic functions of position (stripes, checkers,
dots, rings) or smooth ramps, mixing a primary and a secondary colour.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

PATTERNS = ("solid", "stripes", "checker", "dots", "rings", "gradient")


@dataclass
class Finish:
    """How a part is coloured.

    Attributes:
        primary, secondary: RGB in [0, 1].
        pattern: one of PATTERNS.
        axis: 0, 1 or 2, the local axis stripes / gradients run along.
        frequency: pattern periods across the part (about 2 units of normalised position).
        phase: pattern offset in periods.
    """

    primary: np.ndarray = field(default_factory=lambda: np.array([0.7, 0.7, 0.7]))
    secondary: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.3, 0.3]))
    pattern: str = "solid"
    axis: int = 1
    frequency: float = 2.0
    phase: float = 0.0

    def colour(self, p: np.ndarray) -> np.ndarray:
        """(V, 3) RGB for (V, 3) normalised local positions."""
        mix = _PATTERN_FNS[self.pattern](self, p)[:, None]  # (V, 1) in [0, 1]
        return np.clip(self.primary * (1 - mix) + self.secondary * mix, 0.0, 1.0)


def _stripes(f: Finish, p: np.ndarray) -> np.ndarray:
    return (np.floor(p[:, f.axis] * f.frequency + f.phase) % 2).astype(np.float64)


def _checker(f: Finish, p: np.ndarray) -> np.ndarray:
    cells = np.floor(p * f.frequency + f.phase).sum(axis=1)
    return (cells % 2).astype(np.float64)


def _dots(f: Finish, p: np.ndarray) -> np.ndarray:
    cell = p * f.frequency + f.phase
    offset = cell - np.round(cell)  # distance to the nearest lattice point, per axis
    return (np.linalg.norm(offset, axis=1) < 0.3).astype(np.float64)


def _rings(f: Finish, p: np.ndarray) -> np.ndarray:
    others = [a for a in range(3) if a != f.axis]
    radius = np.linalg.norm(p[:, others], axis=1)
    return (np.floor(radius * f.frequency * 1.5 + f.phase) % 2).astype(np.float64)


def _gradient(f: Finish, p: np.ndarray) -> np.ndarray:
    return np.clip(0.5 + 0.5 * p[:, f.axis], 0.0, 1.0)


_PATTERN_FNS = {
    "solid": lambda f, p: np.zeros(len(p)),
    "stripes": _stripes,
    "checker": _checker,
    "dots": _dots,
    "rings": _rings,
    "gradient": _gradient,
}


def random_colour(rng: np.random.Generator, hue=None, saturation=(0.35, 0.9), value=(0.35, 0.95)):
    """An RGB colour; ``hue`` (a value or a (lo, hi) range in [0, 1)) constrains the family."""
    if hue is None:
        h = rng.uniform(0.0, 1.0)
    elif isinstance(hue, tuple):
        h = rng.uniform(*hue) % 1.0
    else:
        h = float(hue) % 1.0
    s, v = rng.uniform(*saturation), rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def random_finish(rng: np.random.Generator, hue=None, patterns=PATTERNS, contrast=0.35) -> Finish:
    """A random finish: a colour from the hue family and a contrasting second colour."""
    primary = random_colour(rng, hue)
    # the secondary colour shifts the value so even same-hue patterns stay visible
    shift = contrast if primary.mean() < 0.55 else -contrast
    secondary = np.clip(random_colour(rng, hue) * 0.5 + primary * 0.5 + shift, 0.0, 1.0)
    return Finish(
        primary=primary,
        secondary=secondary,
        pattern=str(rng.choice(patterns)),
        axis=int(rng.integers(0, 3)),
        frequency=float(rng.uniform(1.5, 4.0)),
        phase=float(rng.uniform(0.0, 1.0)),
    )
