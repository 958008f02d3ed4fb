"""The pre-trained model shipped for `make demo` (holo3d/assets/demo_voxel_ldm): a self-contained export
of at most 20 MB that ships in the wheel, loads with holo3d.load on CPU and samples every category,
each recognisably its own (nearest training-like shape of the same category)."""

import fnmatch
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import holo3d
from holo3d import demo
from holo3d.data.synthetic import generate_dataset, spec
from holo3d.data.synthetic.voxel_writer import VoxelWriter
from holo3d.data.voxels import npy_path, to_world_frame
from holo3d.export import CONFIG_NAME, WEIGHTS_NAME, is_export_dir

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["chair", "mug", "table"]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return holo3d.load(demo.PRETRAINED, device="cpu")


def test_shipped_export_is_small_self_contained_and_in_the_wheel():
    folder = demo.PRETRAINED
    assert is_export_dir(folder) and (folder / WEIGHTS_NAME).stat().st_size <= 20 * 2**20
    args = OmegaConf.load(folder / CONFIG_NAME).model_factory_HoloModelFactory_args.model_VoxelLDM_args
    assert args.autoencoder_exp_dir == "" and args.autoencoder_args.resolution == 32  # no stage-1 folder needed
    assert json.loads((folder / "pretraining.json").read_text())["train_minutes"] > 0
    recorded = [OmegaConf.to_container(OmegaConf.load(folder / CONFIG_NAME)),
                json.loads((folder / "export.json").read_text())]
    absolute = [text for text in _strings(recorded) if Path(text).is_absolute()]
    assert not absolute, f"the shipped export names this machine's folders: {absolute}"
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = "holo3d.assets.demo_voxel_ldm"
    assert package in setuptools["packages"] and folder == REPO / Path(*package.split("."))
    for path in folder.iterdir():
        assert any(fnmatch.fnmatch(path.name, p) for p in setuptools["package-data"][package]), f"{path} not packaged"


def _strings(value):
    """Every string in nested dicts / lists."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_shipped_export_samples_every_category_on_cpu(model):
    assert model.category_names == CATEGORIES and not model.training
    for category in CATEGORIES:
        occupancy = model.sample(2, cond=model.conditions(2, category), steps=10, guidance_scale=2.0,
                                 generator=torch.Generator().manual_seed(0))
        assert occupancy.shape == (2, 1, 32, 32, 32) and 0 <= occupancy.min() <= occupancy.max() <= 1
        solid = (occupancy > 0.5).flatten(1).float().mean(1)
        assert ((solid > 0.005) & (solid < 0.3)).all(), f"{category}: occupied fractions {solid.tolist()}"


def _builtin_shapes(root: Path) -> dict:
    """{category: (N, 32, 32, 32) bool} training shapes of a small built-in voxel set, in holo3d's
    (z, y, x) grid order, max-pooled from 64^3 as VoxelDataSource serves them at resolution 32."""
    tiny = spec.SyntheticSpec(categories=tuple(CATEGORIES), sequences=10, frames=4, image_size=(16, 16))
    generate_dataset(tiny, str(root), writer_factory=VoxelWriter, progress=False, fmt="voxels")
    shapes = {}
    for category in CATEGORIES:
        grids = to_world_frame(np.load(npy_path(str(root), category, "train")))  # (N, 64, 64, 64)
        grids = torch.from_numpy(np.ascontiguousarray(grids, dtype=np.float32))
        shapes[category] = F.max_pool3d(grids[:, None], 2)[:, 0] > 0.5
    return shapes


def test_samples_are_nearest_to_shapes_of_their_own_category(model, tmp_path):
    """Each category's samples (the demo's sampler settings) are closest, by IoU, to a training-like
    shape of that category: the class conditioning works."""
    shapes = _builtin_shapes(tmp_path / "voxels")
    bank = torch.cat([shapes[c] for c in CATEGORIES]).flatten(1).float()  # (M, R^3)
    labels = torch.cat([torch.full((len(shapes[c]),), i) for i, c in enumerate(CATEGORIES)])
    generator = torch.Generator().manual_seed(0)
    for i, category in enumerate(CATEGORIES):
        occupancy = model.sample(4, cond=model.conditions(4, category), generator=generator, **demo.SAMPLE_SETTINGS)
        solid = (occupancy[:, 0] > 0.5).flatten(1).float()  # (4, R^3)
        inter = solid @ bank.T
        iou = inter / (solid.sum(1, keepdim=True) + bank.sum(1) - inter).clamp_min(1)
        nearest = labels[iou.argmax(1)]
        assert (nearest == i).float().mean() >= 0.75, f"{category} samples nearest to {nearest.tolist()}"
