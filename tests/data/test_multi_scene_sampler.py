"""MultiSceneBatchSampler on a synthetic scene index: shapes, determinism, accelerate sharding."""

import pytest
from accelerate.data_loader import BatchSamplerShard, prepare_data_loader
from torch.utils.data import DataLoader

from holo3d.data.multi_scene_sampler import MultiSceneBatchSampler

# 5 scenes of 10 frames with disjoint dataset indices; scene s owns indices [10 s, 10 s + 10)
SCENES = {f"seq{s}": list(range(10 * s, 10 * s + 10)) for s in range(5)}


def _scene_of(index):
    return index // 10


def test_batches_are_scene_major_distinct_and_sized():
    sampler = MultiSceneBatchSampler(SCENES, scenes_per_batch=2, frames_per_scene=4, num_batches=6)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6 and sampler.batch_size == 8
    for batch in batches:
        scenes = [_scene_of(i) for i in batch]
        assert scenes[:4] == [scenes[0]] * 4 and scenes[4:] == [scenes[4]] * 4 and scenes[0] != scenes[4]
        assert len(set(batch)) == 8


def test_every_scene_is_visited_once_per_pass():
    sampler = MultiSceneBatchSampler(SCENES, scenes_per_batch=1, frames_per_scene=2)
    assert len(sampler) == 5  # 0 batches requested: one pass over the scenes
    assert sorted(_scene_of(b[0]) for b in sampler) == [0, 1, 2, 3, 4]


def test_determinism_and_epochs():
    def run(seed, epoch):
        sampler = MultiSceneBatchSampler(SCENES, 2, 3, num_batches=5, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 3) == run(0, 3)
    assert run(0, 3) != run(0, 4)
    assert run(0, 3) != run(1, 3)
    sampler = MultiSceneBatchSampler(SCENES, 2, 3, num_batches=5)
    sampler.sampler.set_epoch(3)  # where accelerate's prepared loaders call it
    assert list(sampler) == run(0, 3)


def test_short_sequences_are_left_out_with_a_warning():
    scenes = dict(SCENES, short=[100, 101])
    with pytest.warns(UserWarning, match="fewer than frames_per_scene=3"):
        sampler = MultiSceneBatchSampler(scenes, 1, 3, split="train")
    assert "short" not in sampler.names
    with pytest.raises(ValueError, match="longest has 10"):
        MultiSceneBatchSampler(SCENES, 1, 11)


def test_accelerate_shards_whole_batches_and_forwards_set_epoch():
    sampler = MultiSceneBatchSampler(SCENES, 2, 3, num_batches=6, seed=5)
    sampler.set_epoch(2)
    everything = list(sampler)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=p)) for p in range(2)]
    assert shards[0] == everything[0::2] and shards[1] == everything[1::2]

    loader = DataLoader(list(range(50)), batch_sampler=sampler, collate_fn=lambda x: x)
    prepared = prepare_data_loader(loader, num_processes=2, process_index=1, put_on_device=False)
    prepared.set_epoch(4)
    assert sampler.epoch == 4
    reference = MultiSceneBatchSampler(SCENES, 2, 3, num_batches=6, seed=5)
    reference.set_epoch(4)
    assert list(prepared) == list(reference)[1::2]  # process 1 of 2 gets every other batch
    assert sampler.epoch == 4
