"""Holo3DJsonIndexDataset: Implicitron's JsonIndexDataset that survives unreadable frames.

A frame whose image, mask or depth file is missing or does not decode is skipped with a warning
naming the file, and another frame of the same sequence takes its place, so a scene-major
multi-scene batch keeps its shape and its grouping. If every frame of a sequence is unreadable, a
warning says so and another sequence replaces that scene in the batch; only when no readable
sequence is left does loading fail.

The DataLoader hands whole batches to ``__getitems__`` (PyTorch's batched fetch), which is what
lets a replacement respect the batch's scene structure.
"""

# no `from __future__ import annotations`: Implicitron reads the real field types
import warnings
from typing import Iterator, List, Optional, Sequence, Set

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


@registry.register
class Holo3DJsonIndexDataset(JsonIndexDataset):
    """JsonIndexDataset with unreadable-frame substitution and holo3d's defaults.

    Defaults differ from Implicitron's for the built-in dataset: its objects are already framed,
    so no box crop, and frames are resized to 128 x 128 (CO3D configs set 800 / box_crop=True).
    """

    image_height: Optional[int] = 128
    image_width: Optional[int] = 128
    box_crop: bool = False

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
            return super().__getitem__(index)
        except LOAD_ERRORS as error:
            self._bad_indices().add(index)
            warnings.warn(self._describe_failure(index, error), UnreadableFrameWarning)
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

