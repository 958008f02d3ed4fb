"""ShapeNet voxel datasets: the writer and readers agree, the axis convention, the public layouts,
bad input named, and VoxelDataSource batches (labels, determinism, resume, the config group)."""

import dataclasses
import itertools
import os

import h5py
import numpy as np
import pytest
import torch
from pytorch3d.implicitron.tools.config import get_default_args

from holo3d.data import voxels
from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.synthetic import builtin, generate_dataset, spec
from holo3d.data.synthetic.primitives import Primitive
from holo3d.data.synthetic.sequence import RenderedSequence, sequence_name, sequence_rngs
from holo3d.data.synthetic.shape import SyntheticObject, make_object
from holo3d.data.synthetic.voxel_writer import VoxelWriter
from holo3d.data.tensor_batch import TensorBatch
from holo3d.data.voxels import VoxelDataSource, VoxelFormatError, read_imnet_hdf5, read_voxel_npy

# 2 train, 1 dev, 1 test sequence per category; 16 px renders (the writer ignores them)
SPEC = spec.SyntheticSpec(categories=("chair", "mug"), sequences=4, frames=4, image_size=(16, 16))
CHAIR = voxels.SYNSETS["chair"]


@pytest.fixture(scope="module")
def voxel_root(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("voxels") / "builtin"
    return generate_dataset(SPEC, str(out), writer_factory=VoxelWriter, progress=False, fmt="voxels")


@pytest.fixture(scope="module")
def truth():
    """Sequence name -> the object's (D, H, W) occupancy at 64^3 (the objects render_sequence builds)."""
    objects = {
        sequence_name(c, i): make_object(c, sequence_rngs(SPEC.seed, c, i)[0], SPEC.object_radius)
        for c in SPEC.categories for i in range(SPEC.sequences)
    }
    return {name: obj.occupancy(64, SPEC.volume_extent) for name, obj in objects.items()}


def make_source(root, **fields) -> VoxelDataSource:
    cfg = get_default_args(VoxelDataSource)
    cfg.dataset_root, cfg.batch_size = str(root), 2
    for key, value in fields.items():
        cfg[key] = value
    return VoxelDataSource(**cfg)


def write_objects(root, objects, resolution=64):
    """Writes (name, SyntheticObject) pairs as train sequences through the VoxelWriter."""
    writer = VoxelWriter(str(root), dataclasses.replace(SPEC, occupancy_resolution=resolution))
    for index, (name, obj) in enumerate(objects):
        writer.add(RenderedSequence(name, obj.category, index, "train", obj, None, None, (0, 0)))
    writer.finish()


# ---- round trip and layouts ----


def test_both_layouts_read_back_the_objects_occupancy(voxel_root, truth):
    for category in SPEC.categories:
        for split in voxels.NPY_SPLITS:
            array = read_voxel_npy(voxels.npy_path(voxel_root, category, split))
            for i, name in enumerate(array.names):
                np.testing.assert_array_equal(array[i], truth[name], err_msg=f"npy {name}")
        imnet_root = os.path.join(voxel_root, "imnet")
        for split in voxels.IMNET_SPLITS:
            array = read_imnet_hdf5(voxels.imnet_path(imnet_root, voxels.SYNSETS[category], split))
            for i, name in enumerate(array.names):
                np.testing.assert_array_equal(array[i], truth[name.split("/")[1]], err_msg=f"imnet {name}")


def test_the_layouts_follow_the_public_structure(voxel_root):
    path = voxels.imnet_path(os.path.join(voxel_root, "imnet"), CHAIR, "train")
    assert path == os.path.join(voxel_root, "imnet", f"{CHAIR}_vox256", f"{CHAIR}_vox256_img_train.hdf5")
    with h5py.File(path, "r") as f:
        assert f["voxels"].dtype == np.uint8 and f["voxels"].shape == (2, 64, 64, 64, 1)
        assert set(np.unique(f["voxels"][:])) == {0, 1}
    with open(path[:-5] + ".txt") as f:
        assert f.read().split() == [f"{CHAIR}/chair_000", f"{CHAIR}/chair_001"]
    with h5py.File(path.replace("_train", "_test"), "r") as f:  # no val split in IM-NET: dev joins test
        assert f["voxels"].shape[0] == 2
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        array = np.load(os.path.join(voxel_root, f"mug_voxels_{split}.npy"))
        assert array.dtype == np.float32 and array.shape == (count, 64, 64, 64)
        assert set(np.unique(array)) <= {0.0, 1.0}


def test_axis_convention_with_an_asymmetric_shape(tmp_path):
    # a box at x > 0, y > 0 (up), z < 0 (back): each axis tells which way it points
    box = Primitive("box", (0.2, 0.3, 0.1), translation=np.array([0.5, 0.4, -0.6]))
    obj = SyntheticObject("chair", [box])
    write_objects(tmp_path, [("chair_000", obj)])
    r = 64
    raw_npy = np.load(tmp_path / "chair_voxels_train.npy")[0]  # file order (x, y, z)
    with h5py.File(voxels.imnet_path(str(tmp_path / "imnet"), CHAIR, "train"), "r") as f:
        raw_h5 = f["voxels"][0, ..., 0]
    for raw in (raw_npy, raw_h5):
        i, j, k = np.nonzero(raw)
        assert i.mean() > 0.7 * r and j.mean() > 0.65 * r and k.mean() < 0.25 * r
        assert np.ptp(j) > np.ptp(i) > np.ptp(k)  # box half sizes: y 0.3 > x 0.2 > z 0.1
    grid = read_voxel_npy(str(tmp_path / "chair_voxels_train.npy"))[0]  # holo3d order (z, y, x)
    np.testing.assert_array_equal(grid, obj.occupancy(r, SPEC.volume_extent))
    z, y, x = np.nonzero(grid)
    assert x.mean() > 0.7 * r and y.mean() > 0.65 * r and z.mean() < 0.25 * r


def test_a_course_file_made_from_points_reads_in_the_world_frame(tmp_path):
    grid = np.zeros((1, 8, 8, 8), np.float32)
    grid[0, 7, 3, 0] = 1.0  # the course sets grid[x, y, z] for a point: here +x edge, mid y, -z edge
    np.save(tmp_path / "table_voxels_train.npy", grid)
    item = read_voxel_npy(str(tmp_path / "table_voxels_train.npy"))[0]
    assert list(zip(*np.nonzero(item))) == [(0, 3, 7)]  # (z, y, x)


# ---- bad input ----


def test_hdf5_without_voxels_names_file_and_key(tmp_path):
    path = str(tmp_path / f"{CHAIR}_vox256_img_train.hdf5")
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", (2, 4, 4), np.uint8)
    with pytest.raises(VoxelFormatError, match=rf"{path}: no dataset 'voxels'.*'pixels'"):
        read_imnet_hdf5(path)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 64, 64), np.float32), r"shape=\(2, 64, 64\): expected \(N, R, R, R\)"),
        (np.zeros((2, 8, 8, 4), np.float32), r"shape=\(2, 8, 8, 4\)"),
        (np.zeros((2, 8, 8, 8), np.int64), r"'array' dtype=int64: expected one of bool, uint8"),
    ],
)
def test_npy_of_wrong_shape_or_dtype_names_file_key_and_value(tmp_path, array, message):
    path = str(tmp_path / "chair_voxels_train.npy")
    np.save(path, array)
    with pytest.raises(VoxelFormatError, match=rf"{path}: .*{message}"):
        read_voxel_npy(path)


