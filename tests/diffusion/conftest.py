"""Closed-form oracles for the diffusion tests: per-element Gaussian data x0 ~ N(mu, sd^2).

For such data the optimal (MMSE) denoiser is known exactly, so a sampler fed it must reproduce
N(mu, sd^2) up to its own discretisation error, which for these linear dynamics is also computable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from holo3d.diffusion import (
    alpha_bar_at,
    alpha_bars,
    as_coef,
    edm_preconditioning,
    eps_from_x0,
    linear_betas,
    v_from_x0,
)


@dataclass
class GaussianData:
    mu: float
    sd: float
    alpha_bars: torch.Tensor  # (T,) the VP schedule the "trained" x0-predictor uses

    def sigma_denoiser(self, x, sigma):
        """E[x0 | x0 + sigma n = x] = mu + sd^2 / (sd^2 + sigma^2) (x - mu)."""
        s = as_coef(sigma, x)
        return self.mu + self.sd**2 / (self.sd**2 + s**2) * (x - self.mu)

    def vp_denoiser(self, x_t, t):
        """E[x0 | x_t], x_t = sqrt(ab) x0 + sqrt(1-ab) eps; fractional t via log-sigma interpolation."""
        a = as_coef(alpha_bar_at(t, self.alpha_bars), x_t)
        gain = self.sd**2 * a.sqrt() / (a * self.sd**2 + 1 - a)
        return self.mu + gain * (x_t - a.sqrt() * self.mu)

    def vp_network(self, prediction):
        """The ideal network of a VP model predicting x0, eps or v: ``net(x_t, t) -> output``."""
        def net(x_t, t):
            x0 = self.vp_denoiser(x_t, t)
            if prediction == "x0":
                return x0
            convert = eps_from_x0 if prediction == "eps" else v_from_x0
            return convert(x_t, x0, alpha_bar_at(t, self.alpha_bars))
        return net

    def edm_network(self, sigma_data):
        """The ideal raw EDM network F(c_in x, c_noise) = (D*(x; sigma) - c_skip x) / c_out (eq. 7)."""
        def raw(x_in, c_noise):
            sigma = (4 * c_noise).exp()
            c_skip, c_out, c_in, _ = (as_coef(c, x_in) for c in edm_preconditioning(sigma, sigma_data))
            x = x_in / c_in
            return (self.sigma_denoiser(x, sigma) - c_skip * x) / c_out
        return raw

    def predicted_std(self, sigmas, heun, start_std=None, S_churn=0.0, S_tmin=0.0,
                      S_tmax=math.inf, S_noise=1.0):
        """Exact std of EDM Algorithm 2 output with this denoiser (variance of x - mu propagated).

        With the optimal denoiser the ODE is linear, dx/dsigma = sigma / (sd^2 + sigma^2) (x - mu),
        so each Euler/Heun step multiplies x - mu by a scalar gain and churn adds known variance.
        """
        sig = [float(s) for s in sigmas]
        n = len(sig) - 1
        var = (sig[0] if start_std is None else start_std) ** 2
        slope = lambda s: s / (self.sd**2 + s**2)  # noqa: E731
        for s0, s1 in zip(sig[:-1], sig[1:]):
            gamma = min(S_churn / n, math.sqrt(2) - 1) if S_churn > 0 and S_tmin <= s0 <= S_tmax else 0
            s_hat = s0 * (1 + gamma)
            var += (s_hat**2 - s0**2) * S_noise**2
            h, a0 = s1 - s_hat, slope(s_hat)
            gain = 1 + h * a0
            if heun and s1 > 0:
                a1 = slope(s1)
                gain = 1 + h / 2 * (a0 + a1 + h * a0 * a1)
            var *= gain**2
        return math.sqrt(var)

    def assert_moments(self, x, sd=None, rel_sd=0.03, abs_mu=0.02):
        """Sample mean within abs_mu of mu; sample std within rel_sd (relative) of sd (or self.sd)."""
        sd = self.sd if sd is None else sd
        mean, std = x.double().mean().item(), x.double().std().item()
        assert abs(mean - self.mu) < abs_mu, f"mean {mean:.4f} vs {self.mu}"
        assert abs(std / sd - 1) < rel_sd, f"std {std:.4f} vs {sd:.4f}"


@pytest.fixture
def gaussian():
    return GaussianData(mu=0.3, sd=0.5, alpha_bars=alpha_bars(linear_betas()))
