"""Optimizer factory: breeds, per-group learning rates, schedule closed forms."""

import math

import pytest
import torch

from holo3d.train.optimizer_factory import HoloOptimizerFactory
from pytorch3d.implicitron.tools.config import expand_args_fields


def factory(**kwargs):
    expand_args_fields(HoloOptimizerFactory)
    return HoloOptimizerFactory(**kwargs)


def model():
    return torch.nn.ModuleDict({"unet": torch.nn.Linear(2, 2), "mlp": torch.nn.Linear(2, 1)})


def lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_per_group_learning_rates_and_breeds():
    for breed, cls in (("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW), ("SGD", torch.optim.SGD)):
        optimizer, _ = factory(breed=breed, lr=1e-3, param_group_lrs={"unet.": 1e-4})(model(), 10, 1)
        assert isinstance(optimizer, cls)
        by_name = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert by_name == {"unet.": 1e-4, "default": 1e-3}


def test_warmup_then_cosine_closed_form():
    optimizer, scheduler = factory(lr=1.0, lr_policy="cosine", warmup_iters=4, warmup_start_factor=0.0)(
        model(), iterations_per_epoch=4, max_epochs=3)
    values = lrs(scheduler, optimizer, 12)
    assert values[:4] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    expected = [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert values[4:] == pytest.approx(expected)


def test_multistep_and_exponential():
    optimizer, scheduler = factory(lr=1.0, lr_policy="multistep", multistep_milestones=[1, 2], gamma=0.1)(
        model(), iterations_per_epoch=2, max_epochs=3)
    assert lrs(scheduler, optimizer, 6) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    optimizer, scheduler = factory(lr=1.0, lr_policy="exponential", gamma=0.5, exponential_decay_epochs=1)(
        model(), iterations_per_epoch=2, max_epochs=3)
    assert lrs(scheduler, optimizer, 3) == pytest.approx([1, 0.5 ** 0.5, 0.5])


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="optimizer_factory.breed='Adamm'"):
        factory(breed="Adamm")
    with pytest.raises(ValueError, match="param_group_lrs prefixes match no parameter: \\['unett.'\\]"):
        factory(param_group_lrs={"unett.": 1.0})(model(), 1, 1)
