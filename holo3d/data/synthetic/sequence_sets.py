"""Which sequences are train / dev / test, and which frames of a sequence are known / unseen.

Mirrors CO3Dv2: sequences form three disjoint sets; in dev and test sequences some frames are
"unseen" (evaluation targets) and the rest "known" (given as sources); train sequences are all
known. Frame types are "<set>_known" / "<set>_unseen" as in CO3Dv2's ``meta.frame_type``.
"""

from __future__ import annotations

from typing import List

UNSEEN_EVERY = 4  # every 4th frame (1, 5, 9, ...) of a dev / test sequence is unseen


def held_out_count(n_sequences: int) -> int:
    """Dev (and test) sequences per category: 10 %, at least one."""
    return max(1, round(0.1 * n_sequences))


def sequence_set(index: int, n_sequences: int) -> str:
    """"train", "dev" or "test" for sequence ``index`` of ``n_sequences`` (>= 3) in a category.

    The last ``held_out_count`` sequences are test, the ones before them dev, the rest train.
    """
    n_held = held_out_count(n_sequences)
    if index >= n_sequences - n_held:
        return "test"
    if index >= n_sequences - 2 * n_held:
        return "dev"
    return "train"


def is_unseen(frame: int, set_name: str) -> bool:
    return set_name != "train" and frame % UNSEEN_EVERY == 1


def frame_type(frame: int, set_name: str) -> str:
    return f"{set_name}_{'unseen' if is_unseen(frame, set_name) else 'known'}"


def frame_types(n_frames: int, set_name: str) -> List[str]:
    return [frame_type(i, set_name) for i in range(n_frames)]
