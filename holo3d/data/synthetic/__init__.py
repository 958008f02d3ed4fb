"""The built-in synthetic dataset: procedural objects rendered with PyTorch3D, written as CO3Dv2.

    python -m holo3d.data.synthetic --out DIR [--preset demo] [--categories chair mug ...]
        [--sequences N] [--frames F] [--image-size S [S]] [--device cuda] [--seed 0]

    from holo3d.data.synthetic import ensure_builtin_dataset
    root = ensure_builtin_dataset("data/builtin_demo", "demo")

Pipeline: categories/ build an object from primitives (shape.py), orbit.py samples a CO3D-like
camera path, renderer.py renders RGB / mask / depth, sequence.py bundles them, and a writer
(co3d_writer.py) puts them on disk; generate.py drives it and publishes atomically.
"""

from holo3d.data.synthetic.builtin import default_builtin_root, ensure_builtin_dataset
from holo3d.data.synthetic.categories import CATEGORIES
from holo3d.data.synthetic.generate import generate_dataset, read_manifest
from holo3d.data.synthetic.sequence import RenderedSequence, render_sequence
from holo3d.data.synthetic.spec import PRESETS, SyntheticSpec, get_preset

__all__ = [
    "CATEGORIES",
    "PRESETS",
    "RenderedSequence",
    "SyntheticSpec",
    "default_builtin_root",
    "ensure_builtin_dataset",
    "generate_dataset",
    "get_preset",
    "read_manifest",
    "render_sequence",
]
