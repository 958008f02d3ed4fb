"""holo3d.eval: image metrics, 3D set metrics and report writers.

    image_metrics     per-image PSNR / SSIM / MS-SSIM (torchmetrics), full-image or foreground-masked
    lpips_metric      LPIPS, only when its backbone weights are already in TORCH_HOME (never downloads)
    report            per-sequence / mean metric reports and the strict-JSON metrics.json writer
    shape_conversion  occupancy / radiance grid / mesh -> surface points in the unit cube
    shape_metrics     3D set metrics JSD / MMD-CD / COV-CD / 1-NNA-CD, and their command line

Exports load on first use (PEP 562): ``python -m holo3d.eval.shape_metrics`` then does not pay for
torchmetrics and torchvision, which the image metrics import (seconds at start-up on a GPU machine).
"""

import importlib

_EXPORTS = {
    "image_metrics": "image_metrics", "masked_psnr": "image_metrics", "ms_ssim": "image_metrics",
    "psnr": "image_metrics", "ssim": "image_metrics",
    "lpips": "lpips_metric", "lpips_unavailable_reason": "lpips_metric",
    "MetricsReport": "report", "write_metrics_json": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'holo3d.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"holo3d.eval.{_EXPORTS[name]}"), name)
