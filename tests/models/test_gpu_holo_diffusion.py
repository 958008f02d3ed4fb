"""HoloDiffusionModel at the base config on a GPU: bf16 training steps, eval render, sampling.

Run with the device tool (``pytest -m gpu -s tests/models``); skipped without CUDA. Prints step
times and peak memory for orientation (the benchmark suite in holo3d/bench owns the real figures).
"""

import time

import pytest
import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import get_default_args

from holo3d.models import HoloDiffusionModel
from models_testdata import random_frame_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _to(batch, device):
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _timed_steps(model, batch, optimizer, n):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(n):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            preds = model(**batch, evaluation_mode=EvaluationMode.TRAINING, iteration=i)
        optimizer.zero_grad(set_to_none=True)
        preds["objective"].backward()
        optimizer.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n, preds


@pytest.mark.parametrize("n_scenes", [1, 4])
def test_base_config_training_step(n_scenes):
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = HoloDiffusionModel(**get_default_args(HoloDiffusionModel)).to(device)
    model.unet.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    batch = _to(random_frame_batch(n_scenes, 16, image_size=256), device)
    for prob in (0.0, 1.0):
        model.bootstrap_prob = prob
        _timed_steps(model, batch, optimizer, 2)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        seconds, preds = _timed_steps(model, batch, optimizer, 5)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"\nS={n_scenes} bootstrap={prob}: {seconds * 1e3:.0f} ms/step, peak {peak:.1f} GiB, "
              f"objective {preds['objective'].detach().item():.4f}")
        assert torch.isfinite(preds["objective"])


def test_base_config_eval_render_and_sampling():
    device = torch.device("cuda")
    model = HoloDiffusionModel(**get_default_args(HoloDiffusionModel)).to(device).eval()
    batch = _to(random_frame_batch(2, 8, image_size=256), device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        preds = model(**batch, evaluation_mode=EvaluationMode.EVALUATION)
        assert preds["images_render"].shape == (2, 1, 3, 256, 256)
        torch.cuda.synchronize()
        start = time.perf_counter()
        grids = model.sample(2, sampler="ddim", steps=50, device=device)
        torch.cuda.synchronize()
        print(f"\nDDIM 50 steps, 2 grids: {time.perf_counter() - start:.2f} s")
    assert grids.shape == (2, 64, 16, 16, 16) and torch.isfinite(grids).all()
