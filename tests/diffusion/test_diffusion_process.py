"""Forward process, parameterisations (VP x0 / eps / v; EDM preconditioning), losses, training draws."""

import math

import pytest
import torch

from holo3d.diffusion import (
    EDMDiffusion,
    VPDiffusion,
    alpha_bars,
    append_dims,
    edm_denoise,
    edm_loss,
    edm_loss_weight,
    edm_preconditioning,
    eps_from_v,
    eps_from_x0,
    linear_betas,
    q_posterior,
    q_sample,
    sample_log_normal_sigmas,
    sample_timesteps,
    v_from_x0,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
    x0_mse_loss,
)

AB = alpha_bars(linear_betas())
SIGMAS = torch.exp(torch.linspace(math.log(0.002), math.log(80.0), 50, dtype=torch.float64))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- VP forward process


@pytest.mark.parametrize("shape", [(4, 2, 64, 64), (4, 2, 16, 16, 16)])
def test_q_sample_statistics(shape):
    t = torch.tensor([0, 250, 600, 999])
    x0 = torch.full(shape, 0.7)
    x_t = q_sample(x0, t, AB, torch.randn(shape, generator=gen()))
    assert x_t.shape == shape and x_t.dtype == torch.float32
    flat, ab = x_t.reshape(4, -1).double(), AB[t]
    # DDPM eq. 4: mean sqrt(ab) x0, variance 1 - ab (8192 elements per row: ~4 standard errors)
    mean_tol = 4 * (1 - ab).sqrt().max().item() / flat.shape[1] ** 0.5
    torch.testing.assert_close(flat.mean(1), 0.7 * ab.sqrt(), atol=mean_tol, rtol=0)
    torch.testing.assert_close(flat.var(1), 1 - ab, rtol=0.06, atol=0)


