"""SRN cars/chairs: the writer's layout, camera conversion by reprojection, bad input, the provider
through holo3d's multi-scene loader and the Hydra data group.

One tiny built-in set (chairs: 2 train, 1 val, 1 test objects x 6 views at 48 x 64, non-square so
that the x / y conventions cannot hide each other) is written once per module; tests that damage
files work on a copy.
"""

import dataclasses
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args
from pytorch3d.io import IO
from pytorch3d.renderer import MeshRasterizer, RasterizationSettings

from holo3d.data import srn  # noqa: F401  (registers SrnDatasetMapProvider before configs expand)
from holo3d.data.data_source import Holo3DDataSource
from holo3d.data.dataset_layout import DatasetLayoutError
from holo3d.data.scene_batch import SceneBatch
from holo3d.data.srn import (
    SrnDataset,
    SrnDatasetMapProvider,
    SrnDataWarning,
    SrnFormatError,
    index_split,
    read_srn_intrinsics,
    read_srn_pose,
    split_train_val,
)
from holo3d.data.synthetic import SyntheticSpec, builtin, generate_dataset, get_preset
from holo3d.data.synthetic.orbit import sample_orbit
from holo3d.data.synthetic.renderer import to_pytorch3d_cameras
from holo3d.data.synthetic.sequence import sequence_rngs
from holo3d.data.synthetic.srn_writer import GROUND_TRUTH_DIR, SrnWriter, shared_intrinsics
from holo3d.train.config_cli import compose_config

SPEC = SyntheticSpec(categories=("chair",), sequences=4, frames=6, image_size=(48, 64), image_format="png")
H, W = SPEC.image_size
SPLITS = {"train": "chairs_train", "val": "chairs_val", "test": "chairs_test"}
LOADER = "data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"
PROVIDER = "dataset_map_provider_SrnDatasetMapProvider_args"


