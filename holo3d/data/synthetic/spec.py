"""What to generate: the ``SyntheticSpec`` and the named presets (tiny / demo / full)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

ALL_CATEGORIES = ("car", "chair", "lamp", "mug", "table")


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a built-in dataset (with the seed it is reproducible).

    Attributes:
        categories: category names (see holo3d.data.synthetic.categories).
        sequences: objects (= sequences) per category; >= 3 so that the train, dev and test
            sequence sets are all non-empty.
        frames: frames per sequence, >= 4 so dev/test sequences have known and unseen frames.
        image_size: (H, W) in pixels.
        seed: the global seed; each (category, sequence) draws from its own stream of it.
        object_radius: every object fits a ball of this radius around the origin.
        volume_extent: side of the cube [-extent/2, extent/2]^3 the occupancy grid covers.
        occupancy_resolution: voxels per side of the ground-truth occupancy grid.
        image_format: "jpg" (as CO3D) or "png" (lossless).
        background: RGB in [0, 1] behind the object.
    """

    categories: Tuple[str, ...] = ("chair", "table", "mug")
    sequences: int = 12
    frames: int = 24
    image_size: Tuple[int, int] = (64, 64)
    seed: int = 0
    object_radius: float = 0.8
    volume_extent: float = 2.0
    occupancy_resolution: int = 64
    image_format: str = "jpg"
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.sequences < 3:
            raise ValueError(f"sequences={self.sequences}: need >= 3 (one train, one dev, one test)")
        if self.frames < 4:
            raise ValueError(f"frames={self.frames}: need >= 4 (dev/test need known and unseen frames)")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format={self.image_format!r}: expected 'jpg' or 'png'")
        if self.occupancy_resolution < 2:
            raise ValueError(f"occupancy_resolution={self.occupancy_resolution}: need >= 2 voxels per side")
        if not 0 < self.object_radius < self.volume_extent / 2:
            raise ValueError(
                f"object_radius={self.object_radius} must be in (0, volume_extent/2={self.volume_extent / 2})"
            )

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def n_sequences(self) -> int:
        return self.sequences * len(self.categories)


PRESETS = {
    # a few seconds: smoke tests and the test suite's scale
    "tiny": SyntheticSpec(categories=("chair", "mug"), sequences=4, frames=8, image_size=(48, 48)),
    # about a minute of CPU time (2 cores): the CPU demo (make demo) and base.yaml's default
    "demo": SyntheticSpec(categories=("chair", "table", "mug"), sequences=12, frames=24, image_size=(64, 64)),
    # GPU training of the base config: every category, 300 objects x 40 views each at 128 px
    # (60k frames, 1.7 GB; 160 s with --device cuda on one H200)
    "full": SyntheticSpec(categories=ALL_CATEGORIES, sequences=300, frames=40, image_size=(128, 128)),
}


def get_preset(name: str) -> SyntheticSpec:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]
