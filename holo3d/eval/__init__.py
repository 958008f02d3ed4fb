"""holo3d.eval: image metrics and report writers.

    image_metrics  per-image PSNR / SSIM / MS-SSIM (torchmetrics), full-image or foreground-masked
    lpips_metric   LPIPS, only when its backbone weights are already in TORCH_HOME (never downloads)
    report         per-sequence / mean metric reports and the strict-JSON metrics.json writer
"""

from holo3d.eval.image_metrics import image_metrics, masked_psnr, ms_ssim, psnr, ssim
from holo3d.eval.lpips_metric import lpips, lpips_unavailable_reason
from holo3d.eval.report import MetricsReport, write_metrics_json

__all__ = [
    "MetricsReport",
    "image_metrics",
    "lpips",
    "lpips_unavailable_reason",
    "masked_psnr",
    "ms_ssim",
    "psnr",
    "ssim",
    "write_metrics_json",
]
