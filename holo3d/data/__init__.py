"""holo3d.data: data sources and dataset writers.

    data_source.Holo3DDataSource                CO3Dv2 / built-in data through Implicitron (registered)
    multi_scene_provider.MultiSceneDataLoaderMapProvider   S scenes x N frames batches (registered)
    multi_scene_sampler.MultiSceneBatchSampler  the deterministic, resumable batch sampler
    robust_dataset.Holo3DJsonIndexDataset       JsonIndexDataset that skips unreadable frames (registered)
    scene_batch.SceneBatch                      (S, N, ...) view of a collated batch; view masks, view angles
    tensor_batch.TensorBatch                    non-image batches (voxels + labels, ...)
    voxels.VoxelDataSource                      ShapeNet voxels: IM-NET hdf5 / course npy (registered)
    nmr.NmrDatasetMapProvider                   NMR / DVR 24-view ShapeNet, folder or zip (registered)
    srn.SrnDatasetMapProvider                   SRN cars / chairs (registered)
    synthetic/                                  the built-in procedural dataset and its writers

The registering modules are imported here so that registration never depends on import order.
"""

from holo3d.data import data_source, multi_scene_provider, nmr, robust_dataset, srn, voxels  # noqa: F401  (registration)
from holo3d.data.data_source import Holo3DDataSource
from holo3d.data.multi_scene_provider import MultiSceneDataLoaderMapProvider
from holo3d.data.multi_scene_sampler import MultiSceneBatchSampler
from holo3d.data.robust_dataset import Holo3DJsonIndexDataset, UnreadableFrameWarning, UnreadableSequenceError
from holo3d.data.scene_batch import SceneBatch
from holo3d.data.tensor_batch import TensorBatch
from holo3d.data.voxels import VoxelDataSource

__all__ = [
    "Holo3DDataSource",
    "Holo3DJsonIndexDataset",
    "MultiSceneBatchSampler",
    "MultiSceneDataLoaderMapProvider",
    "SceneBatch",
    "TensorBatch",
    "VoxelDataSource",
    "UnreadableFrameWarning",
    "UnreadableSequenceError",
]
