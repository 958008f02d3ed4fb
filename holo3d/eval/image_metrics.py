"""Per-image PSNR / SSIM / MS-SSIM of renders against ground truth (torchmetrics), full or masked.

All functions take batches of images ``(B, 3, H, W)`` in [0, 1] and return one value per image
``(B,)``, so callers can average per view, per sequence and over sequences as they need.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

# torchmetrics is imported inside the functions: importing it (and the torchvision it pulls in)
# costs seconds, which every ``import holo3d.eval`` would pay, e.g. the 3D metrics command.

# Wang et al. 2003's five scale weights; fewer scales keep the first ones (renormalised).
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_KERNEL = 11


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over whole images, data range 1: (B, C, H, W) x2 -> (B,)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(
        pred.float(), gt.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )


def masked_psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR over the pixels where ``mask`` (B, 1, H, W) is 1 (weights for soft masks): (B,).

    -10 log10(MSE) with MSE averaged over masked pixels and channels; NaN for an empty mask, so an
    image without foreground is visible in reports instead of scoring infinity.
    """
    weights = mask.float().expand_as(pred)  # (B, C, H, W)
    sq_err = (pred.float() - gt.float()).square() * weights
    mse = sq_err.sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))  # (B,) NaN when empty
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Mean image-gradient magnitude (forward differences) of (B, C, H, W) images: a scalar. The
    ratio of a method's to the ground truth's tells a sharp generative output from a blurry
    regression (PSNR prefers the blur)."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return (dx[..., :-1, :].square() + dy[..., :, :-1].square()).sqrt().mean()


def ssim(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """SSIM (11x11 Gaussian window, data range 1): (B, C, H, W) x2 -> (B,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        pred.float(), gt.float(), data_range=1.0, reduction="none", kernel_size=SSIM_KERNEL
    )


def ms_ssim_scales(height: int, width: int, kernel_size: int = SSIM_KERNEL) -> int:
    """How many of the 5 MS-SSIM scales fit an image: its coarsest scale must still hold a window.

    Also satisfies torchmetrics' own size checks. 0 when even one scale does not fit.
    """
    side = min(height, width)
    for n in range(len(MS_SSIM_BETAS), 0, -1):
        coarse_fits = side / 2 ** (n - 1) >= kernel_size
        torchmetrics_ok = side >= 2**n and side // max(1, n - 1) ** 2 > kernel_size - 1
        if coarse_fits and torchmetrics_ok:
            return n
    return 0


def ms_ssim(pred: torch.Tensor, gt: torch.Tensor) -> Tuple[Optional[torch.Tensor], int]:
    """(per-image MS-SSIM (B,) or None, scales used); small images use fewer scales."""
    n = ms_ssim_scales(*pred.shape[-2:])
    if n == 0:
        return None, 0
    betas = torch.tensor(MS_SSIM_BETAS[:n])
    betas = tuple((betas / betas.sum()).tolist())
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    value = multiscale_structural_similarity_index_measure(
        pred.float(), gt.float(), data_range=1.0, reduction="none", kernel_size=SSIM_KERNEL,
        betas=betas,
    )
    return value, n


def image_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> Dict[str, torch.Tensor]:
    """psnr, ssim, ms_ssim (when the size allows) and psnr_fg (when a mask is given), each (B,).

    Args:
        pred, gt: (B, 3, H, W) in [0, 1].
        mask: (B, 1, H, W) foreground of the ground truth, or None.
    """
    out = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
    value, _ = ms_ssim(pred, gt)
    if value is not None:
        out["ms_ssim"] = value
    if mask is not None:
        out["psnr_fg"] = masked_psnr(pred, gt, mask)
    return out

