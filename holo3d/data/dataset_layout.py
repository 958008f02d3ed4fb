"""Checks that a CO3Dv2 dataset root holds what a config asks for, before Implicitron loads it.

Implicitron's own errors say "please specify a correct dataset_root folder"; these name the path
that is missing and list what is there instead (categories under the root, subsets of a category).
"""

from __future__ import annotations

import os
from typing import List

from holo3d.data.annotation_checks import (
    check_eval_batches,
    check_frame_annotations,
    check_sequence_annotations,
    check_set_lists,
)


class DatasetLayoutError(ValueError):
    """A dataset root, category or subset that does not exist; the message lists what does."""


def list_categories(root: str) -> List[str]:
    """Sub-directories of root that look like CO3D categories (hold frame_annotations.jgz)."""
    return sorted(
        name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, "frame_annotations.jgz"))
    )


def list_subsets(category_dir: str) -> List[str]:
    """Subset names for which set_lists/set_lists_<name>.json exists."""
    folder = os.path.join(category_dir, "set_lists")
    if not os.path.isdir(folder):
        return []
    names = [f for f in os.listdir(folder) if f.startswith("set_lists_") and f.endswith(".json")]
    return sorted(name[len("set_lists_") : -len(".json")] for name in names)


def check_root(root: str) -> None:
    if not root:
        raise DatasetLayoutError(
            "dataset_root is empty: set data_source_args.dataset_map_provider_"
            "JsonIndexDatasetMapProviderV2_args.dataset_root or the CO3DV2_DATASET_ROOT environment variable"
        )
    if not os.path.isdir(root):
        parent = os.path.dirname(os.path.abspath(root))
        there = sorted(os.listdir(parent))[:20] if os.path.isdir(parent) else "(does not exist either)"
        raise DatasetLayoutError(f"dataset root {root} does not exist; its parent {parent} holds: {there}")


def check_category(root: str, category: str, subset_name: str, need_eval_batches: bool) -> None:
    """Checks that one category has its annotation, set-list and eval-batch files, and that the
    set list and eval batches parse.

    Raises:
        DatasetLayoutError: missing category, annotation file or subset (lists what exists).
        AnnotationError: an annotation file that does not parse (names the file and field).
    """
    folder = os.path.join(root, category)
    if not os.path.isdir(folder):
        raise DatasetLayoutError(
            f"category {category!r} not found: {folder} does not exist; "
            f"categories in {root}: {list_categories(root)}"
        )
    for name in ("frame_annotations.jgz", "sequence_annotations.jgz"):
        if not os.path.isfile(os.path.join(folder, name)):
            there = sorted(os.listdir(folder))[:20]
            raise DatasetLayoutError(f"{os.path.join(folder, name)} is missing; {folder} holds: {there}")
    set_list = os.path.join(folder, "set_lists", f"set_lists_{subset_name}.json")
    if not os.path.isfile(set_list):
        raise DatasetLayoutError(
            f"subset {subset_name!r} not found: {set_list} does not exist; "
            f"subsets of {category!r}: {list_subsets(folder)}"
        )
    eval_batches = os.path.join(folder, "eval_batches", f"eval_batches_{subset_name}.json")
    if need_eval_batches and not os.path.isfile(eval_batches):
        raise DatasetLayoutError(
            f"{eval_batches} is missing; set load_eval_batches=False to train without eval batches"
        )
    check_set_lists(set_list)
    if need_eval_batches:
        check_eval_batches(eval_batches)


def check_annotations(root: str, category: str, require_mask_mass: bool) -> None:
    """Parses and validates a category's frame and sequence annotations (errors name file and field)."""
    folder = os.path.join(root, category)
    check_frame_annotations(os.path.join(folder, "frame_annotations.jgz"), require_mask_mass)
    check_sequence_annotations(os.path.join(folder, "sequence_annotations.jgz"))
