"""The contract every sampler shares: 5-D data, callbacks, generators, cond, clipping, noise."""

import functools

import pytest
import torch

from holo3d.diffusion import (
    alpha_bars,
    karras_sigmas,
    linear_betas,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_heun,
)

AB = alpha_bars(linear_betas(20, 1e-3, 0.2))  # a short schedule keeps API tests instant
SHAPE_5D = (2, 3, 4, 5, 6)  # (B, C, D, H, W)

# name -> (sampler with its schedule bound, number of steps = callback calls)
SAMPLERS = {
    "ddpm": (functools.partial(sample_ddpm, alpha_bars=AB), 20),
    "ddim": (functools.partial(sample_ddim, alpha_bars=AB, steps=7), 7),
    "ddim_eta1": (functools.partial(sample_ddim, alpha_bars=AB, steps=7, eta=1.0), 7),
    "euler": (functools.partial(sample_euler, sigmas=karras_sigmas(6, 0.01, 10.0)), 6),
    "heun": (functools.partial(sample_heun, sigmas=karras_sigmas(6, 0.01, 10.0)), 6),
    "heun_churn": (functools.partial(sample_heun, sigmas=karras_sigmas(6, 0.01, 10.0), S_churn=5.0), 6),
}


def shrink(x, level, **cond):
    """A stand-in denoiser: a fixed contraction (only shapes and plumbing matter here)."""
    assert level.shape == (x.shape[0],)
    return 0.5 * x


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_5d_callback_and_reproducibility(name):
    sampler, num_steps = SAMPLERS[name]
    calls = []

    def callback(i, x, x0):
        assert x.shape == x0.shape == SHAPE_5D
        calls.append(i)

    a = sampler(shrink, SHAPE_5D, generator=torch.Generator().manual_seed(0), callback=callback)
    assert a.shape == SHAPE_5D and torch.isfinite(a).all()
    assert calls == list(range(num_steps))
    b = sampler(shrink, SHAPE_5D, generator=torch.Generator().manual_seed(0))
    c = sampler(shrink, SHAPE_5D, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cond_dtype_and_level_types(name):
    sampler, _ = SAMPLERS[name]
    seen = []

    def fn(x, level, camera=None):
        seen.append((level.dtype, camera))
        return torch.zeros_like(x)

    x = sampler(fn, (2, 1, 4, 4), cond={"camera": "cam"}, dtype=torch.float64)
    assert x.dtype == torch.float64
    integer_levels = name.startswith("dd")
    assert all(cam == "cam" for _, cam in seen)
    assert all((dt == torch.int64) == integer_levels for dt, _ in seen)


def test_denoiser_call_counts():
    counter = {"n": 0}

    def fn(x, sigma):
        counter["n"] += 1
        return 0.5 * x

    sigmas = karras_sigmas(10, 0.01, 10.0)
    sample_euler(fn, (1, 1, 2, 2), sigmas)
    assert counter["n"] == 10
    counter["n"] = 0
    sample_heun(fn, (1, 1, 2, 2), sigmas)
    assert counter["n"] == 2 * 10 - 1  # no correction on the final step to sigma = 0


@pytest.mark.parametrize("sampler", [sample_ddpm, functools.partial(sample_ddim, steps=5)])
def test_clip_x0(sampler):
    x0s = []
    out = sampler(lambda x, t: 5 * x + 3, (2, 1, 4, 4), AB, callback=lambda i, x, x0: x0s.append(x0))
    assert all(x0.abs().max() <= 1 for x0 in x0s) and out.abs().max() <= 1 + 1e-6
    out = sampler(lambda x, t: torch.full_like(x, 3.0), (2, 1, 4, 4), AB, clip_x0=False)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))  # last step returns x0 exactly


def test_given_noise_and_shape_check():
    z = torch.randn(2, 1, 4, 4)
    a = sample_ddim(shrink, z.shape, AB, steps=5, noise=z)
    b = sample_ddim(shrink, z.shape, AB, steps=5, noise=z.clone())
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        sample_euler(shrink, (2, 1, 4, 5), karras_sigmas(3, 0.1, 1.0), noise=z)
