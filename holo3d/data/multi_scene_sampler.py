"""Batches of S scenes x N frames, scene-major, deterministic given (seed, epoch).

Each batch holds ``scenes_per_batch`` distinct sequences (when there are that many) and, for each,
``frames_per_scene`` distinct random frames of it; the model treats the first T frames of a scene
as targets and the rest as sources, so targets are random frames too. Scenes are visited in a fresh
random order each pass over the split, so every scene is used equally often.

Randomness comes only from (seed, epoch): the same epoch always yields the same batches, which is
what resuming needs, and every process of a multi-GPU run computes the same sequence of batches,
which is what accelerate's ``BatchSamplerShard`` assumes when it deals batches to the processes.
``set_epoch`` is reachable as ``batch_sampler.set_epoch`` and ``batch_sampler.sampler.set_epoch``
(where accelerate's prepared loaders look for it).
"""

from __future__ import annotations

import warnings
from typing import Dict, Iterator, List, Sequence

import numpy as np
import torch
from pytorch3d.implicitron.dataset.dataset_base import DatasetBase
from torch.utils.data import Sampler


def scene_index(dataset: DatasetBase) -> Dict[str, List[int]]:
    """Sequence name -> its dataset indices in time order (what the sampler draws from)."""
    return {name: list(dataset.sequence_indices_in_order(name)) for name in dataset.sequence_names()}


def seeded_generator(*keys: int) -> torch.Generator:
    """A torch generator seeded from a well-mixed hash of integer keys."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


class SceneOrderSampler(Sampler[int]):
    """Endless stream of scene indices: one random permutation after another, seeded by epoch."""

    def __init__(self, n_scenes: int, seed: int = 0) -> None:
        self.n_scenes = n_scenes
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = seeded_generator(self.seed, self.epoch, 0)
        while True:
            yield from torch.randperm(self.n_scenes, generator=generator).tolist()


class MultiSceneBatchSampler(Sampler[List[int]]):
    """Batch sampler of scene-major multi-scene batches (see the module docstring).

    Args:
        scenes: sequence name -> dataset indices of its frames.
        scenes_per_batch: S.
        frames_per_scene: N; sequences with fewer frames are left out (with a warning).
        num_batches: batches per epoch; 0 means one pass over the scenes (n_scenes // S, >= 1).
        seed: base seed; batches depend only on (seed, epoch).
        split: name used in warnings ("train", "val", ...).
    """

    def __init__(
        self,
        scenes: Dict[str, Sequence[int]],
        scenes_per_batch: int,
        frames_per_scene: int,
        num_batches: int = 0,
        seed: int = 0,
        split: str = "",
    ) -> None:
        if scenes_per_batch < 1 or frames_per_scene < 1:
            raise ValueError(
                f"need scenes_per_batch >= 1 and frames_per_scene >= 1, got {scenes_per_batch}, {frames_per_scene}"
            )
        self.scenes = _usable_scenes(scenes, frames_per_scene, split)
        self.names = sorted(self.scenes)
        self.scenes_per_batch = scenes_per_batch
        self.frames_per_scene = frames_per_scene
        self.batch_size = scenes_per_batch * frames_per_scene
        self.num_batches = num_batches if num_batches > 0 else max(1, len(self.names) // scenes_per_batch)
        self.seed = seed
        self.sampler = SceneOrderSampler(len(self.names), seed)
        if len(self.names) < scenes_per_batch:
            warnings.warn(
                f"{split} split: only {len(self.names)} scenes for scenes_per_batch={scenes_per_batch}; "
                "scenes repeat within a batch"
            )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[List[int]]:
        generator = seeded_generator(self.seed, self.epoch, 1)
        order = iter(self.sampler)
        for _ in range(self.num_batches):
            batch: List[int] = []
            for scene in self._pick_scenes(order):
                frames = self.scenes[self.names[scene]]
                picks = torch.randperm(len(frames), generator=generator)[: self.frames_per_scene]
                batch += [frames[i] for i in picks.tolist()]
            yield batch

    def _pick_scenes(self, order: Iterator[int]) -> List[int]:
        """The next S scenes of the stream, skipping repeats within the batch when possible."""
        picked: List[int] = []
        while len(picked) < self.scenes_per_batch:
            scene = next(order)
            if scene not in picked or len(self.names) < self.scenes_per_batch:
                picked.append(scene)
        return picked


def _usable_scenes(scenes: Dict[str, Sequence[int]], frames_per_scene: int, split: str) -> Dict[str, List[int]]:
    usable = {name: list(frames) for name, frames in scenes.items() if len(frames) >= frames_per_scene}
    if not usable:
        longest = max((len(f) for f in scenes.values()), default=0)
        raise ValueError(
            f"{split} split: no sequence has frames_per_scene={frames_per_scene} frames ({len(scenes)} sequences, "
            f"the longest has {longest}); lower frames_per_scene"
        )
    if len(usable) < len(scenes):
        short = sorted(set(scenes) - set(usable))
        warnings.warn(
            f"{split} split: {len(short)} sequences have fewer than frames_per_scene={frames_per_scene} "
            f"frames and are not sampled: {short[:5]}"
        )
    return usable
