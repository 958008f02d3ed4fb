"""One rendered sequence: an object, its camera path, the renders and its sequence set.

This is the format-independent product of generation; writers (CO3D now, SRN / NMR / voxels later)
turn it into files. Everything in it is a deterministic function of (spec, category, index).
"""

from __future__ import annotations

import zlib
from typing import Callable, Optional
from dataclasses import dataclass

import numpy as np

from holo3d.data.synthetic.orbit import OrbitCameras, sample_orbit
from holo3d.data.synthetic.renderer import RenderedViews, render_views
from holo3d.data.synthetic.sequence_sets import sequence_set
from holo3d.data.synthetic.shape import SyntheticObject, make_object
from holo3d.data.synthetic.spec import SyntheticSpec


@dataclass
class RenderedSequence:
    """Attributes:
    name: unique over categories, e.g. "chair_007".
    category: the object category.
    index: position of the sequence within its category.
    sequence_set: "train", "dev" or "test" (CO3Dv2's sequence sets).
    obj: the object (parts in the world frame).
    cameras: the V cameras.
    views: the V renders (None when generated for a format without images).
    image_size: (H, W).
    """

    name: str
    category: str
    index: int
    sequence_set: str
    obj: SyntheticObject
    cameras: OrbitCameras
    views: Optional[RenderedViews]
    image_size: tuple


def sequence_name(category: str, index: int) -> str:
    return f"{category}_{index:03d}"


def sequence_rngs(seed: int, category: str, index: int):
    """Independent (object, camera) generators for one sequence; adding categories or sequences
    never changes the existing ones."""
    root = np.random.SeedSequence([seed, zlib.crc32(category.encode()), index])
    object_seq, camera_seq = root.spawn(2)
    return np.random.default_rng(object_seq), np.random.default_rng(camera_seq)


def render_sequence(
    spec: SyntheticSpec, category: str, index: int, device: str = "cpu", render: bool = True,
    camera_transform: Optional[Callable[[OrbitCameras], OrbitCameras]] = None,
) -> RenderedSequence:
    """Builds and renders sequence ``index`` of ``category`` (``render=False``: views is None, for
    writers that store no images); ``camera_transform`` maps the sampled cameras to those a format
    stores before rendering (a writer's ``render_cameras``)."""
    object_rng, camera_rng = sequence_rngs(spec.seed, category, index)
    obj = make_object(category, object_rng, radius=spec.object_radius)
    cameras = sample_orbit(camera_rng, spec.frames, object_radius=spec.object_radius)
    if camera_transform is not None:
        cameras = camera_transform(cameras)
    views = None
    if render:
        views = render_views(obj.mesh(), cameras, spec.image_size, background=spec.background, device=device)
    return RenderedSequence(
        name=sequence_name(category, index),
        category=category,
        index=index,
        sequence_set=sequence_set(index, spec.sequences),
        obj=obj,
        cameras=cameras,
        views=views,
        image_size=tuple(spec.image_size),
    )
