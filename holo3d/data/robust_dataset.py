"""Holo3DJsonIndexDataset: Implicitron's JsonIndexDataset that survives unreadable frames.

A frame whose image, mask or depth file is missing or does not decode is skipped with a warning
naming the file, and another frame of the same sequence takes its place, so a scene-major
multi-scene batch keeps its shape and its grouping. If every frame of a sequence is unreadable, a
warning says so and another sequence replaces that scene in the batch; only when no readable
sequence is left does loading fail.

The DataLoader hands whole batches to ``__getitems__`` (PyTorch's batched fetch), which is what
lets a replacement respect the batch's scene structure.

Losing much of a dataset must not go unnoticed: ``check_files`` (run by the trainer on the train and
val splits before training) checks that every frame's files exist and are not empty, logs a
summary of the frames and sequences skipped per split, and stops with an error above
``max_skipped_fraction``. A mask file that is all zero although the annotation gives it a mass is
treated as unreadable, and set lists naming frames the annotations lack are reported.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import contextlib
import logging
import os
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.dataset.json_index_dataset import JsonIndexDataset
from pytorch3d.implicitron.tools.config import registry

from holo3d.data.frame_files import find_bad_file

# what a broken or missing blob raises inside Implicitron's loaders (PIL, numpy, size checks)
LOAD_ERRORS = (OSError, ValueError, SyntaxError, EOFError, RuntimeError)


class UnreadableFrameWarning(UserWarning):
    """A frame was skipped because one of its files is missing or unreadable."""


class UnreadableSequenceError(RuntimeError):
    """Every frame of a sequence is unreadable and no other sequence can stand in for it."""


class TooManyUnreadableFramesError(RuntimeError):
    """More than ``max_skipped_fraction`` of a split's frames have missing or empty files."""


logger = logging.getLogger(__name__)
_EXAMPLES = 5  # bad files named in a summary