def test_parameterisation_round_trips():
    g, shape = gen(1), (5, 3, 4, 4, 4)
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

    Given x0: x_{t-1} = sqrt(ab_prev) x0 + sqrt(1-ab_prev) e1 and x_t = sqrt(alpha_t) x_{t-1} +
    sqrt(beta_t) e2, so Cov(x_{t-1}, x_t) = sqrt(alpha_t) (1 - ab_prev) and Var(x_t) = 1 - ab_t.
    """
    t = torch.tensor([1, 5, 100, 500, 999])
    ab_t, ab_prev, alpha_t = AB[t], AB[t - 1], 1 - linear_betas()[t]
    cov = alpha_t.sqrt() * (1 - ab_prev)
    g = gen(2)
    x0 = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    mean, var = q_posterior(x0, x_t, t, AB)
    residual = x_t - append_dims(ab_t.sqrt(), 4) * x0
    expected_mean = append_dims(ab_prev.sqrt(), 4) * x0 + append_dims(cov / (1 - ab_t), 4) * residual
    torch.testing.assert_close(mean, expected_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(var.flatten(), (1 - ab_prev) - cov**2 / (1 - ab_t), rtol=1e-7, atol=1e-15)
    assert var.shape == (5, 1, 1, 1)


# ----------------------------------------------------------------------------- VPDiffusion


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
@pytest.mark.parametrize("float_t", [False, True])
def test_vp_diffusion_to_x0_inverts_training_target(prediction, float_t):
    """The target a network learns, converted back by ``to_x0``, is x0 (integer and fractional t)."""
    vp = VPDiffusion(prediction=prediction)
    g, shape = gen(3), (4, 2, 3, 4, 5)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64).clamp(-3, 3)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 99, 500, 999])
    x_t = vp.noise(x0, t, eps)
    target = vp.training_target(x0, eps, t)
    t_in = t.double() if float_t else t
    torch.testing.assert_close(vp.to_x0(target, x_t, t_in), x0, rtol=1e-7, atol=1e-7)
    assert torch.all(vp.loss(target, x0, eps, t) == 0) and vp.loss(target, x0, eps, t).shape == (4,)
    net = lambda x, tt: vp.training_target(x0, eps, tt)  # noqa: E731
    torch.testing.assert_close(vp.denoiser(net)(x_t, t), x0, rtol=1e-7, atol=1e-7)


def test_vp_diffusion_clipping_is_optional():
    x_t, t, out = torch.zeros(2, 1, 2, 2), torch.tensor([3, 4]), torch.full((2, 1, 2, 2), 3.0)
    assert torch.equal(VPDiffusion().to_x0(out, x_t, t), out)  # latents: off by default
    assert torch.equal(VPDiffusion(clip_x0=1.0).to_x0(out, x_t, t), torch.ones_like(out))
    assert VPDiffusion(prediction="eps", clip_x0=2.0).to_x0(-1e3 * out, x_t, t).max() == 2.0


def test_vp_diffusion_validates_and_matches_functions():
    with pytest.raises(ValueError, match="prediction='score'"):
        VPDiffusion(prediction="score")
    with pytest.raises(ValueError, match="beta_schedule"):
        VPDiffusion(beta_schedule="quadratic")
    vp = VPDiffusion(200, beta_start=1e-3, beta_end=0.05)
    torch.testing.assert_close(vp.alpha_bars, alpha_bars(linear_betas(200, 1e-3, 0.05)))
    assert vp.schedule("cpu") is vp.schedule("cpu")  # cached per device
    assert VPDiffusion(beta_schedule="cosine").alpha_bars[0] > 0.9999
    torch.manual_seed(5)
    a = vp.sample_t(16, "cpu")
    torch.manual_seed(5)
    assert torch.equal(a, sample_timesteps(16, 200)) and a.max() < 200


# ----------------------------------------------------------------------------- EDM


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_preconditioning_identities(sigma_data):
    c_skip, c_out, c_in, c_noise = edm_preconditioning(SIGMAS, sigma_data)
    sd2, s2 = sigma_data**2, SIGMAS**2
    one = torch.ones_like(SIGMAS)
    torch.testing.assert_close(c_in**2 * (s2 + sd2), one)  # unit-variance network input
    torch.testing.assert_close(c_skip + c_out**2 / sd2, one)
    torch.testing.assert_close(c_noise, SIGMAS.log() / 4)
    # the raw network's target (y - c_skip (y + n)) / c_out has unit variance (EDM eq. 8 / App. B.6)
    target_var = ((1 - c_skip) ** 2 * sd2 + c_skip**2 * s2) / c_out**2
    torch.testing.assert_close(target_var, one)
    # lambda(sigma) c_out^2 = 1: uniform effective weight on the raw network's loss
    torch.testing.assert_close(edm_loss_weight(SIGMAS, sigma_data) * c_out**2, one)


def test_effective_target_unit_variance_monte_carlo():
    g, sigma_data = gen(0), 0.5
    y = sigma_data * torch.randn(6, 40000, generator=g, dtype=torch.float64)
    n = torch.randn(6, 40000, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = (c[:, None] for c in edm_preconditioning(sigma, sigma_data))
    x = y + sigma[:, None] * n
    one = torch.ones(6, dtype=torch.float64)
    torch.testing.assert_close(((y - c_skip * x) / c_out).var(1), one, rtol=0.03, atol=0)
    torch.testing.assert_close((c_in * x).var(1), one, rtol=0.03, atol=0)


def test_edm_denoise_zero_network_is_optimal_for_matching_gaussian():
    """For y ~ N(0, sigma_data^2) the optimal D is c_skip x, i.e. the ideal raw network outputs 0."""
    calls = {}

    def raw_fn(x_in, c_noise, label=None):
        calls.update(x_in=x_in, c_noise=c_noise, label=label)
        return torch.zeros_like(x_in)

    sigma_data, sigma = 0.5, torch.tensor([0.1, 2.0])
    x = torch.randn(2, 3, 4, 4, 4)
    d = edm_denoise(raw_fn, x, sigma, sigma_data, label="car")
    torch.testing.assert_close(d, append_dims(sigma_data**2 / (sigma_data**2 + sigma**2), 5) * x)
    torch.testing.assert_close(calls["x_in"], x / append_dims((sigma**2 + 0.25).sqrt(), 5))
    torch.testing.assert_close(calls["c_noise"], sigma.log() / 4)
    assert calls["label"] == "car"
    # the class holds the same maths, plus optional clipping
    torch.testing.assert_close(EDMDiffusion(sigma_data).denoiser(raw_fn)(x, sigma, label="car"), d)
    clipped = EDMDiffusion(sigma_data, clip_x0=0.1).denoiser(raw_fn)(100 * x, sigma, label="car")
    assert clipped.abs().max() == pytest.approx(0.1)


def test_edm_diffusion_noise_and_loss(gaussian):
    edm = EDMDiffusion(sigma_data=0.5)
    x0 = torch.zeros(3, 1, 2, 2)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    torch.testing.assert_close(edm.noise(x0, sigma, torch.ones_like(x0)), append_dims(sigma, 4).expand(3, 1, 2, 2))
    torch.testing.assert_close(edm.loss(x0 + 1, x0, sigma), edm_loss_weight(sigma, 0.5))
    s = edm.sample_sigma(20000, generator=gen(4))
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.05)


# ----------------------------------------------------------------------------- losses and draws


def test_losses_are_per_sample():
    x0 = torch.zeros(3, 2, 4, 4)
    pred = x0 + torch.tensor([0.0, 1.0, 2.0])[:, None, None, None]
    torch.testing.assert_close(x0_mse_loss(pred, x0), torch.tensor([0.0, 1.0, 4.0]))
    sigma = torch.tensor([0.5, 0.5, 2.0])
    expected = torch.tensor([0.0, 1.0, 4.0]) * (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(edm_loss(pred, x0, sigma, 0.5), expected)


def test_training_noise_draws():
    g = gen(0)
    sigma = sample_log_normal_sigmas(20000, -1.2, 1.2, generator=g)
    assert sigma.shape == (20000,) and torch.all(sigma > 0)
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.05)
    assert sigma.log().std().item() == pytest.approx(1.2, rel=0.03)
    assert torch.equal(sigma, sample_log_normal_sigmas(20000, -1.2, 1.2, generator=gen(0)))
    t = sample_timesteps(20000, 1000, generator=g)
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= 999
    assert t.double().mean().item() == pytest.approx(499.5, abs=10)
