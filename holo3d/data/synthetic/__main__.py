"""Command line: ``python -m holo3d.data.synthetic --out DIR [options]`` (see --help)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import List, Optional

from holo3d.data.synthetic.categories import CATEGORIES
from holo3d.data.synthetic.generate import generate_dataset
from holo3d.data.synthetic.spec import PRESETS, get_preset
from holo3d.data.synthetic.writers import WRITERS, get_writer


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m holo3d.data.synthetic",
        description="Render the built-in synthetic dataset in one of the public formats "
        "(CO3Dv2, SRN, NMR, ShapeNet voxels). "
        "Options left out come from the preset.",
    )
    parser.add_argument("--out", required=True, help="output dataset root (must not exist)")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--format", default="co3d", choices=sorted(WRITERS), help="on-disk format")
    parser.add_argument("--categories", nargs="+", choices=sorted(CATEGORIES))
    parser.add_argument("--sequences", type=int, help="sequences (objects) per category, >= 3")
    parser.add_argument("--frames", type=int, help="frames per sequence, >= 4")
    parser.add_argument("--image-size", type=int, nargs="+", metavar="S", help="S (square) or H W")
    parser.add_argument("--occupancy-resolution", type=int, metavar="R",
                        help="voxels per side of each object's occupancy grid (the voxel format's R; 64)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--image-format", choices=["jpg", "png"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace):
    """The preset with every given option replaced."""
    overrides = {
        "categories": tuple(args.categories) if args.categories else None,
        "sequences": args.sequences,
        "frames": args.frames,
        "seed": args.seed,
        "image_format": args.image_format,
        "occupancy_resolution": args.occupancy_resolution,
    }
    if args.image_size:
        if len(args.image_size) > 2:
            raise SystemExit("--image-size takes one (square) or two (H W) values")
        size = args.image_size * (2 if len(args.image_size) == 1 else 1)
        overrides["image_size"] = tuple(size)
    return dataclasses.replace(get_preset(args.preset), **{k: v for k, v in overrides.items() if v is not None})


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        spec = spec_from_args(args)
        start = time.perf_counter()
        progress = not args.no_progress
        out = generate_dataset(spec, args.out, device=args.device, writer_factory=get_writer(args.format),
                               progress=progress, preset=args.preset, fmt=args.format)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"wrote {spec.n_sequences} sequences x {spec.frames} frames ({args.format} format) to {out} "
          f"in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
