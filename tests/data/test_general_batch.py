"""The general batch: non-image TensorBatches, variable view counts, pose-free view angles, short
held-out splits."""

import math
import warnings

import pytest
import torch
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

from holo3d.data.multi_scene_provider import held_out_frames
from holo3d.data.scene_batch import random_view_mask, view_angles
from holo3d.data.tensor_batch import TensorBatch, collate_tensor_batch


def test_tensor_batch_collates_moves_and_pins_like_frame_data():
    items = [{"voxels": torch.full((1, 4, 4, 4), float(i)), "label": i, "name": f"obj{i}"} for i in range(3)]
    batch = collate_tensor_batch(items)
    assert batch["voxels"].shape == (3, 1, 4, 4, 4) and batch["label"].tolist() == [0, 1, 2]
    assert batch["name"] == ["obj0", "obj1", "obj2"] and batch.batch_size == 3
    moved = batch.to("cpu")
    assert isinstance(moved, TensorBatch) and torch.equal(moved["voxels"], batch["voxels"])
    # What torch's pinning thread does to a MutableMapping: shallow copy, then key-by-key update.
    copy = type(batch)(batch)
    copy.update({k: v for k, v in batch.items()})
    assert isinstance(copy, TensorBatch) and set(copy) == {"voxels", "label", "name"}

    def model(*, voxels, label, name, evaluation_mode=None, iteration=None):  # the loop's call
        return voxels.shape[0] == len(label) == len(name)

    assert model(**moved, evaluation_mode="training", iteration=0)


def test_random_view_masks_keep_a_prefix_of_every_allowed_length():
    mask = random_view_mask(4000, 6, min_views=2, generator=torch.Generator().manual_seed(0))
    counts = mask.sum(dim=1)
    assert set(counts.tolist()) == {2, 3, 4, 5, 6}
    # A prefix: no True after a False.
    assert torch.equal(mask, torch.arange(6)[None] < counts[:, None])
    with pytest.raises(ValueError, match="min_views=0"):
        random_view_mask(2, 3, min_views=0)


def test_view_angles_recover_the_orbit():
    azim, elev = torch.tensor([0.0, 90.0, -135.0]), torch.tensor([10.0, 30.0, -20.0])
    R, T = look_at_view_transform(dist=2.5, elev=elev, azim=azim)
    angles = view_angles(PerspectiveCameras(R=R, T=T))
    torch.testing.assert_close(angles, torch.stack([azim, elev], dim=-1) * math.pi / 180, atol=1e-5, rtol=0)


def test_held_out_splits_with_short_sequences_validate_on_what_is_there():
    assert held_out_frames({"a": [0, 1, 2, 3], "b": [4, 5]}, 3, "val") == 3
    with pytest.warns(UserWarning, match="val batches use 4 frames"):
        assert held_out_frames({"a": [0, 1, 2, 3], "b": [4, 5]}, 16, "val") == 4
    with pytest.warns(UserWarning, match="no test loader"):
        assert held_out_frames({"a": [0]}, 16, "test") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert held_out_frames({"a": list(range(20))}, 16, "val") == 16


_WORKER_SCRIPT = """
import sys, torch
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap
from pytorch3d.implicitron.tools.config import expand_args_fields
from holo3d.data.multi_scene_provider import MultiSceneDataLoaderMapProvider

class Scenes(torch.utils.data.Dataset):
    def __len__(self): return 12
    def __getitem__(self, i):
        return FrameData(frame_number=torch.tensor(i), sequence_name=f"s{i // 4}", image_rgb=torch.rand(3, 4, 4))
    def sequence_names(self): return ["s0", "s1", "s2"]
    def sequence_indices_in_order(self, name): return range(int(name[1]) * 4, int(name[1]) * 4 + 4)
    def get_eval_batches(self): return None

expand_args_fields(MultiSceneDataLoaderMapProvider)
provider = MultiSceneDataLoaderMapProvider(num_workers=2, frames_per_scene=2, scenes_per_batch=2)
loaders = provider.get_data_loader_map(DatasetMap(train=Scenes(), val=None, test=None))
print(next(iter(loaders.train)).image_rgb.shape, flush=True)
"""


def test_persistent_workers_that_ignore_sigterm_do_not_hang_the_exit(tmp_path):
    """The loader's workers ignore SIGTERM (the main process handles stops); multiprocessing's exit
    handler SIGTERMs and joins daemonic children, which used to hang the interpreter forever."""
    import subprocess
    import sys

    script = tmp_path / "loader_exit.py"
    script.write_text(_WORKER_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([4, 3, 4, 4])" in result.stdout
