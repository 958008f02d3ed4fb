"""Collated batches survive torch's pinned-memory path (plain FrameData does not)."""

import pytest
import torch
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.renderer import PerspectiveCameras
from torch.utils.data._utils.pin_memory import pin_memory

from holo3d.data.pinnable_batch import PinnableFrameData, collate_pinnable


def frames(n=3):
    return [FrameData(image_rgb=torch.rand(3, 4, 4), fg_probability=torch.rand(1, 4, 4),
                      sequence_name=f"seq_{i // 2}", camera=PerspectiveCameras(T=torch.rand(1, 3)))
            for i in range(n)]


def test_collate_pinnable_keeps_every_field():
    items = frames()
    plain, pinnable = FrameData.collate(items), collate_pinnable(items)
    assert isinstance(pinnable, PinnableFrameData)
    for key in plain:
        a, b = plain[key], pinnable[key]
        if torch.is_tensor(a):
            assert torch.equal(a, b)
        elif key != "camera":
            assert a == b
    assert torch.equal(plain.camera.T, pinnable.camera.T)


def test_pinning_path_keeps_fields(monkeypatch):
    # Stand-in for page-locking (needs a GPU): a copy, so the structure torch rebuilds is what counts.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self.clone())
    items = frames()
    pinned = pin_memory(collate_pinnable(items))
    assert isinstance(pinned, PinnableFrameData)
    assert torch.equal(pinned.image_rgb, FrameData.collate(items).image_rgb)
    assert pinned.sequence_name == ["seq_0", "seq_0", "seq_1"]
    assert pin_memory(FrameData.collate(items)).image_rgb is None  # the failure this module fixes


def test_fields_are_replaceable_but_not_deletable():
    batch = collate_pinnable(frames())
    batch["image_rgb"] = torch.zeros(1)
    assert batch.image_rgb.shape == (1,)
    with pytest.raises(KeyError, match="no field 'image'"):
        batch["image"] = 1
    with pytest.raises(TypeError):
        del batch["image_rgb"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_data_loader_pins_collated_batches():
    loader = torch.utils.data.DataLoader(frames(4), batch_size=2, collate_fn=collate_pinnable, pin_memory=True)
    batch = next(iter(loader))
    assert batch.image_rgb.is_pinned() and batch.fg_probability.is_pinned()
    assert batch.to("cuda").image_rgb.is_cuda
