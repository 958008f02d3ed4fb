"""EMA of weights: closed form of the running average, and tracking before start_step."""

import pytest
import torch

from holo3d.train.ema import EMA


def test_ema_matches_closed_form_and_copies_buffers():
    model = torch.nn.BatchNorm1d(2)
    model.weight.data.fill_(0.0)
    ema = EMA(model, decay=0.5, start_step=1, warmup=False)
    for step, value in enumerate([1.0, 2.0, 4.0]):
        model.weight.data.fill_(value)
        model.num_batches_tracked.fill_(step + 10)
        model.running_mean.fill_(10.0 * value)  # a float buffer: copied, never averaged
        ema.update(model, step)
    # step 0 tracks (decay 0): 1; step 1: 0.5*1+0.5*2 = 1.5; step 2: 0.5*1.5+0.5*4 = 2.75
    assert torch.allclose(ema.module.weight, torch.full((2,), 2.75))
    assert int(ema.module.num_batches_tracked) == 12
    assert torch.equal(ema.module.running_mean, torch.full((2,), 40.0))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_warmup_decay_follows_the_closed_form_and_caps_at_decay():
    ema = EMA(torch.nn.Linear(2, 2), decay=0.999, start_step=5)
    assert ema.decay_at(4) == 0.0  # before the start the shadow tracks the weights
    assert ema.decay_at(5) == pytest.approx(1 / 10)  # n = 0: (1 + 0) / (10 + 0)
    assert ema.decay_at(5 + 90) == pytest.approx(91 / 100)
    assert ema.decay_at(10**6) == 0.999
    assert EMA(torch.nn.Linear(2, 2), decay=0.999, start_step=5, warmup=False).decay_at(5) == 0.999


def test_warmup_forgets_the_start_weights_that_a_plain_ema_keeps():
    # Weights jump from 0 to 1 right after the start: a plain EMA keeps decay ** n of the zeros,
    # the warmed-up one follows the new weights.
    def run(warmup: bool) -> float:
        model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(model.weight)
        ema = EMA(model, decay=0.999, start_step=0, warmup=warmup)
        ema.update(model, 0)
        with torch.no_grad():
            model.weight.fill_(1.0)
        for step in range(1, 1101):
            ema.update(model, step)
        return float(ema.module.weight)

    plain, warm = run(False), run(True)
    assert plain == pytest.approx(1 - 0.999 ** 1100, rel=1e-4)  # about 0.67: a third is the start's
    assert warm > 0.99