@registry.register
class Holo3DJsonIndexDataset(JsonIndexDataset):
    """JsonIndexDataset with unreadable-frame substitution and holo3d's defaults.

    Defaults differ from Implicitron's for the built-in dataset: its objects are already framed,
    so no box crop, and frames are resized to 128 x 128 (CO3D configs set 800 / box_crop=True).

    Members:
        max_skipped_fraction: training stops before it starts when more than this fraction of a
            split's frames have missing or empty files (1.0: never).
    """

    image_height: Optional[int] = 128
    image_width: Optional[int] = 128
    box_crop: bool = False
    max_skipped_fraction: float = 0.2

    def __getitem__(self, index: int) -> FrameData:
        if index >= len(self):
            raise IndexError(f"index {index} out of range {len(self)}")
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> List[FrameData]:
        """Frames for a batch of indices; unreadable ones replaced (see the module docstring)."""
        indices = list(indices)
        names = [self._sequence_of(i) for i in indices]
        frames: List[FrameData] = []
        start = 0
        while start < len(indices):
            end = start
            while end < len(indices) and names[end] == names[start]:
                end += 1
            scene = self._load_scene(names[start], indices[start:end])
            if scene is None:
                scene = self._replacement_scene(names[start], end - start, set(names))
            frames += scene
            start = end
        return frames

    def _load_scene(self, sequence: str, wanted: List[int]) -> Optional[List[FrameData]]:
        """The wanted frames of one sequence, bad ones replaced by unused frames of it; None if
        no frame of the sequence is readable."""
        spare = self._spare_frames(sequence, wanted)
        frames = []
        for index in wanted:
            frame = self._try_load(index)
            while frame is None:
                candidate = next(spare, None)
                if candidate is None:
                    break
                frame = self._try_load(candidate)
            frames.append(frame)
        good = [f for f in frames if f is not None]
        if not good:  # every wanted and every spare frame failed: the whole sequence is unreadable
            return None
        # too few readable frames left: repeat readable ones rather than break the scene's shape
        return [f if f is not None else good[k % len(good)] for k, f in enumerate(frames)]

    def _spare_frames(self, sequence: str, wanted: List[int]) -> Iterator[int]:
        """The sequence's other frames, in order starting after the first wanted one."""
        all_frames = self._seq_to_idx[sequence]
        first = all_frames.index(wanted[0]) if wanted[0] in all_frames else 0
        rotated = all_frames[first + 1 :] + all_frames[: first + 1]
        taken = set(wanted)
        return (i for i in rotated if i not in taken)

    def _replacement_scene(self, sequence: str, n_frames: int, in_batch: Set[str]) -> List[FrameData]:
        """Frames of another readable sequence, preferring ones not already in the batch."""
        names = sorted(self._seq_to_idx)
        position = names.index(sequence)
        ordered = names[position + 1 :] + names[:position]
        ordered = [n for n in ordered if n not in in_batch] + [n for n in ordered if n in in_batch]
        for other in ordered:
            scene = self._load_scene(other, self._seq_to_idx[other][:n_frames])
            if scene is not None:
                warnings.warn(
                    f"holo3d: every frame of sequence {sequence} is unreadable "
                    f"({len(self._seq_to_idx[sequence])} frames); sequence {other} replaces it in this batch",
                    UnreadableFrameWarning,
                )
                return scene
        raise UnreadableSequenceError(
            f"every frame of sequence {sequence} is unreadable and no other sequence of this split is "
            f"readable either (dataset_root={self.dataset_root}); see the warnings above for the files"
        )

    def _try_load(self, index: int) -> Optional[FrameData]:
        """The frame, or None (with a warning naming the bad file the first time) if unreadable."""
        if index in self._bad_indices():
            return None
        try:
            frame = super().__getitem__(index)
        except LOAD_ERRORS as error:
            self._bad_indices().add(index)
            warnings.warn(self._describe_failure(index, error), UnreadableFrameWarning)
            return None
        empty_mask = self._empty_mask_reason(index, frame)
        if empty_mask is not None:
            self._bad_indices().add(index)
            warnings.warn(empty_mask, UnreadableFrameWarning)
            return None
        return frame

    def _empty_mask_reason(self, index: int, frame: FrameData) -> Optional[str]:
        """Why the frame's mask is unusable: an all-zero mask file whose annotation gives it a
        foreground mass (a damaged or wrongly exported file); None when it is fine."""
        annotation = self.frame_annots[index]["frame_annotation"]
        mass = annotation.mask.mass if annotation.mask is not None else None
        if frame.fg_probability is None or not mass or mass <= 0 or float(frame.fg_probability.max()) > 0:
            return None
        path = os.path.join(self.dataset_root, annotation.mask.path)
        return (f"holo3d: skipping frame {annotation.sequence_name}/{annotation.frame_number}: {path}: "
                f"mask is all zero but frame_annotations.jgz gives mask.mass={mass:g}; another frame of the "
                "sequence replaces it")

    # ---- whole-split checks (before training) ----

    def subset_from_frame_index(self, frame_index, allow_missing_indices: bool = True):
        """Implicitron's subset for a set list, reporting the entries the annotations lack (it
        drops them silently) and refusing a set list none of whose frames exists."""
        frame_index = list(frame_index)
        found = self.seq_frame_index_to_dataset_index([frame_index], allow_missing_indices=True)[0]
        missing = [entry for entry, index in zip(frame_index, found) if index is None]
        if frame_index and len(missing) == len(frame_index):
            raise TooManyUnreadableFramesError(
                f"none of the {len(frame_index)} frames a set list names is in {self.frame_annotations_file} "
                f"(or all were removed by its filters, e.g. remove_empty_masks); first: {_entry(missing[0])}"
            )
        if missing:
            logger.warning("%d of the %d frames a set list names are not in %s (or were removed by its "
                           "filters, e.g. remove_empty_masks); skipped, e.g. %s", len(missing), len(frame_index),
                           self.frame_annotations_file, ", ".join(_entry(m) for m in missing[:_EXAMPLES]))
        return super().subset_from_frame_index(frame_index, allow_missing_indices)

    def check_files(self, split: str) -> Dict[str, int]:
        """Checks that every frame's files exist and are not empty; logs a summary, marks the bad
        frames (so loading skips them without a warning each) and raises
        TooManyUnreadableFramesError above ``max_skipped_fraction``. Returns the counts."""
        bad: Dict[int, Tuple[str, str]] = {}
        for index in range(len(self.frame_annots)):
            problem = self._missing_file(index)
            if problem is not None:
                bad[index] = problem
        self._bad_indices().update(bad)
        sequences = {name: set(indices) for name, indices in self._seq_to_idx.items()}
        dead = sorted(name for name, indices in sequences.items() if indices and indices <= set(bad))
        counts = {"frames": len(self.frame_annots), "bad_frames": len(bad),
                  "sequences": len(sequences), "bad_sequences": len(dead)}
        if bad:
            self._report(split, counts, bad, dead)
        return counts

    def _report(self, split: str, counts: Dict[str, int], bad: Dict[int, Tuple[str, str]], dead: List[str]) -> None:
        fraction = counts["bad_frames"] / max(1, counts["frames"])
        examples = "; ".join(f"{path}: {why}" for path, why in list(bad.values())[:_EXAMPLES])
        summary = (f"{split} split: {counts['bad_frames']} of {counts['frames']} frames ({fraction:.0%}) and "
                   f"{counts['bad_sequences']} of {counts['sequences']} whole sequences have missing or empty "
                   f"files (dataset_root={self.dataset_root}), e.g. {examples}")
        if fraction > self.max_skipped_fraction:
            raise TooManyUnreadableFramesError(
                f"{summary}. That is more than max_skipped_fraction={self.max_skipped_fraction:g} "
                f"(dataset_{type(self).__name__}_args.max_skipped_fraction); fix the dataset or raise it"
            )
        logger.warning("%s; these frames are skipped%s", summary,
                       f" (sequences without any readable frame: {dead[:_EXAMPLES]})" if dead else "")

    def _missing_file(self, index: int) -> Optional[Tuple[str, str]]:
        """(path, reason) of the first file the frame needs that is missing or empty, else None.
        Only existence and size: decoding every file up front would cost as much as an epoch."""
        annotation = self.frame_annots[index]["frame_annotation"]
        wanted = [(self.load_images, annotation.image and annotation.image.path),
                  (self.load_masks, annotation.mask and annotation.mask.path),
                  (self.load_depths, annotation.depth and annotation.depth.path),
                  (self.load_depth_masks, annotation.depth and annotation.depth.mask_path)]
        for needed, relative in wanted:
            if not needed or not relative:
                continue
            path = os.path.join(self.dataset_root, relative)
            try:
                if os.stat(self._local_path(path)).st_size == 0:
                    return path, "file is empty"
            except OSError as error:
                return path, "file is missing" if isinstance(error, FileNotFoundError) else str(error)
        return None

    def _describe_failure(self, index: int, error: Exception) -> str:
        annotation = self.frame_annots[index]["frame_annotation"]
        name = f"{annotation.sequence_name}/{annotation.frame_number}"
        bad = find_bad_file(annotation, self.dataset_root)
        cause = f"{bad[0]}: {bad[1]}" if bad else f"{annotation.image.path}: {type(error).__name__}: {error}"
        return f"holo3d: skipping frame {name}: {cause}; another frame of the sequence replaces it"

    def _sequence_of(self, index: int) -> str:
        return self.frame_annots[index]["frame_annotation"].sequence_name

    def _bad_indices(self) -> Set[int]:
        # created lazily: Implicitron builds the dataclass, so there is no __init__ to extend
        if not hasattr(self, "_bad"):
            self._bad: Set[int] = set()
        return self._bad



def _entry(entry) -> str:
    return f"{entry[0]}/{entry[1]}"


def check_dataset_files(datasets) -> None:
    """Runs ``check_files`` on the train and val splits of a DatasetMap that are holo3d datasets
    (other datasets have no files to check)."""
    for split in ("train", "val"):
        dataset = getattr(datasets, split, None)
        if isinstance(dataset, Holo3DJsonIndexDataset):
            dataset.check_files(split)


@contextlib.contextmanager
def log_unreadable_frames() -> Iterator[None]:
    """Within the block, UnreadableFrameWarning goes to this module's logger (so into train.log)
    instead of bare stderr; other warnings are shown as before. Data-loader workers started in the
    block inherit the routing (they are forked)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UnreadableFrameWarning):
            logger.warning("%s", message)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
