"""Classifier-free guidance: the extrapolation, and the wrapper that batches cond / uncond."""

import pytest
import torch

from holo3d.diffusion import VPDiffusion, classifier_free_guidance, eps_from_x0, guided_denoiser, sample


def test_classifier_free_guidance():
    c, u = torch.full((2, 3), 2.0), torch.full((2, 3), 1.0)
    assert torch.equal(classifier_free_guidance(c, u, 1.0), c)
    assert torch.equal(classifier_free_guidance(c, u, 0.0), u)
    assert torch.equal(classifier_free_guidance(c, u, 3.0), torch.full((2, 3), 4.0))


def test_x0_guidance_equals_eps_guidance():
    """At fixed x_t, eps is affine in x0: guiding x0 then converting = guiding eps (Ho & Salimans eq. 6)."""
    g = torch.Generator().manual_seed(0)
    x_t, c, u = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    ab = torch.tensor([0.3, 0.9], dtype=torch.float64)
    eps_of = lambda x0: eps_from_x0(x_t, x0, ab)  # noqa: E731
    torch.testing.assert_close(eps_of(classifier_free_guidance(c, u, 2.5)),
                               classifier_free_guidance(eps_of(c), eps_of(u), 2.5))


class LabelNet:
    """x0 = x * scale[label]: a conditional denoiser whose every call is recorded."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, level, label, mode="a"):
        self.batches.append(x.shape[0])
        assert level.shape == (x.shape[0],) and mode == "a"
        return x * (1.0 + label.to(x.dtype)).reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_denoiser_batched_equals_two_calls(w):
    x, level = torch.randn(3, 2, 4, 4, 4), torch.full((3,), 5)
    label, null = torch.tensor([1, 2, 3]), torch.zeros(1, dtype=torch.long)  # null: batch dim 1
    net = LabelNet()
    out = guided_denoiser(net, w, {"label": null})(x, level, label=label, mode="a")
    expected = classifier_free_guidance(net(x, level, label), net(x, level, null.expand(3)), w)
    torch.testing.assert_close(out, expected)
    # one call of 2B unless w is 0 or 1, where only the needed half runs
    assert net.batches[0] == (3 if w in (0.0, 1.0) else 6)
    if w == 0.0:
        torch.testing.assert_close(out, x)  # label 0 -> scale 1: the unconditional model
    if w == 1.0:
        torch.testing.assert_close(out, x * (1.0 + label.float()).reshape(3, 1, 1, 1, 1))
    net.batches.clear()
    unbatched = guided_denoiser(net, w, {"label": null.expand(3)}, batched=False)(x, level, label=label)
    torch.testing.assert_close(unbatched, out)


def test_guided_denoiser_errors_name_the_key():
    net, x, level = LabelNet(), torch.zeros(2, 1, 2, 2), torch.zeros(2)
    with pytest.raises(ValueError, match="'mode'"):
        guided_denoiser(net, 2.0, {"label": torch.zeros(2), "mode": "b"})(x, level, label=torch.ones(2), mode="a")
    with pytest.raises(ValueError, match="'label'"):
        guided_denoiser(net, 2.0, {"label": torch.zeros(5)})(x, level, label=torch.ones(2))
    with pytest.raises(ValueError, match=r"\['extra'\]"):
        guided_denoiser(net, 2.0, {"extra": torch.zeros(2)})(x, level, label=torch.ones(2))


def test_guidance_inside_a_sampler(gaussian):
    """Through ``sample`` and ``cond``: w = 0 reproduces the unconditional model's samples exactly."""
    vp = VPDiffusion(prediction="eps")
    ideal = gaussian.vp_network("eps")
    net = lambda x, t, shift: ideal(x, t) + shift.reshape(-1, 1, 1, 1)  # noqa: E731 - cond shifts eps
    guided = guided_denoiser(vp.denoiser(net), 0.0, {"shift": torch.zeros(1)})
    kw = lambda: dict(steps=10, eta=1.0, generator=torch.Generator().manual_seed(0))  # noqa: E731
    a = sample("ddim", guided, (2, 1, 8, 8), vp.alpha_bars, cond={"shift": torch.ones(2)}, **kw())
    b = sample("ddim", vp.denoiser(ideal), (2, 1, 8, 8), vp.alpha_bars, **kw())
    torch.testing.assert_close(a, b)
