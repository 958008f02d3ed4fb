"""CO3Dv2 set lists and eval batches for one category, from its sequences' frame types.

Subsets written (as in CO3Dv2's README), every entry a [sequence_name, frame_number, image_path]:

    fewview_dev       train: all frames of the train sequences
                      val, test: all frames of the dev sequences
                      eval batches: one per unseen dev frame: [unseen target, <= 9 known frames]
    fewview_test      as fewview_dev with the test sequences in val / test
    manyview_dev_<k>  train: known frames of the k-th dev sequence; val, test: its unseen frames;
                      eval batches: one unseen target frame each (the known views are "train")
    manyview_test_<k> the same for the k-th test sequence
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

MAX_KNOWN_IN_EVAL_BATCH = 9


@dataclass
class FrameEntry:
    sequence_name: str
    frame_number: int
    image_path: str
    frame_type: str  # "<set>_known" | "<set>_unseen"

    def as_list(self) -> list:
        return [self.sequence_name, self.frame_number, self.image_path]

    @property
    def known(self) -> bool:
        return self.frame_type.endswith("_known")


def build_subsets(sequences: Dict[str, List[FrameEntry]], sets: Dict[str, str]):
    """Set lists and eval batches for a category.

    Args:
        sequences: sequence name -> its frames, in frame order.
        sets: sequence name -> "train" | "dev" | "test".
    Returns:
        (set_lists, eval_batches): dicts keyed by subset name (see the module docstring).
    """
    by_set = {s: [name for name in sequences if sets[name] == s] for s in ("train", "dev", "test")}
    train = [f.as_list() for name in by_set["train"] for f in sequences[name]]
    set_lists, eval_batches = {}, {}
    for held in ("dev", "test"):
        frames = [f for name in by_set[held] for f in sequences[name]]
        subset = f"fewview_{held}"
        set_lists[subset] = {"train": train, "val": _lists(frames), "test": _lists(frames)}
        eval_batches[subset] = [b for name in by_set[held] for b in _fewview_batches(sequences[name])]
        for k, name in enumerate(by_set[held]):
            subset = f"manyview_{held}_{k}"
            known = [f for f in sequences[name] if f.known]
            unseen = [f for f in sequences[name] if not f.known]
            set_lists[subset] = {"train": _lists(known), "val": _lists(unseen), "test": _lists(unseen)}
            eval_batches[subset] = [[f.as_list()] for f in unseen]
    return set_lists, eval_batches


def _lists(frames: List[FrameEntry]) -> list:
    return [f.as_list() for f in frames]


def _fewview_batches(frames: List[FrameEntry]) -> list:
    """One batch per unseen frame: the target, then up to 9 known frames spread over the loop
    (rotated with the target so batches differ)."""
    known = [f for f in frames if f.known]
    n_known = min(MAX_KNOWN_IN_EVAL_BATCH, len(known))
    batches = []
    for i, target in enumerate(f for f in frames if not f.known):
        picks = [(i + round(j * len(known) / n_known)) % len(known) for j in range(n_known)]
        batches.append([target.as_list()] + [known[p].as_list() for p in picks])
    return batches