def test_hdf5_of_wrong_shape_and_names_of_wrong_length(tmp_path):
    path = str(tmp_path / f"{CHAIR}_vox256_img_train.hdf5")
    with h5py.File(path, "w") as f:
        f.create_dataset("voxels", (2, 8, 8, 8), np.uint8)
    with pytest.raises(VoxelFormatError, match=r"'voxels' shape=\(2, 8, 8, 8\): expected \(N, R, R, R, 1\)"):
        read_imnet_hdf5(path)
    np.save(tmp_path / "mug_voxels_train.npy", np.zeros((2, 8, 8, 8), bool))
    (tmp_path / "mug_voxels_train.txt").write_text("only_one\n")
    with pytest.raises(VoxelFormatError, match=r"mug_voxels_train.txt: names count=1: expected 2"):
        read_voxel_npy(str(tmp_path / "mug_voxels_train.npy"))


def test_missing_category_names_it_and_lists_what_is_there(voxel_root):
    message = r"category 'sofa' has no voxel files; categories found: \['chair', 'mug'\]"
    with pytest.raises(DatasetLayoutError, match=message):
        make_source(voxel_root, categories="chair,sofa").get_datasets_and_dataloaders()


def test_a_broken_file_is_skipped_with_a_warning_when_the_rest_is_usable(tmp_path):
    np.save(tmp_path / "chair_voxels_train.npy", np.ones((3, 8, 8, 8), np.float32))
    np.save(tmp_path / "mug_voxels_train.npy", np.ones((3, 8, 8), np.float32))
    source = make_source(tmp_path, resolution=8)
    with pytest.warns(UserWarning, match=r"mug_voxels_train.npy: array shape=\(3, 8, 8\)"):
        datasets, loaders = source.get_datasets_and_dataloaders()
    assert source.category_names == ["chair", "mug"] and len(datasets.train) == 3
    assert datasets.val is None and loaders.val is None
    os.remove(tmp_path / "chair_voxels_train.npy")
    with pytest.raises(VoxelFormatError, match="mug_voxels_train.npy"):
        make_source(tmp_path, resolution=8).get_datasets_and_dataloaders()


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"file_format='binvox'"):
        make_source(tmp_path, file_format="binvox")
    with pytest.raises(ValueError, match=r"batch_size=0"):
        make_source(tmp_path, batch_size=0)
    with pytest.raises(DatasetLayoutError, match="dataset_root=.*nowhere.*does not exist"):
        make_source(tmp_path / "nowhere")
    np.save(tmp_path / "chair_voxels_train.npy", np.ones((1, 8, 8, 8), np.float32))
    with pytest.raises(VoxelFormatError, match=r"resolution=8: cannot be max-pooled to the requested resolution 64"):
        make_source(tmp_path).get_datasets_and_dataloaders()


