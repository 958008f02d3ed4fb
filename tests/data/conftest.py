"""Fixtures of the data tests: a tiny CO3Dv2-format synthetic dataset generated once per session.

2 categories x 4 sequences (2 train, 1 dev, 1 test) x 6 frames at 64 px, png images (lossless, so
tests can compare pixels). Tests that damage files work on a copy (``co3d_copy``). Helpers are
handed out as fixtures rather than imported, so this conftest never clashes with other folders'.
"""

import dataclasses
import shutil

import pytest
from pytorch3d.implicitron.tools.config import get_default_args

from holo3d.data import Holo3DDataSource
from holo3d.data.synthetic import SyntheticSpec, generate_dataset

TINY_SPEC = SyntheticSpec(categories=("chair", "mug"), sequences=4, frames=6, image_size=(64, 64), image_format="png")
PROVIDER = "dataset_map_provider_JsonIndexDatasetMapProviderV2_args"
LOADER = "data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"


@pytest.fixture(scope="session")
def tiny_spec() -> SyntheticSpec:
    return TINY_SPEC


@pytest.fixture(scope="session")
def co3d_root(tmp_path_factory) -> str:
    """Root of the session's tiny dataset (read-only for tests)."""
    return generate_dataset(TINY_SPEC, str(tmp_path_factory.mktemp("synthetic") / "co3d"), progress=False)


@pytest.fixture
def co3d_copy(co3d_root, tmp_path) -> str:
    """A private copy of the tiny dataset that a test may damage."""
    return str(shutil.copytree(co3d_root, tmp_path / "co3d"))


def _config(root, category="chair", subset="fewview_dev", **loader):
    cfg = get_default_args(Holo3DDataSource)
    provider = cfg[PROVIDER]
    provider.dataset_root = str(root)
    provider.category = category
    provider.subset_name = subset
    provider.num_load_workers = 1
    dataset = provider.dataset_Holo3DJsonIndexDataset_args
    dataset.image_height, dataset.image_width = TINY_SPEC.image_size
    cfg[LOADER].frames_per_scene = 3
    for key, value in loader.items():
        cfg[LOADER][key] = value
    return cfg


@pytest.fixture(scope="session")
def source_config():
    """source_config(root, category, subset, **loader_fields) -> Holo3DDataSource config."""
    return _config


@pytest.fixture(scope="session")
def make_source():
    """make_source(root, category, subset, **loader_fields) -> Holo3DDataSource."""
    return lambda *args, **kwargs: Holo3DDataSource(**_config(*args, **kwargs))


@pytest.fixture(scope="session")
def spec_with():
    """spec_with(**changes) -> the tiny spec with fields replaced."""
    return lambda **changes: dataclasses.replace(TINY_SPEC, **changes)
