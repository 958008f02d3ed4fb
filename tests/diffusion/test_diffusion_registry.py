"""The sampler registry: every sampler by name, for x0 / eps / v models, 4-D and 5-D, VP and EDM."""

import pytest
import torch

from holo3d.diffusion import (
    SAMPLERS,
    EDMDiffusion,
    EDMSchedule,
    VPDiffusion,
    alpha_bars,
    linear_betas,
    sample,
    sample_ddim,
)
from holo3d.models.grid_diffusion import GridDiffusion

SHAPES = {"4d": (8, 4, 32, 32), "5d": (4, 4, 8, 16, 16)}  # 32768 elements: s.e. of the std ~0.4%
# Enough steps for each sampler's discretisation error to be below ~1% on this closed form.
CONVERGED_STEPS = {"ddpm": None, "ddim": 250, "euler": 250, "heun": 50, "dpmpp_2m": 50}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry_names_and_defaults():
    assert list(SAMPLERS) == ["ddpm", "ddim", "heun", "euler", "dpmpp_2m"]
    assert set(CONVERGED_STEPS) == set(SAMPLERS)
    ab = alpha_bars(linear_betas(100))
    expected = {"ddpm": 100, "ddim": 50, "heun": 18, "euler": 50, "dpmpp_2m": 25}
    for name, n in expected.items():
        calls = []
        sample(name, lambda x, level: 0.5 * x, (1, 1, 2, 2), ab, callback=lambda i, x, x0: calls.append(i))
        assert len(calls) == n, name


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_recovers_gaussian(gaussian, name, prediction, shape):
    """VP model predicting x0 / eps / v, sampled by name: the samples come out N(mu, sd^2)."""
    vp = VPDiffusion(prediction=prediction)
    x = vp.sample(name, gaussian.vp_network(prediction), shape, steps=CONVERGED_STEPS[name], generator=gen(1))
    assert x.shape == shape and x.dtype == torch.float32
    gaussian.assert_moments(x)


@pytest.mark.parametrize("name, churn", [("euler", {}), ("heun", {}), ("heun", {"S_churn": 40.0}),
                                         ("dpmpp_2m", {})])
def test_edm_model_by_name(gaussian, name, churn):
    """EDM model (raw network + preconditioning, sigma_data != sd) through ``EDMDiffusion.sample``."""
    edm = EDMDiffusion(sigma_data=0.7)
    steps = {"euler": 300, "heun": 64, "dpmpp_2m": 64}[name]
    x = edm.sample(name, gaussian.edm_network(0.7), SHAPES["5d"], steps=steps, generator=gen(2), **churn)
    gaussian.assert_moments(x)


def test_ddpm_with_fewer_steps_is_strided_ancestral(gaussian):
    ab = gaussian.alpha_bars
    a = sample("ddpm", gaussian.vp_denoiser, (2, 1, 8, 8), ab, steps=20, generator=gen(3))
    b = sample_ddim(gaussian.vp_denoiser, (2, 1, 8, 8), ab, steps=20, eta=1.0, generator=gen(3))
    assert torch.equal(a, b)


def test_clipping_is_optional(gaussian):
    """Wide data (sd = 2): unclipped (latent-style) sampling recovers it; clip_x0 = 1 bounds it."""
    wide = type(gaussian)(mu=0.0, sd=2.0, alpha_bars=gaussian.alpha_bars)
    x = VPDiffusion(prediction="v").sample("ddim", wide.vp_network("v"), SHAPES["4d"], steps=250, generator=gen(4))
    wide.assert_moments(x, abs_mu=0.05)
    x0s = []
    x = VPDiffusion(prediction="v", clip_x0=1.0).sample(
        "ddim", wide.vp_network("v"), SHAPES["4d"], steps=20, generator=gen(4),
        callback=lambda i, x, x0: x0s.append(x0))
    assert all(x0.abs().max() <= 1 for x0 in x0s) and x.abs().max() <= 1 + 1e-6


def test_bad_calls_name_the_problem(gaussian):
    ab, fn, shape = gaussian.alpha_bars, gaussian.vp_denoiser, (1, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown sampler 'dpm'.*dpmpp_2m"):
        sample("dpm", fn, shape, ab)
    with pytest.raises(TypeError, match="'euler' takes no option.*eta"):
        sample("euler", fn, shape, ab, eta=0.5)
    with pytest.raises(ValueError, match="'ddpm' needs a VP"):
        sample("ddpm", fn, shape, EDMSchedule())
    with pytest.raises(TypeError, match="schedule must be"):
        sample("ddim", fn, shape, [0.9, 0.5])
    with pytest.raises(ValueError, match="steps=0"):
        sample("heun", fn, shape, ab, steps=0)


def test_grid_diffusion_samples_by_name(gaussian):
    """GridDiffusion keeps its API; every registry name works; eta reaches DDIM only; x0 is clipped."""
    diffusion = GridDiffusion(num_steps=1000)
    assert diffusion.num_steps == 1000 and diffusion.schedule().shape == (1000,)
    assert diffusion.sample_t(5, torch.device("cpu")).shape == (5,)
    x0s = []
    for name in SAMPLERS:
        x = diffusion.sample(lambda x, t: 3 * x, (1, 2, 4, 4, 4), sampler=name, steps=4, eta=0.5,
                             generator=gen(5), callback=lambda i, x, x0: x0s.append(x0))
        assert x.shape == (1, 2, 4, 4, 4) and torch.isfinite(x).all()
    assert all(x0.abs().max() <= 1 for x0 in x0s)
    a = diffusion.sample(gaussian.vp_denoiser, (1, 1, 4, 4), sampler="ddim", steps=5, eta=1.0, generator=gen(6))
    b = sample_ddim(gaussian.vp_denoiser, (1, 1, 4, 4), diffusion.schedule(), steps=5, eta=1.0, generator=gen(6))
    assert torch.equal(a, b)
