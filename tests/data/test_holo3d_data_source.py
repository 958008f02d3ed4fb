"""Holo3DDataSource: the splits, eval batches and frame types the set lists say; multi-scene batches."""

import json
import os

import pytest
import torch
from pytorch3d.implicitron.tools.config import get_default_args

from holo3d.data import Holo3DDataSource, MultiSceneDataLoaderMapProvider, SceneBatch

SPLITS = ("train", "val", "test")


def _frame_ids(dataset):
    return sorted((a["frame_annotation"].sequence_name, a["frame_annotation"].frame_number) for a in dataset.frame_annots)


@pytest.mark.parametrize("subset", ["fewview_dev", "fewview_test", "manyview_dev_0", "manyview_test_0"])
def test_splits_eval_batches_and_frame_types_follow_the_set_lists(co3d_root, make_source, subset):
    datasets = make_source(co3d_root, "mug", subset).dataset_map_provider.get_dataset_map()
    folder = os.path.join(co3d_root, "mug")
    with open(os.path.join(folder, "set_lists", f"set_lists_{subset}.json")) as f:
        set_lists = json.load(f)
    with open(os.path.join(folder, "eval_batches", f"eval_batches_{subset}.json")) as f:
        eval_batches = json.load(f)
    for split in SPLITS:
        assert _frame_ids(getattr(datasets, split)) == sorted((s, n) for s, n, _ in set_lists[split])
    loaded = [[(datasets.test[i].sequence_name, int(datasets.test[i].frame_number)) for i in b] for b in datasets.test.get_eval_batches()]
    assert loaded == [[(s, n) for s, n, _ in batch] for batch in eval_batches]
    for batch in datasets.test.get_eval_batches():
        types = [datasets.test[i].frame_type for i in batch]
        assert types[0].endswith("_unseen") and all(t.endswith("_known") for t in types[1:])
    held = "dev" if "dev" in subset else "test"
    assert {datasets.test[i].frame_type.split("_")[0] for i in range(len(datasets.test))} == {held}
    train_types = {datasets.train[i].frame_type for i in range(len(datasets.train))}
    assert train_types == ({"train_known"} if subset.startswith("fewview") else {f"{held}_known"})


@pytest.mark.filterwarnings("ignore:val split")  # 2 dev sequences for 3 scenes per batch
def test_multi_scene_batches_are_scene_major_with_the_requested_sizes(co3d_root, make_source):
    source = make_source(co3d_root, "chair,mug", scenes_per_batch=3, frames_per_scene=4, dataset_length_train=5)
    assert (source.scenes_per_batch, source.frames_per_scene) == (3, 4)
    _, loaders = source.get_datasets_and_dataloaders()
    batches = list(loaders.train)
    assert len(batches) == 5
    for batch in batches:
        assert batch.image_rgb.shape == (12, 3, 64, 64) and batch.depth_map.shape == (12, 1, 64, 64)
        scenes = SceneBatch.from_frame_data(batch, frames_per_scene=4)
        assert scenes.image_rgb.shape == (3, 4, 3, 64, 64)
        assert len(set(scenes.sequence_name)) == 3  # 4 train sequences: 3 distinct per batch
        frames = batch.frame_number.view(3, 4)
        assert all(len(set(row.tolist())) == 4 for row in frames), "frames of a scene are distinct"
        assert set(batch.frame_type) == {"train_known"}


def test_batches_are_deterministic_per_seed_and_epoch(co3d_root, make_source):
    def names_and_frames(seed, epoch):
        loader = make_source(co3d_root, "chair,mug", scenes_per_batch=2, frames_per_scene=3, dataset_length_train=4, seed=seed).get_datasets_and_dataloaders()[1].train
        loader.batch_sampler.set_epoch(epoch)
        return [list(loader.batch_sampler)]

    assert names_and_frames(0, 0) == names_and_frames(0, 0)
    assert names_and_frames(0, 0) != names_and_frames(0, 1)
    assert names_and_frames(0, 1) != names_and_frames(7, 1)


def test_val_and_test_loaders(co3d_root, make_source):
    _, loaders = make_source(co3d_root, "mug", scenes_per_batch=1, frames_per_scene=3).get_datasets_and_dataloaders()
    val_batch = next(iter(loaders.val))
    assert len(set(val_batch.sequence_name)) == 1 and val_batch.image_rgb.shape[0] == 3
    assert [list(b.sequence_name) for b in loaders.val] == [list(b.sequence_name) for b in loaders.val]  # fixed epoch
    test_batch = next(iter(loaders.test))  # an eval batch: the unseen target first
    assert test_batch.frame_type[0] == "dev_unseen" and len(test_batch.frame_type) > 1


@pytest.mark.parametrize("field,value", [("frames_per_scene", 1), ("scenes_per_batch", 0), ("num_workers", -1)])
def test_loader_config_is_validated(field, value):
    cfg = get_default_args(MultiSceneDataLoaderMapProvider)
    cfg[field] = value
    with pytest.raises(ValueError, match=field):
        MultiSceneDataLoaderMapProvider(**cfg)


def test_frames_per_scene_larger_than_every_sequence_is_explained(co3d_root, make_source):
    with pytest.raises(ValueError, match="frames_per_scene=7.*longest has 6"):
        make_source(co3d_root, "mug", frames_per_scene=7).get_datasets_and_dataloaders()


def test_default_config_names_holo3d_defaults():
    cfg = get_default_args(Holo3DDataSource)
    provider = cfg.dataset_map_provider_JsonIndexDatasetMapProviderV2_args
    assert (provider.category, provider.subset_name, provider.dataset_root) == ("chair", "fewview_dev", "")
    assert provider.dataset_class_type == "Holo3DJsonIndexDataset"
    assert cfg.data_loader_map_provider_class_type == "MultiSceneDataLoaderMapProvider"
    assert cfg.builtin_preset == "demo" and cfg.generate_builtin_if_missing


def test_single_scene_train_split_gives_train_cameras(co3d_root, make_source):
    assert make_source(co3d_root, "mug", "fewview_dev").all_train_cameras is None
    cameras = make_source(co3d_root, "mug", "manyview_dev_0").all_train_cameras
    assert len(cameras) == 4  # frames 0, 2, 3, 4 of the dev sequence are known (1 and 5 unseen)
    assert torch.isfinite(cameras.R).all()


def test_worker_processes_give_the_same_batches(co3d_root, make_source):
    def epochs(**loader):
        train = make_source(co3d_root, "chair", dataset_length_train=2, **loader).get_datasets_and_dataloaders()[1].train
        out = []
        for epoch in range(2):
            train.batch_sampler.set_epoch(epoch)
            out += [(list(b.sequence_name), b.frame_number.tolist(), b.image_rgb.sum().item()) for b in train]
        return out

    assert epochs(num_workers=1, persistent_workers=True) == epochs(num_workers=0)
