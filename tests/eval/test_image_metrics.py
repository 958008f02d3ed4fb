"""Image metrics against closed forms: PSNR of a known MSE, masked PSNR, SSIM bounds, MS-SSIM scales."""

import math

import pytest
import torch

from holo3d.eval.image_metrics import image_metrics, masked_psnr, ms_ssim, ms_ssim_scales, psnr, sharpness, ssim


def _images(b=2, h=32, w=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(b, 3, h, w, generator=generator)  # away from 0 / 1: no clipping


@pytest.mark.parametrize("offset", [0.1, 0.03])
def test_psnr_of_known_mse(offset):
    gt = _images()
    values = psnr(gt + offset, gt)  # MSE = offset^2 exactly
    assert values.shape == (2,)
    torch.testing.assert_close(values, torch.full((2,), -10 * math.log10(offset**2)), rtol=0, atol=1e-3)


def test_masked_psnr_counts_only_masked_pixels():
    gt = _images(b=1)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16, :] = 1  # top half is foreground
    error = torch.where(mask.bool(), 0.1, 0.3).expand_as(gt)
    pred = gt + error
    assert masked_psnr(pred, gt, mask).item() == pytest.approx(20.0, abs=1e-3)  # MSE 0.01 inside
    full_mse = (0.1**2 + 0.3**2) / 2
    assert psnr(pred, gt).item() == pytest.approx(-10 * math.log10(full_mse), abs=1e-3)
    assert math.isnan(masked_psnr(pred, gt, torch.zeros_like(mask)).item())  # no foreground: NaN


def test_ssim_and_ms_ssim_are_one_for_identical_images_and_lower_otherwise():
    gt = _images(h=64, w=64)
    noisy = (gt + 0.2 * torch.randn_like(gt)).clamp(0, 1)
    torch.testing.assert_close(ssim(gt, gt), torch.ones(2), atol=1e-4, rtol=0)
    assert (ssim(noisy, gt) < 0.9).all()
    same, scales = ms_ssim(gt, gt)
    assert scales == 3
    torch.testing.assert_close(same, torch.ones(2), atol=1e-4, rtol=0)
    assert (ms_ssim(noisy, gt)[0] < same).all()


def test_ms_ssim_uses_the_scales_an_image_size_allows():
    assert ms_ssim_scales(256, 256) == 5
    assert ms_ssim_scales(64, 96) == 3
    assert ms_ssim_scales(32, 32) == 2
    assert ms_ssim_scales(8, 8) == 0
    value, scales = ms_ssim(_images(h=8, w=8), _images(h=8, w=8))
    assert value is None and scales == 0


def test_image_metrics_keys():
    gt = _images()
    mask = torch.ones(2, 1, 32, 32)
    assert set(image_metrics(gt, gt, mask)) == {"psnr", "ssim", "ms_ssim", "psnr_fg"}
    assert set(image_metrics(_images(h=8, w=8), _images(h=8, w=8))) == {"psnr", "ssim"}


def test_sharpness_of_a_step_edge_and_of_blurred_stripes():
    step = torch.zeros(2, 3, 8, 8)
    step[..., 4:] = 1.0  # one vertical edge of height 1: 7 of the 7 x 7 gradients are 1
    assert float(sharpness(torch.full_like(step, 0.3))) == 0.0
    assert float(sharpness(step)) == pytest.approx(1 / 7)
    stripes = torch.zeros(2, 3, 8, 8)
    stripes[..., ::2] = 1.0  # every horizontal gradient is 1
    assert float(sharpness(stripes)) == pytest.approx(1.0)
    blurred = torch.nn.functional.avg_pool2d(stripes, 3, stride=1, padding=1, count_include_pad=False)
    assert 0.0 < float(sharpness(blurred)) < 0.5  # a blur of fine texture loses most of its gradient
