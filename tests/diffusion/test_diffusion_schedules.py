"""Schedules: broadcasting, noise draws, closed-form values, Karras endpoints, sigma <-> t maps."""

import math

import numpy as np
import pytest
import torch

from holo3d.diffusion import (
    EDMSchedule,
    alpha_bar_at,
    alpha_bar_from_sigma,
    alpha_bars,
    append_dims,
    as_coef,
    betas_from_alpha_bars,
    cosine_betas,
    karras_sigmas,
    linear_betas,
    posterior_coefficients,
    randn,
    sigma_to_t,
    spaced_timesteps,
    t_to_sigma,
    vp_sigma_range,
    vp_sigmas,
)


def test_append_dims_and_as_coef():
    t = torch.arange(3)
    assert append_dims(t, 5).shape == (3, 1, 1, 1, 1)
    assert append_dims(t, 1).shape == (3,)
    with pytest.raises(ValueError):
        append_dims(torch.zeros(2, 2), 1)
    x = torch.zeros(3, 2, 4, 4, dtype=torch.float32)
    c = as_coef(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), x)
    assert c.shape == (3, 1, 1, 1) and c.dtype == torch.float32
    assert as_coef(0.5, x).ndim == 0


def test_randn_reproducible_in_any_dtype():
    a = randn((2, 3), generator=torch.Generator().manual_seed(0))
    b = randn((2, 3), generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    torch.testing.assert_close(b, a.to(torch.bfloat16))  # same draw, rounded: not a bf16 draw
    assert torch.equal(a, torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))


def test_linear_alpha_bars_closed_form():
    betas = linear_betas(1000, 1e-4, 0.02)
    ab = alpha_bars(betas)
    assert betas.dtype == ab.dtype == torch.float64 and ab.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.all(ab[1:] < ab[:-1]) and torch.all((ab > 0) & (ab < 1))
    assert ab[0].item() == pytest.approx(1 - 1e-4, rel=1e-12)
    expected_last = np.prod(1 - np.linspace(1e-4, 0.02, 1000))
    assert ab[-1].item() == pytest.approx(expected_last, rel=1e-9)
    assert ab[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)  # the well-known DDPM value


def test_betas_from_alpha_bars_inverts():
    betas = linear_betas(200, 1e-3, 0.05)
    torch.testing.assert_close(betas_from_alpha_bars(alpha_bars(betas)), betas, rtol=1e-9, atol=1e-12)


def test_cosine_schedule_follows_squared_cosine():
    T, s = 1000, 0.008
    ab = alpha_bars(cosine_betas(T, s))
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    assert torch.all(ab[1:] < ab[:-1])
    torch.testing.assert_close(ab[:-50], f[:-50], rtol=1e-9, atol=1e-12)  # tail: beta cap active


def test_vp_sigmas_and_range():
    ab = alpha_bars(linear_betas())
    sig = vp_sigmas(ab)
    assert torch.all(sig[1:] > sig[:-1])
    torch.testing.assert_close(alpha_bar_from_sigma(sig), ab)
    lo, hi = vp_sigma_range(ab)
    assert lo == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    assert hi == pytest.approx(math.sqrt((1 - ab[-1].item()) / ab[-1].item()))


@pytest.mark.parametrize("rho", [1.0, 7.0])
def test_karras_sigmas_endpoints(rho):
    sig = karras_sigmas(18, 0.002, 80.0, rho)
    assert sig.shape == (19,) and sig[-1].item() == 0.0
    assert sig[0].item() == pytest.approx(80.0) and sig[-2].item() == pytest.approx(0.002)
    assert torch.all(sig[1:] < sig[:-1])
    if rho == 1.0:  # rho = 1 is uniform spacing in sigma
        torch.testing.assert_close(sig[:-1], torch.linspace(80.0, 0.002, 18, dtype=torch.float64))
    # eq. 5: sigma^(1/rho) is linear in the step index
    root = sig[:-1] ** (1 / rho)
    torch.testing.assert_close(root[1:] - root[:-1], (root[1] - root[0]).expand(17))
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]


def test_posterior_first_step_is_x0():
    ab = alpha_bars(linear_betas())
    c_x0, c_xt, beta_tilde = posterior_coefficients(ab)
    assert c_x0[0].item() == pytest.approx(1.0) and c_xt[0].item() == 0 and beta_tilde[0].item() == 0
    assert torch.all(beta_tilde[1:] > 0) and torch.all(beta_tilde[1:] <= linear_betas()[1:])


def test_edm_schedule():
    sched = EDMSchedule()
    torch.testing.assert_close(sched.sigmas(18), karras_sigmas(18, 0.002, 80.0, 7.0))
    with pytest.raises(ValueError, match="sigma_min"):
        EDMSchedule(sigma_min=1.0, sigma_max=0.5)


def test_spaced_timesteps():
    ts = spaced_timesteps(1000, 50)
    assert ts.dtype == torch.int64 and len(ts) == 50 and ts[0] == 999 and ts[-1] == 0
    assert torch.all(ts[1:] < ts[:-1])
    assert spaced_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        spaced_timesteps(10, 11)


def test_sigma_t_round_trips():
    ab = alpha_bars(linear_betas())
    sig = vp_sigmas(ab)
    # integer timesteps map exactly onto their own sigma
    torch.testing.assert_close(sigma_to_t(sig, ab), torch.arange(1000, dtype=torch.float64))
    torch.testing.assert_close(t_to_sigma(torch.arange(1000), ab), sig.float())
    t = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 999
    torch.testing.assert_close(sigma_to_t(t_to_sigma(t, ab), ab), t)
    lo, hi = vp_sigma_range(ab)
    s = torch.exp(torch.linspace(math.log(lo), math.log(hi), 300, dtype=torch.float64))
    torch.testing.assert_close(t_to_sigma(sigma_to_t(s, ab), ab), s)
    # log-sigma interpolation: halfway in t is the geometric mean of the neighbouring sigmas
    assert t_to_sigma(torch.tensor([10.5], dtype=torch.float64), ab).item() == pytest.approx(
        math.sqrt(sig[10].item() * sig[11].item()))
    # out of range sigmas clamp to the ends
    assert sigma_to_t(torch.tensor([0.0, 1e-6, 1e6]), ab).tolist() == [0.0, 0.0, 999.0]


def test_alpha_bar_at_integer_and_fractional():
    ab = alpha_bars(linear_betas())
    t = torch.tensor([0, 17, 999])
    torch.testing.assert_close(alpha_bar_at(t, ab), ab[t])
    torch.testing.assert_close(alpha_bar_at(t.double(), ab), ab[t])  # float t on the grid: exact
    mid = alpha_bar_at(torch.tensor([17.5], dtype=torch.float64), ab).item()
    assert ab[18].item() < mid < ab[17].item()
