"""Forward process: broadcasting, q_sample statistics, parameterisation round trips, posterior."""

import pytest
import torch

from holo3d.diffusion import (
    alpha_bars,
    append_dims,
    as_coef,
    eps_from_v,
    eps_from_x0,
    linear_betas,
    posterior_coefficients,
    q_posterior,
    q_sample,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

AB = alpha_bars(linear_betas())


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


@pytest.mark.parametrize("shape", [(4, 2, 64, 64), (4, 2, 16, 16, 16)])
def test_q_sample_statistics(shape):
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 250, 600, 999])
    x0 = torch.full(shape, 0.7)
    noise = torch.randn(shape, generator=g)
    x_t = q_sample(x0, t, AB, noise)
    assert x_t.shape == shape and x_t.dtype == torch.float32
    flat = x_t.reshape(4, -1).double()
    ab = AB[t]
    # DDPM eq. 4: mean sqrt(ab) x0, variance 1 - ab (8192 elements per row: ~4 standard errors)
    mean_tol = 4 * (1 - ab).sqrt().max().item() / flat.shape[1] ** 0.5
    torch.testing.assert_close(flat.mean(1), 0.7 * ab.sqrt(), atol=mean_tol, rtol=0)
    torch.testing.assert_close(flat.var(1), 1 - ab, rtol=0.06, atol=0)


def test_parameterisation_round_trips():
    g = torch.Generator().manual_seed(1)
    shape = (5, 3, 4, 4, 4)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 700, 999])
    ab = AB[t]
    x_t = q_sample(x0, t, AB, eps)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-7)  # noqa: E731
    close(eps_from_x0(x_t, x0, ab), eps)
    close(x0_from_eps(x_t, eps, ab), x0)
    v = v_from_x0_eps(x0, eps, ab)
    close(v_from_x0(x_t, x0, ab), v)
    close(x0_from_v(x_t, v, ab), x0)
    close(eps_from_v(x_t, v, ab), eps)
    # v is a rotation of (x0, eps): it keeps unit variance for unit-variance x0 and eps
    assert v.var().item() == pytest.approx(1.0, abs=0.05)


def test_posterior_matches_gaussian_conditioning():
    """q(x_{t-1} | x_t, x0) from conditioning the joint Gaussian, independent of DDPM eq. 7's form.

    Given x0: x_{t-1} = sqrt(ab_prev) x0 + sqrt(1-ab_prev) e1 and
    x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2,
    so Cov(x_{t-1}, x_t) = sqrt(alpha_t) (1 - ab_prev) and Var(x_t) = 1 - ab_t.
    """
    betas = linear_betas()
    t = torch.tensor([1, 5, 100, 500, 999])
    ab_t, ab_prev, alpha_t = AB[t], AB[t - 1], 1 - betas[t]
    cov = alpha_t.sqrt() * (1 - ab_prev)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    mean, var = q_posterior(x0, x_t, t, AB)
    gain = append_dims(cov / (1 - ab_t), 4)
    residual = x_t - append_dims(ab_t.sqrt(), 4) * x0
    expected_mean = append_dims(ab_prev.sqrt(), 4) * x0 + gain * residual
    expected_var = (1 - ab_prev) - cov**2 / (1 - ab_t)
    torch.testing.assert_close(mean, expected_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(var.flatten(), expected_var, rtol=1e-7, atol=1e-15)
    assert var.shape == (5, 1, 1, 1)


def test_posterior_first_step_is_x0():
    c_x0, c_xt, beta_tilde = posterior_coefficients(AB)
    assert c_x0[0].item() == pytest.approx(1.0) and c_xt[0].item() == 0 and beta_tilde[0].item() == 0
    assert torch.all(beta_tilde[1:] > 0) and torch.all(beta_tilde[1:] <= linear_betas()[1:])
