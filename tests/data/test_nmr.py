"""NMR / DVR ShapeNet: the writer's layout, DVR's camera conventions, the reader (folder and zip),
its errors on broken input, and the provider through holo3d's multi-scene loader.

One tiny built-in NMR set (2 categories x 3 objects x 5 views at 40 x 56 px: non-square, so the
per-axis [-1, 1] of DVR and PyTorch3D's isotropic NDC cannot be confused) is generated per session;
tests that damage files work on a copy.
"""

import os
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch
import yaml
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args

from holo3d.data import Holo3DDataSource, SceneBatch
from holo3d.data import nmr
from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.synthetic import SyntheticSpec, builtin, generate_dataset, render_sequence
from holo3d.data.synthetic.nmr_writer import GROUND_TRUTH_DIR, NmrWriter
from holo3d.data.synthetic.renderer import to_pytorch3d_cameras

SPEC = SyntheticSpec(categories=("chair", "mug"), sequences=3, frames=5, image_size=(40, 56), image_format="png")
CHAIR, MUG = "03001627", "03797390"
LOADER = "data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"
PROVIDER = "dataset_map_provider_NmrDatasetMapProvider_args"


@pytest.fixture(scope="module")
def nmr_root(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("nmr") / "NMR_Dataset")
    return generate_dataset(SPEC, out, writer_factory=NmrWriter, progress=False, fmt="nmr")


@pytest.fixture
def nmr_copy(nmr_root, tmp_path) -> str:
    return str(shutil.copytree(nmr_root, tmp_path / "NMR_Dataset"))


def _frames_by_name(dataset):
    return {(dataset[i].sequence_name, int(dataset[i].frame_number)): i for i in range(len(dataset))}


def _pixels_from_dvr_files(npz_path, view, points, height, width):
    """(P, 2) pixel (x, y) of world points by DVR's own formula on the raw matrices:
    p = camera_mat @ world_mat @ [X, 1]; [-1, 1] spans each side, x right, y down."""
    with np.load(npz_path) as cams:
        projection = cams[f"camera_mat_{view}"].astype(np.float64) @ cams[f"world_mat_{view}"].astype(np.float64)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ projection.T
    uv = homogeneous[:, :2] / homogeneous[:, 2:3]
    return np.stack([(uv[:, 0] + 1) * width / 2, (uv[:, 1] + 1) * height / 2], axis=1)


# ----------------------------------------------------------------------------- cameras


@pytest.mark.parametrize("category", ["chair", "mug"])
def test_loaded_cameras_reproject_mesh_vertices_like_the_renderer(nmr_root, category):
    datasets = nmr.load_nmr_dataset_map(nmr_root)
    sequence = render_sequence(SPEC, category, 0)  # same seed: the same object and cameras
    vertices = sequence.obj.mesh().verts_packed()  # (P, 3)
    original = to_pytorch3d_cameras(sequence.cameras, SPEC.image_size, "cpu")
    by_name = _frames_by_name(datasets.train)
    synset = CHAIR if category == "chair" else MUG
    for view in range(SPEC.frames):
        frame = datasets.train[by_name[(f"{synset}/{sequence.name}", view)]]
        loaded = frame.camera.transform_points_screen(vertices[None])[0, :, :2]  # (P, 2) x, y in px
        expected = original[view].transform_points_screen(vertices[None])[0, :, :2]
        assert (loaded - expected).abs().max() < 0.5
        # vertices land on the object's silhouette (1 px of slack at its edges); parts thinner than
        # a pixel (a chair's rails at 40 px) cover no pixel centre, so a few vertices may miss it
        mask = torch.nn.functional.max_pool2d(frame.fg_probability[None], 3, 1, 1)[0, 0] > 0.5  # (H, W)
        cols, rows = loaded[:, 0].long(), loaded[:, 1].long()
        height, width = SPEC.image_size
        assert cols.min() >= 0 and rows.min() >= 0 and cols.max() < width and rows.max() < height
        assert mask[rows, cols].float().mean() > 0.8
        assert torch.equal(frame.fg_probability[0] > 0.5, sequence.views.mask[view])


