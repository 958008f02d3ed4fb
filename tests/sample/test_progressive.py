"""Progressive sampling: one frame per k sampler steps over the whole chain, camera moving each frame."""

import math

import pytest
import torch

from holo3d.models.grid_diffusion import GridDiffusion
from holo3d.render.trajectories import turntable_cameras
from holo3d.sample.progressive import ProgressiveRenderer


class _RecordingModel(torch.nn.Module):
    """render_samples stub: records which camera each frame used; renders the grid mean as colour."""

    def __init__(self):
        super().__init__()
        self.camera_centres = []

    def render_samples(self, grid, cameras, image_size, chunk_size=None):
        self.camera_centres.append(cameras.get_camera_center()[0])
        b, (h, w) = grid.shape[0], image_size
        rgb = grid.mean(dim=(1, 2, 3, 4)).sigmoid()[:, None, None, None, None].expand(b, 1, 3, h, w)
        return {"rgb": rgb, "depth": torch.ones(b, 1, 1, h, w), "opacity": torch.ones(b, 1, 1, h, w)}


class _CountingWriter:
    def __init__(self):
        self.frames = []

    def append(self, frame):
        self.frames.append(frame)


@pytest.mark.parametrize("sampler,steps,every", [("ddim", 7, 3), ("ddim", 6, 2), ("ddpm", None, 300),
                                                  ("heun", 5, 1)])
def test_frames_follow_the_chain_length(sampler, steps, every):
    diffusion = GridDiffusion(num_steps=1000)
    model, writers = _RecordingModel(), [_CountingWriter(), _CountingWriter()]
    cameras = turntable_cameras(8)
    renderer = ProgressiveRenderer(model, writers, cameras, (4, 4), (6, 6), every, chunk_size=64)
    denoise = lambda x, t: 0.5 * x  # noqa: E731 - any x0 predictor will do
    diffusion.sample(denoise, (2, 2, 4, 4, 4), sampler=sampler, steps=steps, callback=renderer)
    n_frames = renderer.finish()
    assert n_frames == math.ceil(renderer.n_steps / every)
    chain = {"ddpm": 1000}.get(sampler, steps)
    assert renderer.n_steps == chain  # the whole chain, not a fixed cut-off
    assert all(len(w.frames) == n_frames for w in writers)
    assert writers[0].frames[0].shape == (3, 6, 6)
    # the camera moves on every frame (turntable position j mod 8)
    centres = torch.stack(model.camera_centres)
    expected = cameras.get_camera_center()[torch.arange(n_frames) % 8]
    torch.testing.assert_close(centres, expected)
