"""MultiSceneDataLoaderMapProvider: data loaders yielding S scenes x N frames per batch.

train / val: ``MultiSceneBatchSampler`` batches (scene-major, targets first in each scene);
val uses a fixed epoch so every validation sees the same batches. test: the dataset's eval batches
(CO3D's evaluation protocol: one target, then known source frames) when it has them, otherwise
multi-scene batches like val.
"""

import atexit
import signal
import warnings
import weakref
from typing import Optional

from pytorch3d.implicitron.dataset.data_loader_map_provider import DataLoaderMap, DataLoaderMapProviderBase
from pytorch3d.implicitron.dataset.dataset_base import DatasetBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap
from pytorch3d.implicitron.tools.config import registry
from torch.utils.data import DataLoader

from holo3d.data.pinnable_batch import collate_pinnable
from holo3d.data.multi_scene_sampler import MultiSceneBatchSampler, scene_index

SPLIT_SEED_OFFSETS = {"train": 0, "val": 1000, "test": 2000}  # splits draw independent streams


@registry.register
class MultiSceneDataLoaderMapProvider(DataLoaderMapProviderBase):
    """Data loaders of multi-scene batches.

    Members:
        scenes_per_batch: S, distinct sequences per batch.
        frames_per_scene: N >= 2 frames per sequence (the model's T targets + K sources; the
            experiment checks N >= T + 1).
        dataset_length_train: batches per training epoch; 0 = one pass over the train scenes.
        dataset_length_val: batches per validation; 0 = one pass over the val scenes.
        dataset_length_test: batches of the test loader when the test set has no eval batches.
        use_eval_batches_for_test: test loader follows the dataset's eval batches if it has them.
        num_workers, pin_memory, persistent_workers, prefetch_factor: as torch's DataLoader
            (the last two only apply with num_workers > 0).
        seed: batches depend only on (seed, epoch); call loader.batch_sampler.set_epoch(epoch)
            (or accelerate's loader.set_epoch) every epoch.
    """

    scenes_per_batch: int = 1
    frames_per_scene: int = 16
    dataset_length_train: int = 0
    dataset_length_val: int = 0
    dataset_length_test: int = 0
    use_eval_batches_for_test: bool = True
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = True
    prefetch_factor: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "scenes_per_batch": (self.scenes_per_batch, 1),
            "frames_per_scene": (self.frames_per_scene, 2),
            "dataset_length_train": (self.dataset_length_train, 0),
            "dataset_length_val": (self.dataset_length_val, 0),
            "dataset_length_test": (self.dataset_length_test, 0),
            "num_workers": (self.num_workers, 0),
            "prefetch_factor": (self.prefetch_factor, 1),
        }
        for name, (value, low) in checks.items():
            if value < low:
                raise ValueError(f"MultiSceneDataLoaderMapProvider.{name}={value}: must be >= {low}")

    @property
    def batch_size(self) -> int:
        """Frames per batch, S * N."""
        return self.scenes_per_batch * self.frames_per_scene

    def get_data_loader_map(self, datasets: DatasetMap) -> DataLoaderMap:
        return DataLoaderMap(
            train=self._multi_scene_loader(datasets.train, self.dataset_length_train, "train"),
            val=self._multi_scene_loader(datasets.val, self.dataset_length_val, "val"),
            test=self._test_loader(datasets.test),
        )

    def _multi_scene_loader(self, dataset: Optional[DatasetBase], num_batches: int, split: str):
        if dataset is None or len(dataset) == 0:
            return None
        scenes = scene_index(dataset)
        frames = self.frames_per_scene if split == "train" else held_out_frames(scenes, self.frames_per_scene, split)
        if frames is None:
            return None
        sampler = MultiSceneBatchSampler(
            scenes,
            scenes_per_batch=self.scenes_per_batch,
            frames_per_scene=frames,
            num_batches=num_batches,
            seed=self.seed + SPLIT_SEED_OFFSETS[split],
            split=split,
        )
        return self._loader(dataset, sampler)

    def _test_loader(self, dataset: Optional[DatasetBase]):
        if dataset is None or len(dataset) == 0:
            return None
        eval_batches = dataset.get_eval_batches()
        if self.use_eval_batches_for_test and eval_batches is not None:
            return self._loader(dataset, eval_batches)
        return self._multi_scene_loader(dataset, self.dataset_length_test, "test")

    def _loader(self, dataset: DatasetBase, batch_sampler) -> DataLoader:
        """DataLoader over ``batch_sampler``'s scene-major index lists."""
        workers = {}
        if self.num_workers > 0:
            workers = {"persistent_workers": self.persistent_workers, "prefetch_factor": self.prefetch_factor,
                       "worker_init_fn": ignore_stop_signals}
        loader = DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_pinnable,
            **workers,
        )
        if self.num_workers > 0 and self.persistent_workers:
            _shut_down_at_exit(loader)
        return loader


def held_out_frames(scenes, frames_per_scene: int, split: str) -> Optional[int]:
    """Frames per scene for a validation / test split: ``frames_per_scene`` when its sequences have
    that many, else as many as its longest sequence has (with a warning): held-out data with fewer
    views is validated on what is there, never stopping training. None (no loader) below 2 frames
    (one target + one source)."""
    longest = max((len(frames) for frames in scenes.values()), default=0)
    if longest >= frames_per_scene:
        return frames_per_scene
    if longest < 2:
        warnings.warn(f"{split} split: no sequence has 2 frames (one target, one source); no {split} loader")
        return None
    warnings.warn(f"{split} split: no sequence has frames_per_scene={frames_per_scene} frames; "
                  f"{split} batches use {longest} frames per scene (the longest sequence)")
    return longest


def _shut_down_at_exit(loader: DataLoader) -> None:
    """Stops a loader's persistent workers cleanly when the interpreter exits.

    The workers ignore SIGTERM (below), and at exit multiprocessing terminates daemonic children with
    SIGTERM and joins them: without this the process would hang there. An atexit hook registered
    now runs before multiprocessing's (LIFO) and asks the workers to finish through their queues.
    """
    ref = weakref.ref(loader)

    def shut_down() -> None:
        live = ref()
        iterator = getattr(live, "_iterator", None) if live is not None else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # torch's own clean shutdown (poison pills + join)

    atexit.register(shut_down)


def ignore_stop_signals(worker_id: int) -> None:
    """Workers leave SIGTERM/SIGINT to the main process.

    ``timeout``, schedulers and Ctrl-C signal the whole process group; a worker that died of it would
    make the next batch raise before the training loop could write its stop checkpoint. The main
    process shuts the workers down itself when it exits.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
