"""bf16 autocast against fp32 on a fixed batch: how far do the U-Net, the renders and the loss move?

The reference runs in true fp32 (TF32 off for matmuls and convolutions); the test runs the same
inputs under ``torch.autocast(bfloat16)`` with fp32 weights, as training does. The error measure is
relative in the L2 sense, ||bf16 - fp32|| / ||fp32||, over the whole output. bf16 keeps 8 mantissa
bits (unit roundoff 2^-9 ~ 2e-3) and the U-Net has ~40 layers of accumulated roundings: measured
on CPU, its output moves by 1.3e-2 (tiny config) and 1.4e-2 (base config, batch 1), colours by
4e-3 and the (evaluation) loss by 1e-3 to 5e-3. The stated tolerances leave about 2x room for GPU kernels, which
accumulate in other orders: U-Net 3e-2, colours 1e-2, loss 2e-2.
"""

from __future__ import annotations

from typing import Dict

import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode

from holo3d.bench.context import BenchContext
from holo3d.bench.model_setup import autocast, backend_flags
from holo3d.bench.synthetic_batch import FOCAL_LENGTH, ORBIT_DISTANCE, synthetic_frame_data
from holo3d.models.holo_diffusion import HoloDiffusionModel
from holo3d.render.trajectories import turntable_cameras

UNET_TOLERANCE = 3e-2
RENDER_TOLERANCE = 1e-2
LOSS_TOLERANCE = 2e-2


def relative_error(reference: torch.Tensor, test: torch.Tensor) -> float:
    """||test - ref|| / ||ref|| in float64 (0 when both are 0)."""
    ref, test = reference.double(), test.double()
    denominator = ref.norm().item()
    difference = (test - ref).norm().item()
    return difference / denominator if denominator > 0 else difference


def _both_precisions(fn, device: torch.device):
    """fn() in true fp32, then under bf16 autocast; returns both results as fp32 tensors."""
    with torch.no_grad(), backend_flags(tf32=False, cudnn_benchmark=False):
        reference = fn()
        with autocast("bf16", device):
            test = fn()
    return reference, test


def compare_unet(model: HoloDiffusionModel, device: torch.device, batch: int = 2, seed: int = 0
                 ) -> Dict[str, float]:
    """Raw U-Net output (before clipping) on a fixed x_t and spread of timesteps."""
    generator = torch.Generator().manual_seed(seed)
    res = model.grid_resolution
    x_t = torch.randn(batch, model.feature_size, res, res, res, generator=generator).to(device)
    t = torch.linspace(0, model.num_diffusion_steps - 1, batch).round().to(device)
    model.eval()
    ref, test = _both_precisions(lambda: model.unet(x_t, t).float(), device)
    return {"rel_err": relative_error(ref, test), "max_abs_err": (test - ref).abs().max().item(),
            "ref_rms": ref.square().mean().sqrt().item()}


def compare_render(model: HoloDiffusionModel, device: torch.device, size: int, seed: int = 0
                   ) -> Dict[str, float]:
    """Rendered colours of a fixed tanh(N(0, 1)) grid from one turntable camera."""
    generator = torch.Generator().manual_seed(seed)
    res = model.grid_resolution
    grid = torch.tanh(torch.randn(1, model.feature_size, res, res, res, generator=generator)).to(device)
    cameras = turntable_cameras(1, distance=ORBIT_DISTANCE, focal_length=FOCAL_LENGTH, device=device)
    model.eval()
    ref, test = _both_precisions(lambda: model.render_samples(grid, cameras, (size, size))["rgb"].float(),
                                 device)
    return {"rel_err": relative_error(ref, test), "max_abs_err": (test - ref).abs().max().item()}


def compare_loss(model: HoloDiffusionModel, device: torch.device, scenes: int, frames: int,
                 image_size: int, seed: int = 0) -> Dict[str, float]:
    """The objective of the evaluation forward: lift -> U-Net at t=0 -> full-frame render -> loss.

    Evaluation mode because it draws no random numbers. A training forward cannot be compared
    seed for seed: under autocast the lifted grid is bf16, and ``randn_like`` of a bf16 tensor
    draws a different noise stream than of an fp32 one (the grids differ by ~100%, not by rounding).
    """
    batch = synthetic_frame_data(scenes, frames, image_size, device, seed=seed)
    model.eval()

    def objective() -> torch.Tensor:
        preds = model(**batch, evaluation_mode=EvaluationMode.EVALUATION)
        return preds["objective"].detach().float()

    ref, test = _both_precisions(objective, device)
    return {"rel_err": relative_error(ref, test), "fp32": ref.item(), "bf16": test.item()}


def _emit_check(ctx: BenchContext, name: str, result: Dict[str, float], tolerance: float, **config) -> None:
    figure = f"numerics.{name}_bf16_rel_err"
    ctx.emit(figure, result["rel_err"], "relative L2 error", ctx.config(**config),
             tolerance=tolerance, passed=result["rel_err"] < tolerance,
             **{k: v for k, v in result.items() if k != "rel_err"})


def run_numerics(ctx: BenchContext) -> None:
    s, model, device = ctx.settings, ctx.model, ctx.device
    checks = [
        ("unet", UNET_TOLERANCE, dict(batch=s.numerics_batch),
         lambda: compare_unet(model, device, s.numerics_batch, s.seed)),
        ("render", RENDER_TOLERANCE, dict(image_size=s.render_size),
         lambda: compare_render(model, device, s.render_size, s.seed)),
        ("loss", LOSS_TOLERANCE, dict(scenes=1, frames_per_scene=s.frames_per_scene, image_size=s.image_size),
         lambda: compare_loss(model, device, 1, s.frames_per_scene, s.image_size, s.seed)),
    ]
    for name, tolerance, config, check in checks:
        with ctx.guard([(f"numerics.{name}_bf16_rel_err", "relative L2 error")], ctx.config(**config)):
            _emit_check(ctx, name, check(), tolerance, **config)