def test_files_follow_dvr_conventions(nmr_root):
    """The raw matrices, projected with DVR's formula (no holo3d code), hit the renderer's pixels."""
    sequence = render_sequence(SPEC, "chair", 1)
    vertices = sequence.obj.mesh().verts_packed()
    original = to_pytorch3d_cameras(sequence.cameras, SPEC.image_size, "cpu")
    npz = os.path.join(nmr_root, CHAIR, sequence.name, "cameras.npz")
    for view in range(SPEC.frames):
        expected = original[view].transform_points_screen(vertices[None])[0, :, :2].double().numpy()
        pixels = _pixels_from_dvr_files(npz, view, vertices.double().numpy(), *SPEC.image_size)
        assert np.abs(pixels - expected).max() < 0.01
    world, _ = nmr.read_nmr_cameras(npz, SPEC.frames)
    # pixelNeRF's pose is inverse(world_mat): a camera-to-world matrix with the camera's centre in it
    centres = np.linalg.inv(world)[:, :3, 3]
    assert np.allclose(centres, original.get_camera_center().double().numpy(), atol=1e-4)


def test_pytorch3d_conversion_round_trips_and_view_angles_match_camera_centres(nmr_root):
    world, camera = nmr.read_nmr_cameras(os.path.join(nmr_root, MUG, "mug_000", "cameras.npz"), SPEC.frames)
    cams = nmr.nmr_to_pytorch3d(world, camera, *SPEC.image_size)
    back = nmr.pytorch3d_to_nmr(cams.R, cams.T, cams.focal_length, cams.principal_point, *SPEC.image_size)
    assert np.allclose(back[0], world, atol=1e-6) and np.allclose(back[1], camera, atol=1e-6)
    centre = cams.get_camera_center()  # (V, 3)
    azel = nmr.view_azimuth_elevation(world)  # (V, 2)
    assert torch.allclose(azel[:, 0], torch.atan2(centre[:, 0], centre[:, 2]), atol=1e-4)
    assert torch.allclose(azel[:, 1], torch.asin(centre[:, 1] / centre.norm(dim=1)), atol=1e-4)


def test_scale_mat_is_folded_into_the_world_matrix(tmp_path):
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    world, scale = np.eye(4), np.diag([2.0, 2.0, 2.0, 1.0])
    world[:3, :3], world[:3, 3], scale[:3, 3] = rotation, (0.1, -0.2, 3.0), (0.5, 0.0, 0.0)
    camera = np.diag([2.0, 2.0, 1.0, 1.0])
    np.savez(tmp_path / "cameras.npz", world_mat_0=world, camera_mat_0=camera, scale_mat_0=scale)
    folded, _ = nmr.read_nmr_cameras(str(tmp_path / "cameras.npz"), 1)
    point = np.array([0.3, -0.1, 0.2, 1.0])
    project = lambda p: (p[:2] / p[2])  # noqa: E731
    assert np.allclose(project(camera @ folded[0] @ point), project(camera @ world @ scale @ point))


# ----------------------------------------------------------------------------- layout


def test_layout_matches_the_public_structure(nmr_root):
    with open(os.path.join(nmr_root, "metadata.yaml")) as f:
        metadata = yaml.load(f, Loader=yaml.BaseLoader)
    assert metadata == {CHAIR: {"id": CHAIR, "name": "chair"}, MUG: {"id": MUG, "name": "mug"}}
    for synset, category in ((CHAIR, "chair"), (MUG, "mug")):
        folder = os.path.join(nmr_root, synset)
        lists = {s: open(os.path.join(folder, f"softras_{s}.lst")).read().split() for s in ("train", "val", "test")}
        assert lists == {"train": [f"{category}_000"], "val": [f"{category}_001"], "test": [f"{category}_002"]}
        for name in sum(lists.values(), []):
            obj = os.path.join(folder, name)
            assert sorted(os.listdir(obj)) == ["cameras.npz", "image", "mask"]
            views = [f"{i:04d}.png" for i in range(SPEC.frames)]
            assert sorted(os.listdir(os.path.join(obj, "image"))) == views
            assert sorted(os.listdir(os.path.join(obj, "mask"))) == views
            with np.load(os.path.join(obj, "cameras.npz")) as cams:
                keys = {f"{kind}_{i}" for kind in ("world_mat", "camera_mat") for i in range(SPEC.frames)}
                assert set(cams.files) == keys and all(cams[k].shape == (4, 4) for k in keys)
            assert os.path.isfile(os.path.join(nmr_root, GROUND_TRUTH_DIR, synset, name, "mesh.ply"))
    # the ground-truth folder has no softras lists, so the reader does not take it for a synset
    assert nmr.list_synsets(nmr.open_store(nmr_root)) == [CHAIR, MUG]


