"""GPU checks of the CUDA-only fast paths (on a GPU machine: pytest -m gpu tests/render)."""

import copy
import time

import pytest
import torch

from holo3d.render.render_mlp import RenderMLP
from holo3d.render.trajectories import turntable_cameras
from holo3d.render.fields import VoxelGridField
from holo3d.render.volume_renderer import VolumeRenderer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("grad", [False, True])
def test_cuda_mlp_paths_match_cpu(grad):
    torch.manual_seed(0)
    mlp = RenderMLP(in_features=16, hidden_dim=64, color_hidden_dim=40)  # 41 and 3 outputs: padded
    features, dirs = torch.randn(3, 50, 7, 16), torch.randn(3, 50, 1, 3)
    mlp_cuda = copy.deepcopy(mlp).cuda()
    with torch.set_grad_enabled(grad):
        ref = mlp(features, dirs)
        got = mlp_cuda(features.cuda(), dirs.cuda())
    for a, b in zip(ref, got):
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-4)
    if grad:
        ref_grads = torch.autograd.grad(sum(o.sum() for o in ref), list(mlp.parameters()))
        got_grads = torch.autograd.grad(sum(o.sum() for o in got), list(mlp_cuda.parameters()))
        for a, b in zip(ref_grads, got_grads):
            torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-3)


def test_full_frame_render_speed():
    """Target: a 256^2 frame of a 16^3 x 64 grid with 64 + 16 points in <= 50 ms on an H200."""
    torch.manual_seed(0)
    renderer = VolumeRenderer(field=VoxelGridField(feature_channels=64)).cuda().eval()
    grid = torch.randn(1, 64, 16, 16, 16, device="cuda").clamp(-1, 1)
    cameras = turntable_cameras(1, distance=2.5, device="cuda")

    def frame():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return renderer.render_image(cameras, (256, 256), n_scenes=grid.shape[0], grid=grid)

    for _ in range(3):
        frame()
    times = []
    for _ in range(10):
        torch.cuda.synchronize()
        start = time.perf_counter()
        frame()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median_ms = sorted(times)[5] * 1e3
    print(f"256x256 bf16 frame: {median_ms:.1f} ms on {torch.cuda.get_device_name()}")
    if "H200" in torch.cuda.get_device_name() or "H100" in torch.cuda.get_device_name():
        assert median_ms <= 50.0