# ---- the data source ----


def test_data_source_yields_labelled_tensor_batches(voxel_root, truth):
    source = make_source(voxel_root, resolution=32)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert source.category_names == ["chair", "mug"]
    assert [len(datasets[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    batch = next(iter(loaders.train)).to("cpu")
    assert isinstance(batch, TensorBatch) and batch.batch_size == 2
    assert batch["voxels"].shape == (2, 1, 32, 32, 32) and batch["voxels"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and isinstance(batch["name"], list)
    for voxels_, label, name in zip(batch["voxels"], batch["label"].tolist(), batch["name"]):
        assert name.startswith(source.category_names[label])
        pooled = truth[name].reshape(32, 2, 32, 2, 32, 2).any(axis=(1, 3, 5))  # 2x max-pool
        np.testing.assert_array_equal(voxels_[0].numpy(), pooled)
    assert len(loaders.train) == 2 and len(list(loaders.test)) == 1


def test_batches_are_a_function_of_seed_and_epoch_and_resume_by_skipping(voxel_root):
    def epoch_names(source, epoch, skip=0):
        loader = source.get_datasets_and_dataloaders()[1].train
        loader.batch_sampler.set_epoch(epoch)
        return [b["name"] for b in itertools.islice(iter(loader), skip, None)]

    a, b = make_source(voxel_root, seed=3), make_source(voxel_root, seed=3)
    epochs = [epoch_names(a, e) for e in range(4)]
    assert epochs == [epoch_names(b, e) for e in range(4)]
    assert len({str(e) for e in epochs}) > 1  # epochs reshuffle
    assert epoch_names(b, 2, skip=1) == epochs[2][1:]  # resuming mid-epoch sees the same batches
    assert sorted(sum(epochs[0], [])) == sorted(sum(epochs[1], []))  # every item once per epoch


def test_imnet_format_with_worker_processes_matches_npy(voxel_root):
    npy = make_source(voxel_root, file_format="npy", resolution=16)
    imnet = make_source(voxel_root, file_format="imnet", resolution=16, num_workers=1)
    (npy_sets, _), (imnet_sets, imnet_loaders) = (s.get_datasets_and_dataloaders() for s in (npy, imnet))
    assert imnet.category_names == ["chair", "mug"] and imnet_loaders.val is None
    by_name = {npy_sets.train[i]["name"]: npy_sets.train[i]["voxels"] for i in range(len(npy_sets.train))}
    names = []
    for batch in imnet_loaders.train:  # read in a worker process: h5py handles are opened there
        for grid, name in zip(batch["voxels"], batch["name"]):
            torch.testing.assert_close(grid, by_name[name.split("/")[1]])
            names.append(name)
    assert len(names) == 4


def test_empty_root_uses_the_builtin_dataset_in_voxel_format(tmp_path, monkeypatch):
    monkeypatch.setitem(spec.PRESETS, "tiny", dataclasses.replace(SPEC, categories=("mug",), sequences=3))
    monkeypatch.setenv(builtin.ROOT_ENV, str(tmp_path))
    source = make_source("", builtin_preset="tiny", resolution=16)
    datasets, _ = source.get_datasets_and_dataloaders()
    assert os.path.isfile(tmp_path / "builtin_tiny_voxels" / "mug_voxels_train.npy")
    assert source.category_names == ["mug"] and len(datasets.train) == 1


def test_config_group_composes_and_builds_the_source(voxel_root):
    from holo3d.train.config_cli import CONFIG_DIR, compose_config

    assert (CONFIG_DIR / "data" / "shapenet_voxels.yaml").read_text().startswith("# @package _global_")
    root_key = "data_source_VoxelDataSource_args.dataset_root"
    cfg = compose_config("base", ["+data=shapenet_voxels", f"{root_key}={voxel_root}"])
    assert cfg.data_source_class_type == "VoxelDataSource"
    args = cfg.data_source_VoxelDataSource_args
    assert args.resolution == 64 and args.file_format == "auto"
    source = VoxelDataSource(**{**args, "num_workers": 0, "pin_memory": False})
    assert source.category_names == ["chair", "mug"]


def test_data_command_writes_the_asked_occupancy_resolution(tmp_path, capsys):
    from holo3d.data.synthetic.__main__ import main

    out = tmp_path / "vox32"
    argv = ["--out", str(out), "--format", "voxels", "--categories", "mug", "--sequences", "3", "--frames", "4",
            "--image-size", "16", "--no-progress"]
    assert main([*argv, "--occupancy-resolution", "32"]) == 0
    files = voxels.find_npy_files(str(out))
    grids = [np.load(path) for path in files["mug"].values()]
    assert grids and all(g.shape[1:] == (32, 32, 32) for g in grids)
    assert main([*argv[:1], str(tmp_path / "bad"), *argv[2:], "--occupancy-resolution", "1"]) == 2
    assert "occupancy_resolution=1" in capsys.readouterr().err