def test_frames_hold_what_the_contract_says(nmr_root):
    datasets = nmr.load_nmr_dataset_map(nmr_root, synsets=["mug"])  # by name
    assert list(datasets.train.sequence_names()) == [f"{MUG}/mug_000"] and len(datasets.val) == SPEC.frames
    frame = datasets.train[2]
    height, width = SPEC.image_size
    assert frame.image_rgb.shape == (3, height, width) and 0 <= frame.image_rgb.min() and frame.image_rgb.max() <= 1
    assert frame.fg_probability.shape == (1, height, width)
    assert torch.equal(frame.mask_crop, torch.ones(1, height, width))
    assert (frame.sequence_category, int(frame.frame_number)) == ("mug", 2)
    assert frame.image_size_hw.tolist() == [height, width] and frame.meta[nmr.AZEL_KEY].shape == (2,)
    assert [i for _, _, i in datasets.train.sequence_frames_in_order(f"{MUG}/mug_000")] == list(range(SPEC.frames))
    assert datasets.train.category_to_sequence_names() == {"mug": [f"{MUG}/mug_000"]}


# ----------------------------------------------------------------------------- zip


def test_zip_reads_identical_frames(nmr_root, tmp_path):
    archive = tmp_path / "NMR_Dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for folder, _, files in os.walk(nmr_root):
            for name in files:
                path = os.path.join(folder, name)
                zf.write(path, os.path.join("NMR_Dataset", os.path.relpath(path, nmr_root)))
    from_folder, from_zip = nmr.load_nmr_dataset_map(nmr_root), nmr.load_nmr_dataset_map(str(archive))
    for split in ("train", "val", "test"):
        a, b = getattr(from_folder, split), getattr(from_zip, split)
        assert list(a.sequence_names()) == list(b.sequence_names()) and len(a) == len(b)
        for i in range(0, len(a), 3):
            fa, fb = a[i], b[i]
            assert torch.equal(fa.image_rgb, fb.image_rgb) and torch.equal(fa.fg_probability, fb.fg_probability)
            assert torch.equal(fa.camera.R, fb.camera.R) and torch.equal(fa.camera.T, fb.camera.T)
            assert torch.equal(fa.camera.focal_length, fb.camera.focal_length)
            assert torch.equal(fa.meta[nmr.AZEL_KEY], fb.meta[nmr.AZEL_KEY])
    assert from_zip.train[0].image_path.startswith(f"{archive}:NMR_Dataset/")
    # worker processes open their own handle of the zip
    loader = torch.utils.data.DataLoader(from_zip.train, batch_size=4, num_workers=2, collate_fn=lambda b: b)
    assert sum(len(batch) for batch in loader) == len(from_zip.train)


# ----------------------------------------------------------------------------- bad input


def _npz_without(path, key=None, **replace):
    with np.load(path) as cams:
        arrays = {k: cams[k] for k in cams.files if k != key}
    arrays.update(replace)
    np.savez(path, **arrays)


def _remove_views(obj):
    for name in os.listdir(os.path.join(obj, "image")):
        os.remove(os.path.join(obj, "image", name))


def _resize_first_view(obj):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(os.path.join(obj, "image", "0000.png"))


def _nan_camera(obj):
    npz = os.path.join(obj, "cameras.npz")
    _npz_without(npz, world_mat_3=np.full((4, 4), np.nan, dtype=np.float32))


def _scaled_rotation(obj):
    npz = os.path.join(obj, "cameras.npz")
    with np.load(npz) as cams:
        scaled = cams["world_mat_1"] * np.array([[2], [2], [2], [1]], dtype=np.float32)
    _npz_without(npz, world_mat_1=scaled)


