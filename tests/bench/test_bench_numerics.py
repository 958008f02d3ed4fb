"""bf16 autocast vs fp32 on CPU, on a fixed batch, for the U-Net and the renderer (tiny model).

Stated tolerances: relative L2 error of the raw U-Net output < 2e-2 and of rendered colours
< 1e-2 (measured: ~1.3e-2 and ~4e-3). The error must also be non-zero, or autocast did not engage
and the comparison would prove nothing.
"""

import pytest
import torch

from holo3d.bench.model_setup import build_model
from holo3d.bench.numerics import compare_loss, compare_render, compare_unet, relative_error
from holo3d.bench.settings import tiny_cpu_settings

UNET_TOLERANCE = 2e-2
RENDER_TOLERANCE = 1e-2
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(tiny_cpu_settings().model, CPU, seed=0)


def test_unet_bf16_matches_fp32(tiny_model):
    result = compare_unet(tiny_model, CPU, batch=2, seed=0)
    assert result["ref_rms"] > 0.05  # the randomised output layer makes the output non-trivial
    assert 0.0 < result["rel_err"] < UNET_TOLERANCE


def test_render_bf16_matches_fp32(tiny_model):
    result = compare_render(tiny_model, CPU, size=24, seed=0)
    assert 0.0 < result["rel_err"] < RENDER_TOLERANCE


def test_loss_bf16_matches_fp32(tiny_model):
    s = tiny_cpu_settings()
    result = compare_loss(tiny_model, CPU, scenes=1, frames=s.frames_per_scene, image_size=32, seed=0)
    assert result["fp32"] > 0 and 0.0 < result["rel_err"] < 2e-2


def test_relative_error():
    ref = torch.tensor([3.0, 4.0])
    assert relative_error(ref, ref) == 0.0
    assert relative_error(ref, torch.tensor([3.0, 4.5])) == pytest.approx(0.1)
    assert relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
