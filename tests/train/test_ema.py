"""EMA of weights: closed form of the running average, and tracking before start_step."""

import torch

from holo3d.train.ema import EMA


def test_ema_matches_closed_form_and_copies_buffers():
    model = torch.nn.BatchNorm1d(2)
    model.weight.data.fill_(0.0)
    ema = EMA(model, decay=0.5, start_step=1)
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