BROKEN_OBJECTS = {
    "no views": (_remove_views, ["image", "no views"]),
    "missing key": (
        lambda obj: _npz_without(os.path.join(obj, "cameras.npz"), "world_mat_2"),
        ["cameras.npz", "'world_mat_2'", "missing"],
    ),
    "nan camera": (_nan_camera, ["cameras.npz", "world_mat_3", "non-finite", "nan"]),
    "not a rotation": (
        _scaled_rotation, ["cameras.npz", "world_mat_1", "not a rotation", "singular values [2.0, 2.0, 2.0]"]
    ),
    "wrong image size": (_resize_first_view, ["image/0000.png", "64x64", "40x56"]),
    "no cameras": (lambda obj: os.remove(os.path.join(obj, "cameras.npz")), ["cameras.npz is missing"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_OBJECTS))
def test_broken_object_is_skipped_with_a_warning_naming_file_key_and_value(nmr_copy, case):
    damage, words = BROKEN_OBJECTS[case]
    damage(os.path.join(nmr_copy, MUG, "mug_000"))
    with pytest.warns(nmr.NmrObjectSkipped) as record:
        datasets = nmr.load_nmr_dataset_map(nmr_copy)
    message = str(record[0].message)
    assert f"{MUG}/mug_000" in message and all(w in message for w in words), message
    assert list(datasets.train.sequence_names()) == [f"{CHAIR}/chair_000"]
    assert len(datasets.val) == len(datasets.test) == 2 * SPEC.frames


def test_wrong_size_in_a_later_view_fails_at_load_or_is_skipped_with_check_all_images(nmr_copy):
    from PIL import Image

    bad = os.path.join(nmr_copy, CHAIR, "chair_000", "image", "0003.png")
    Image.new("RGB", (32, 32), "white").save(bad)
    datasets = nmr.load_nmr_dataset_map(nmr_copy)
    index = list(datasets.train.sequence_indices_in_order(f"{CHAIR}/chair_000"))[3]
    with pytest.raises(nmr.NmrFormatError, match=r"chair_000/image/0003.png: image is 32x32 \(HxW\).*40x56"):
        datasets.train[index]
    with pytest.warns(nmr.NmrObjectSkipped, match="0003.png"):
        checked = nmr.load_nmr_dataset_map(nmr_copy, check_all_images=True)
    assert f"{CHAIR}/chair_000" not in list(checked.train.sequence_names())


def test_missing_synset_or_list_file_is_an_error_naming_path_and_what_is_there(nmr_copy):
    with pytest.raises(DatasetLayoutError, match=r"synset 'airplane' not found.*03001627 \(chair\).*03797390 \(mug\)"):
        nmr.load_nmr_dataset_map(nmr_copy, synsets=["airplane"])
    os.remove(os.path.join(nmr_copy, CHAIR, "softras_val.lst"))
    listed = r"03001627/softras_val.lst is missing.*'softras_test.lst', 'softras_train.lst'"
    with pytest.raises(DatasetLayoutError, match=listed):
        nmr.load_nmr_dataset_map(nmr_copy)
    with pytest.raises(DatasetLayoutError, match="neither a folder nor a zip"):
        nmr.load_nmr_dataset_map(os.path.join(nmr_copy, "nowhere"))


def test_no_readable_train_object_is_an_error(nmr_copy):
    for category, synset in (("chair", CHAIR), ("mug", MUG)):
        os.remove(os.path.join(nmr_copy, synset, f"{category}_000", "cameras.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nmr.NmrObjectSkipped)
        with pytest.raises(DatasetLayoutError, match="no readable train object"):
            nmr.load_nmr_dataset_map(nmr_copy)


def test_read_nmr_cameras_errors(tmp_path):
    path = str(tmp_path / "cameras.npz")
    np.savez(path, world_mat_0=np.eye(4), camera_mat_0=np.diag([2.0, 2.0, 1.0, 1.0]))
    with pytest.raises(nmr.NmrFormatError, match=r"cameras.npz: key 'world_mat_1' is missing"):
        nmr.read_nmr_cameras(path, 2)
    np.savez(path, world_mat_0=np.eye(4), camera_mat_0=np.diag([-2.0, 2.0, 1.0, 1.0]))
    with pytest.raises(nmr.NmrFormatError, match=r"camera_mat_0 has focal \(-2"):
        nmr.read_nmr_cameras(path, 1)
    open(path, "wb").write(b"not an npz")
    with pytest.raises(nmr.NmrFormatError, match="cannot read cameras"):
        nmr.read_nmr_cameras(path, 1)


# ----------------------------------------------------------------------------- provider


def _source_config(root, **loader):
    cfg = get_default_args(Holo3DDataSource)
    cfg.dataset_map_provider_class_type = "NmrDatasetMapProvider"
    cfg[PROVIDER].dataset_root = str(root)
    for key, value in {"scenes_per_batch": 2, "frames_per_scene": 3, **loader}.items():
        cfg[LOADER][key] = value
    return cfg


@pytest.mark.filterwarnings("ignore:(train|val|test) split. only 2 scenes")  # 2 objects per split
def test_provider_through_the_multi_scene_loader(nmr_root):
    source = Holo3DDataSource(**_source_config(nmr_root))
    datasets, loaders = source.get_datasets_and_dataloaders()
    batch = next(iter(loaders.train))
    scenes = SceneBatch.from_frame_data(batch, frames_per_scene=3)
    assert scenes.image_rgb.shape == (2, 3, 3, *SPEC.image_size)  # (S, N, 3, H, W)
    assert scenes.fg_probability.shape == (2, 3, 1, *SPEC.image_size)
    assert sorted(scenes.sequence_name) == [f"{CHAIR}/chair_000", f"{MUG}/mug_000"]
    assert batch.meta[nmr.AZEL_KEY].shape == (6, 2) and len(batch.camera) == 6
    assert source.all_train_cameras is None
    loaders = Holo3DDataSource(**_source_config(nmr_root, scenes_per_batch=3)).get_datasets_and_dataloaders()[1]
    assert len(next(iter(loaders.val)).sequence_name) == 9


def test_provider_builds_the_builtin_set_in_nmr_format_when_root_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLO3D_DATA_ROOT", str(tmp_path))
    small = SyntheticSpec(categories=("chair", "mug"), sequences=3, frames=4, image_size=(24, 24))
    monkeypatch.setattr(builtin, "get_preset", lambda name: small)  # the real "tiny" takes ~10 s
    expand_args_fields(nmr.NmrDatasetMapProvider)
    provider = nmr.NmrDatasetMapProvider(builtin_preset="tiny", builtin_device="cpu")
    datasets = provider.get_dataset_map()
    assert provider.resolved_root() == str(tmp_path / "builtin_tiny_nmr")
    assert {name.split("/")[0] for name in datasets.train.sequence_names()} == {CHAIR, MUG}


def test_hydra_config_group_selects_the_provider():
    from holo3d.train.config_cli import compose_config

    cfg = compose_config("base", ["+data=nmr"])
    source = cfg.data_source_Holo3DDataSource_args
    assert source.dataset_map_provider_class_type == "NmrDatasetMapProvider"
    assert source[PROVIDER].builtin_preset == "demo"


def test_parallel_index_gives_the_same_objects_and_warnings(nmr_copy, monkeypatch):
    os.remove(os.path.join(nmr_copy, MUG, "mug_001", "cameras.npz"))
    monkeypatch.setattr(nmr, "PARALLEL_INDEX_MIN", 1)
    with pytest.warns(nmr.NmrObjectSkipped, match="mug_001/cameras.npz is missing"):
        serial = nmr.load_nmr_dataset_map(nmr_copy)
    with pytest.warns(nmr.NmrObjectSkipped, match="mug_001/cameras.npz is missing"):
        parallel = nmr.load_nmr_dataset_map(nmr_copy, index_workers=2)
    for split in ("train", "val", "test"):
        a, b = getattr(serial, split), getattr(parallel, split)
        assert [o.name for o in a.objects] == [o.name for o in b.objects]
        assert all(torch.equal(x.cameras["R"], y.cameras["R"]) for x, y in zip(a.objects, b.objects))
