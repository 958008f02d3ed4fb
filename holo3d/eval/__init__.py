"""holo3d.eval: image metrics, 3D set metrics and report writers.

    image_metrics     per-image PSNR / SSIM / MS-SSIM (torchmetrics), full-image or foreground-masked
    lpips_metric      LPIPS, only when its backbone weights are already in TORCH_HOME (never downloads)
    report            per-sequence / mean metric reports and the strict-JSON metrics.json writer
    shape_conversion  occupancy / radiance grid / mesh -> surface points in the unit cube
    shape_metrics     3D set metrics JSD / MMD-CD / COV-CD / 1-NNA-CD, and their command line

torchmetrics / torchvision load inside the image-metric functions, so importing this package stays
cheap (``python -m holo3d.eval.shape_metrics`` does not pay for them).
"""

from holo3d.eval.image_metrics import image_metrics, masked_psnr, ms_ssim, psnr, sharpness, ssim
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
    "sharpness",
    "ssim",
    "write_metrics_json",
]