@pytest.fixture(scope="module")
def srn_root(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("srn") / "root"
    return generate_dataset(SPEC, str(out), writer_factory=SrnWriter, progress=False, fmt="srn")


@pytest.fixture
def srn_copy(srn_root, tmp_path) -> str:
    return str(shutil.copytree(srn_root, tmp_path / "srn"))


def provider(root, **fields) -> SrnDatasetMapProvider:
    expand_args_fields(SrnDatasetMapProvider)
    return SrnDatasetMapProvider(dataset_root=str(root), category="chairs", **fields)


def renderer_cameras(object_id: str):
    """The NDC cameras the writer rendered object ``object_id`` with (no rendering needed)."""
    _, camera_rng = sequence_rngs(SPEC.seed, "chair", int(object_id.split("_")[1]))
    orbit = sample_orbit(camera_rng, SPEC.frames, object_radius=SPEC.object_radius)
    return to_pytorch3d_cameras(shared_intrinsics(orbit), SPEC.image_size, "cpu")


def load_mesh(root, split, object_id):
    """The object's ground-truth mesh (the geometry the writer rendered)."""
    return IO().load_mesh(os.path.join(root, GROUND_TRUTH_DIR, split, object_id, "mesh.ply"))


def mesh_vertices(root, split, object_id) -> torch.Tensor:
    return load_mesh(root, split, object_id).verts_packed()  # (P, 3)


def project(cameras, points, hw=(H, W)) -> torch.Tensor:
    """(V, P, 2) screen-space pixel coordinates of points (P, 3) in every camera."""
    return cameras.transform_points_screen(points[None].expand(len(cameras), -1, -1), image_size=hw)[..., :2]


# ------------------------------------------------------------------------------ reprojection


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_loaded_cameras_project_the_mesh_where_the_renderer_did(srn_root, split):
    dataset = getattr(provider(srn_root).get_dataset_map(), split)
    for object_id in dataset.sequence_names():
        mesh = load_mesh(srn_root, SPLITS[split], object_id)
        verts = mesh.verts_packed()  # (P, 3)
        loaded = project(dataset.object_cameras(object_id), verts)  # (V, P, 2)
        assert (loaded - project(renderer_cameras(object_id), verts)).abs().max() < 0.5
        for index, xy in zip(dataset.sequence_indices_in_order(object_id), loaded):
            frame = dataset[index]
            assert torch.allclose(project(frame.camera, verts)[0], xy, atol=1e-3)  # the object's camera
            mask = frame.fg_probability[0] > 0.5  # (H, W)
            assert silhouette_iou(mesh, frame.camera, mask) > 0.99
            # every foreground pixel lies within the projected vertices' box (1 px of rounding)
            rows, cols = torch.nonzero(mask, as_tuple=True)
            low, high = xy.min(0).values.floor() - 1, xy.max(0).values.ceil() + 1
            assert cols.min() >= low[0] and cols.max() < high[0] and rows.min() >= low[1] and rows.max() < high[1]


def silhouette_iou(mesh, camera, mask) -> float:
    """IoU of ``mask`` (H, W) and the silhouette of ``mesh`` rasterised through ``camera``."""
    rasterizer = MeshRasterizer(cameras=camera, raster_settings=RasterizationSettings(image_size=(H, W)))
    drawn = rasterizer(mesh).pix_to_face[0, ..., 0] >= 0  # (H, W)
    return float((drawn & mask).sum() / (drawn | mask).sum())


def test_pose_files_are_opencv_camera_to_world(srn_root):
    """Projection with the OpenCV formula from the raw files equals the loaded PyTorch3D projection."""
    folder = os.path.join(srn_root, "chairs_train", "chair_000")
    f, cx, cy = np.loadtxt(os.path.join(folder, "intrinsics.txt"), max_rows=1)[:3]
    verts = mesh_vertices(srn_root, "chairs_train", "chair_000").double().numpy()  # (P, 3)
    dataset = provider(srn_root).get_dataset_map().train
    loaded = project(dataset.object_cameras("chair_000"), torch.from_numpy(verts).float())
    for view in range(SPEC.frames):
        c2w = np.loadtxt(os.path.join(folder, "pose", f"{view:06d}.txt")).reshape(4, 4)
        cam = (verts - c2w[:3, 3]) @ c2w[:3, :3]  # (P, 3) = R^T (X - centre), x right, y down, z forward
        assert (cam[:, 2] > 0).all()
        uv = np.stack([f * cam[:, 0] / cam[:, 2] + cx, f * cam[:, 1] / cam[:, 2] + cy], axis=-1)
        assert np.abs(uv - loaded[view].double().numpy()).max() < 0.01


def test_resizing_and_scaled_line_four_keep_the_geometry(srn_root, srn_copy):
    verts = mesh_vertices(srn_root, "chairs_train", "chair_000")
    reference = project(provider(srn_root).get_dataset_map().train.object_cameras("chair_000"), verts)
    # images at half the resolution line 4 states (intrinsics in line-4 pixels): same cameras
    path = os.path.join(srn_copy, "chairs_train", "chair_000", "intrinsics.txt")
    lines = open(path).read().splitlines()
    f, cx, cy = (2 * float(v) for v in lines[0].split()[:3])
    lines[0], lines[3] = f"{f} {cx} {cy} 0.", f"{2 * H} {2 * W}"
    open(path, "w").write("\n".join(lines) + "\n")
    scaled = provider(srn_copy).get_dataset_map().train.object_cameras("chair_000")
    assert (project(scaled, verts) - reference).abs().max() < 1e-3
    # frames resized to 32 x 32: the projection scales per axis with the image
    resized = provider(srn_root, image_size=32).get_dataset_map().train
    frame = resized[0]
    assert frame.image_rgb.shape == (3, 32, 32) and frame.fg_probability.shape == (1, 32, 32)
    assert frame.image_size_hw.tolist() == [H, W] and frame.effective_image_size_hw.tolist() == [32, 32]
    xy = project(resized.object_cameras("chair_000"), verts, hw=(32, 32))
    assert (xy - reference * torch.tensor([32 / W, 32 / H])).abs().max() < 1e-3


# ------------------------------------------------------------------------------------ layout


def test_layout_is_the_public_srn_layout(srn_root):
    """Checked with plain file reading, not with holo3d's reader."""
    splits = sorted(n for n in os.listdir(srn_root) if os.path.isdir(os.path.join(srn_root, n)))
    assert splits == sorted([GROUND_TRUTH_DIR, *SPLITS.values()])
    counts = {}
    for split in SPLITS.values():
        for object_id in os.listdir(os.path.join(srn_root, split)):
            folder = os.path.join(srn_root, split, object_id)
            assert sorted(os.listdir(folder)) == ["intrinsics.txt", "pose", "rgb"]
            images = sorted(os.listdir(os.path.join(folder, "rgb")))
            poses = sorted(os.listdir(os.path.join(folder, "pose")))
            assert images == [f"{i:06d}.png" for i in range(SPEC.frames)]
            assert [p[:-4] for p in poses] == [i[:-4] for i in images]
            assert all(re.fullmatch(r"\d{6}\.txt", p) for p in poses)
            for name in poses:
                assert len(open(os.path.join(folder, "pose", name)).read().split()) == 16
            lines = open(os.path.join(folder, "intrinsics.txt")).read().splitlines()
            assert len(lines) == 4 and len(lines[0].split()) == 4 and lines[0].split()[3] == "0."
            assert len(lines[1].split()) == 3 and len(lines[2].split()) == 1 and lines[3].split() == [str(H), str(W)]
            with Image.open(os.path.join(folder, "rgb", images[0])) as image:
                assert image.format == "PNG" and image.size == (W, H) and image.mode in ("RGB", "RGBA")
                corner = np.asarray(image.convert("RGB"))[0, 0]
            assert corner.tolist() == [255, 255, 255]  # on white
            counts[split] = counts.get(split, 0) + 1
    assert counts == {"chairs_train": 2, "chairs_val": 1, "chairs_test": 1}


# --------------------------------------------------------------------------------- bad input


def _write_pose(folder, frame, text):
    open(os.path.join(folder, "pose", f"{frame:06d}.txt"), "w").write(text)


def _scaled_rotation(folder, frame):
    pose = np.loadtxt(os.path.join(folder, "pose", f"{frame:06d}.txt")).reshape(4, 4)
    pose[:3, :3] *= 1.1
    _write_pose(folder, frame, " ".join(map(str, pose.reshape(-1))))


def _nan_pose(folder, frame):
    pose = np.loadtxt(os.path.join(folder, "pose", f"{frame:06d}.txt")).reshape(4, 4)
    pose[0, 3] = np.nan
    _write_pose(folder, frame, " ".join(map(str, pose.reshape(-1))))


def _small_image(folder, frame):
    Image.new("RGB", (32, 32), "white").save(os.path.join(folder, "rgb", f"{frame:06d}.png"))


FRAME_DEFECTS = {
    "pose_not_4x4": (lambda d, f: _write_pose(d, f, " ".join(["1"] * 15)), r"15 numbers, expected 16"),
    "pose_rows_not_4x4": (lambda d, f: _write_pose(d, f, "1 0 0 0 0\n1 0 0\n0 0 1 0\n0 0 0 1\n"), r"4 rows of 4"),
    "non_orthonormal_rotation": (_scaled_rotation, r"not orthonormal .*det\(R\) = 1\.33"),
    "nan_pose": (_nan_pose, r"pose entry \[0\]\[3\] is nan"),
    "image_wrong_size": (_small_image, rf"image is 32x32 \(HxW\), the object's other images are {H}x{W}"),
    "image_without_pose": (lambda d, f: os.remove(os.path.join(d, "pose", f"{f:06d}.txt")), r"no pose file"),
}


@pytest.mark.parametrize("defect", sorted(FRAME_DEFECTS))
def test_a_bad_frame_is_named_and_left_out(srn_copy, defect):
    damage, reason = FRAME_DEFECTS[defect]
    folder = os.path.join(srn_copy, "chairs_train", "chair_000")
    damage(folder, 2)
    bad_file = os.path.join(folder, "rgb" if defect in ("image_wrong_size", "image_without_pose") else "pose", "000002")
    with pytest.warns(SrnDataWarning, match=re.escape(bad_file) + r"\.(png|txt)?.*" + reason):
        train = provider(srn_copy).get_dataset_map().train
    numbers = {train[i].sequence_name: [] for i in range(len(train))}
    for i in range(len(train)):
        numbers[train[i].sequence_name].append(int(train[i].frame_number))
    assert sorted(numbers["chair_000"]) == [0, 1, 3, 4, 5]
    assert sorted(numbers["chair_001"]) == list(range(SPEC.frames))


@pytest.mark.parametrize("defect", ["no_views", "bad_intrinsics", "every_pose_nan"])
def test_a_broken_object_is_named_and_skipped(srn_copy, defect):
    folder = os.path.join(srn_copy, "chairs_train", "chair_000")
    if defect == "no_views":
        shutil.rmtree(os.path.join(folder, "rgb"))
        os.makedirs(os.path.join(folder, "rgb"))
        match = re.escape(os.path.join(folder, "rgb")) + ": no views"
    elif defect == "bad_intrinsics":
        open(os.path.join(folder, "intrinsics.txt"), "w").write("131.25 64 64 0.\n0. 0. 0.\n1.\n")
        match = re.escape(os.path.join(folder, "intrinsics.txt")) + ": 3 non-empty lines, expected 4"
    else:
        for frame in range(SPEC.frames):
            _nan_pose(folder, frame)
        match = "skipping object .*chair_000.*is nan"
    with pytest.warns(SrnDataWarning, match=match):
        train = provider(srn_copy).get_dataset_map().train
    assert list(train.sequence_names()) == ["chair_001"] and len(train) == SPEC.frames


@pytest.mark.parametrize(
    "text,message",
    [
        ("1 2 3", r"3 numbers, expected 16"),
        ("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 x", r"non-number"),
        ("1 0 0 0 0 1 0 0 0 0 -1 0 0 0 0 1", r"det\(R\) = -1"),
        ("1 0 0 0 0 1 0 0 0 0 1 0 0 0 1 1", r"last row"),
        ("1 0 0 0 0 1 0 0 0 0 1 inf 0 0 0 1", r"\[2\]\[3\] is inf"),
    ],
)
def test_pose_reader_errors_name_file_and_value(tmp_path, text, message):
    path = tmp_path / "000000.txt"
    path.write_text(text)
    with pytest.raises(SrnFormatError, match=re.escape(str(path)) + ".*" + message):
        read_srn_pose(str(path))


def test_readers_accept_the_public_variants(tmp_path):
    (tmp_path / "one_line.txt").write_text("1 0 0 0.5 0 1 0 0 0 0 1 2 0 0 0 1\n")
    (tmp_path / "four_lines.txt").write_text("1 0 0 0.5\n0 1 0 0\n0 0 1 2\n0 0 0 1\n")
    one_line, four_lines = (read_srn_pose(str(tmp_path / n)) for n in ("one_line.txt", "four_lines.txt"))
    assert np.array_equal(one_line, four_lines) and one_line[0, 3] == 0.5
    (tmp_path / "intrinsics.txt").write_text("131.25 64. 64. 0.\n0. 0. 0.\n1.\n128 128\n")
    intrinsics = read_srn_intrinsics(str(tmp_path / "intrinsics.txt"))
    assert (intrinsics.focal, intrinsics.height, intrinsics.width) == (131.25, 128, 128)
    assert intrinsics.pixel_intrinsics(64, 64) == (65.625, 65.625, 32.0, 32.0)
    (tmp_path / "bad.txt").write_text("131.25 64. 64. 0.\n0. 0. 0.\n1.\n128 abc\n")
    with pytest.raises(SrnFormatError, match=r"bad\.txt line 4 \(H W\).*non-number.*'128 abc'"):
        read_srn_intrinsics(str(tmp_path / "bad.txt"))


def test_missing_split_or_category_names_the_path_and_what_is_there(srn_copy):
    shutil.rmtree(os.path.join(srn_copy, "chairs_val"))
    with pytest.raises(DatasetLayoutError, match=re.escape(os.path.join(srn_copy, "chairs_val")) + ".*chairs_train"):
        provider(srn_copy)
    provider(srn_copy, split_train_val_from_train=True)  # GeNVS's split does not need chairs_val
    expand_args_fields(SrnDatasetMapProvider)
    listing = r"cars_train does not exist.*categories with a _train split: \['chairs'\]"
    with pytest.raises(DatasetLayoutError, match=listing):
        SrnDatasetMapProvider(dataset_root=srn_copy, category="cars")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        provider(os.path.join(srn_copy, "nowhere"))


# ------------------------------------------------------------------------- splits and loaders


def test_genvs_split_is_a_seeded_90_10_split_by_object():
    ids = [f"obj{i:03d}" for i in range(100)]
    train, val = split_train_val(ids, 0.1, seed=0)
    assert len(val) == 10 and sorted(train + val) == ids and not set(train) & set(val)
    assert split_train_val(list(reversed(ids)), 0.1, seed=0) == (train, val)
    assert split_train_val(ids, 0.1, seed=1)[1] != val
    assert split_train_val(["a", "b"], 0.1, 0)[1] and split_train_val(["a"], 0.1, 0) == (["a"], [])


def test_provider_genvs_split_covers_the_train_folder(srn_root):
    datasets = provider(srn_root, split_train_val_from_train=True, val_fraction=0.5).get_dataset_map()
    train, val = list(datasets.train.sequence_names()), list(datasets.val.sequence_names())
    assert sorted(train + val) == ["chair_000", "chair_001"] and len(val) == 1
    assert list(datasets.test.sequence_names()) == ["chair_003"]
    assert datasets.train.category_to_sequence_names() == {"chairs": train}


def _data_source_config(root, **loader):
    cfg = get_default_args(Holo3DDataSource)
    cfg.dataset_map_provider_class_type = "SrnDatasetMapProvider"
    cfg[PROVIDER].dataset_root = str(root)
    cfg[PROVIDER].category = "chairs"
    cfg[LOADER].update(loader)
    return cfg


@pytest.mark.filterwarnings("ignore:.*scenes repeat within a batch")  # 1 val and 1 test object
def test_multi_scene_loader_yields_scene_batches(srn_root):
    cfg = _data_source_config(srn_root, scenes_per_batch=2, frames_per_scene=4, dataset_length_train=3)
    source = Holo3DDataSource(**cfg)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert isinstance(datasets.train, SrnDataset)
    for batch in loaders.train:
        assert batch.image_rgb.shape == (8, 3, H, W) and batch.fg_probability.shape == (8, 1, H, W)
        assert batch.camera.R.shape == (8, 3, 3)
        scenes = SceneBatch.from_frame_data(batch, frames_per_scene=4)
        assert scenes.image_rgb.shape == (2, 4, 3, H, W) and sorted(scenes.sequence_name) == ["chair_000", "chair_001"]
        assert all(len(set(row.tolist())) == 4 for row in batch.frame_number.view(2, 4))
    assert next(iter(loaders.val)).image_rgb.shape == (8, 3, H, W)  # the one val object, repeated


@pytest.mark.filterwarnings("ignore:.*scenes repeat within a batch")
def test_hydra_data_group_switches_the_provider(srn_root):
    cfg = compose_config("base", ["+data=srn_cars"])
    data = cfg.data_source_Holo3DDataSource_args
    assert data.dataset_map_provider_class_type == "SrnDatasetMapProvider"
    assert data[PROVIDER].category == "cars"
    key = "data_source_Holo3DDataSource_args"
    cfg = compose_config("base", ["+data=srn_chairs", f"{key}.{PROVIDER}.dataset_root={srn_root}",
                                  f"{key}.{LOADER}.frames_per_scene=3", f"{key}.{LOADER}.num_workers=0",
                                  f"{key}.{LOADER}.pin_memory=false"])
    source = Holo3DDataSource(**cfg.data_source_Holo3DDataSource_args)
    batch = next(iter(source.get_datasets_and_dataloaders()[1].train))
    assert batch.image_rgb.shape[1:] == (3, H, W) and set(batch.sequence_category) == {"chairs"}


def test_builtin_dataset_in_srn_format(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLO3D_DATA_ROOT", str(tmp_path))
    # the "tiny" preset's categories and sequence sets, at a quarter of its pixels (faster)
    small = dataclasses.replace(get_preset("tiny"), frames=4, image_size=(24, 24))
    monkeypatch.setattr(builtin, "get_preset", lambda name: small)
    expand_args_fields(SrnDatasetMapProvider)
    datasets = SrnDatasetMapProvider(category="mugs", builtin_preset="tiny").get_dataset_map()
    assert os.path.isdir(tmp_path / "builtin_tiny_srn" / "mugs_train")
    assert [len(list(getattr(datasets, s).sequence_names())) for s in ("train", "val", "test")] == [2, 1, 1]
    with pytest.raises(DatasetLayoutError, match=r"categories with a _train split: \['chairs', 'mugs'\]"):
        SrnDatasetMapProvider(category="cars", builtin_preset="tiny")
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        SrnDatasetMapProvider(category="mugs", builtin_preset="tiny", val_fraction=1.5)


def test_generation_renders_each_object_once_with_the_stored_cameras(tmp_path, monkeypatch):
    from holo3d.data.synthetic import renderer, sequence, srn_writer

    drawn = []
    real = renderer.render_views

    def counting(mesh, cameras, *args, **kwargs):
        drawn.append(cameras)
        return real(mesh, cameras, *args, **kwargs)

    monkeypatch.setattr(sequence, "render_views", counting)
    monkeypatch.setattr(srn_writer, "render_views", lambda *a, **k: pytest.fail("the SRN writer re-rendered"))
    spec = SyntheticSpec(categories=("car",), sequences=3, frames=4, image_size=(24, 24), image_format="png")
    generate_dataset(spec, str(tmp_path / "srn"), writer_factory=SrnWriter, progress=False, fmt="srn")
    assert len(drawn) == 3
    for cameras in drawn:  # rendered with the one intrinsic matrix the SRN files store
        assert (cameras.focal_length == cameras.focal_length[:1]).all()
        assert (cameras.principal_point == cameras.principal_point[:1]).all()
