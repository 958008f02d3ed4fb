"""The step's fixed-cost levers keep the eager step's numbers: sync-free steps (device-side stats and
skips), the multi-tensor EMA, fused / foreach optimizers, and the compiled training forward."""

import copy
import logging

import pytest
import torch
from accelerate import Accelerator
from pytorch3d.implicitron.tools.config import expand_args_fields

from holo3d.train.checkpoint import load_latest_checkpoint
from holo3d.train.ema import EMA
from holo3d.train.monitor import TrainingMonitor
from holo3d.train.optimizer_factory import HoloOptimizerFactory, multi_tensor_kernel
from holo3d.train.stats import read_records
from holo3d.train.step import optimization_step, sync_free_step
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment
from test_training_loop import LOOP, MODEL, TINY, run_tiny
from tiny_components import TinyTestDataSource, TinyTestModel


def tiny_model(**kwargs) -> TinyTestModel:
    expand_args_fields(TinyTestModel)
    torch.manual_seed(0)
    return TinyTestModel(**kwargs)


def tiny_batches(n: int) -> list:
    expand_args_fields(TinyTestDataSource)
    source = TinyTestDataSource(dataset_length_train=n)
    return list(source.get_datasets_and_dataloaders()[1].train)


def make_optimizer(model, **kwargs):
    expand_args_fields(HoloOptimizerFactory)
    return HoloOptimizerFactory(lr=0.05, **kwargs)(model, iterations_per_epoch=4, max_epochs=2)


def train(step_fn, model, batches, *, clip=1.0, ema_decay=0.9, **optimizer_kwargs):
    """Runs step_fn over the batches from RNG seed 0; returns what each step returned, the EMA."""
    optimizer, scheduler = make_optimizer(model, **optimizer_kwargs)
    ema = EMA(model, ema_decay)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    out = [step_fn(model, batch, accelerator=accelerator, optimizer=optimizer, scheduler=scheduler, ema=ema,
                   clip_grad_norm=clip, iteration=i) for i, batch in enumerate(batches)]
    return out, ema, optimizer


class _NoHostSync:
    """Makes every Python-level host read of a tensor raise while active."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def __enter__(self):
        for name in self.NAMES:
            self.monkeypatch.setattr(torch.Tensor, name, self._refuse(name))

    def __exit__(self, *exc):
        self.monkeypatch.undo()

    @staticmethod
    def _refuse(name):
        def refuse(*args, **kwargs):
            raise AssertionError(f"host sync in a sync-free step: Tensor.{name}")
        return refuse


# ---- (a) device-side stats and skips == reading every step ----

def test_sync_free_steps_match_reading_every_step(monkeypatch):
    batches = tiny_batches(6)
    eager_model, free_model = tiny_model(), tiny_model()
    eager, eager_ema, _ = train(optimization_step, eager_model, batches)
    with _NoHostSync(monkeypatch):
        records, free_ema, _ = train(sync_free_step, free_model, batches)
    read = read_records(records)
    for values, (free_values, grad_norm) in zip(eager, read):
        assert free_values.keys() == values.keys() == {"objective", "psnr"}
        for key, value in values.items():
            assert free_values[key] == pytest.approx(value, rel=1e-6)
        assert 0.0 < grad_norm < float("inf")
    for name, tensor in eager_model.state_dict().items():
        torch.testing.assert_close(free_model.state_dict()[name], tensor, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(free_ema.state_dict()[name], eager_ema.state_dict()[name], rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(free_model.state_dict()[k], v) for k, v in tiny_model().state_dict().items())


@pytest.mark.parametrize("optimizer_kwargs", [{}, {"breed": "SGD"}], ids=["fused_adam", "fused_sgd"])
def test_sync_free_skip_leaves_weights_and_optimizer_state_alone(optimizer_kwargs):
    model = tiny_model(nan_at_iterations=[2])
    records, _, optimizer = train(sync_free_step, model, tiny_batches(2), ema_decay=0.5, **optimizer_kwargs)
    assert optimizer.defaults["fused"]
    weights = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(optimizer.state_dict()["state"])
    accelerator = Accelerator(cpu=True)
    record = sync_free_step(model, tiny_batches(1)[0], accelerator=accelerator, optimizer=optimizer,
                            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), ema=None,
                            clip_grad_norm=1.0, iteration=2)
    (values, grad_norm), = read_records([record])
    assert values["objective"] != values["objective"] and grad_norm != grad_norm  # NaN: skipped
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    for index, entry in optimizer.state_dict()["state"].items():
        for key, tensor in entry.items():
            assert torch.equal(tensor, state[index][key]), (index, key)


def test_loop_logs_and_averages_alike_with_and_without_syncs(tmp_path, monkeypatch):
    """Same weights, same epoch means and the same values logged at the same iterations."""
    logged = []
    monkeypatch.setattr(TrainingMonitor, "scalars", lambda self, step, values, split: logged.append(
        (step, split, {k: v for k, v in values.items() if k != "sec_per_it"})))
    runs = {}
    for sync_free in (False, True):
        logged.clear()
        run_tiny(tmp_path / str(sync_free), f"{LOOP}.max_epochs=3", f"{LOOP}.log_interval=4",
                 f"{LOOP}.sync_free_step={str(sync_free).lower()}")
        runs[sync_free] = (list(logged), load_latest_checkpoint(tmp_path / str(sync_free)))
    (eager_logs, eager_state), (free_logs, free_state) = runs[False], runs[True]
    assert [(s, split) for s, split, _ in free_logs] == [(s, split) for s, split, _ in eager_logs]
    assert [s for s, split, _ in eager_logs if split == "train"] == [4]  # 6 iterations, logged at 4
    for (_, _, free), (_, _, eager) in zip(free_logs, eager_logs):
        assert free.keys() == eager.keys()
        assert free == pytest.approx(eager, rel=1e-6)
    for name, tensor in eager_state["model"].items():
        torch.testing.assert_close(free_state["model"][name], tensor, rtol=1e-6, atol=1e-7)


def test_loop_epoch_means_match_and_nonfinite_steps_are_reported_when_read(tmp_path, caplog):
    means = {sync_free: run_means(tmp_path / str(sync_free), f"{LOOP}.max_epochs=2",
                                  f"{LOOP}.sync_free_step={str(sync_free).lower()}")
             for sync_free in (False, True)}
    assert means[True].keys() == means[False].keys()
    for key in ("objective", "psnr"):
        assert means[True][key] == pytest.approx(means[False][key], rel=1e-6)
    with caplog.at_level(logging.WARNING):
        run_tiny(tmp_path / "nan", f"{LOOP}.max_epochs=1", f"{MODEL}.nan_at_iterations=[0]")
    assert "iteration 0: non-finite {'objective': nan, 'psnr': nan" in caplog.text
    assert "gradient_norm" in caplog.text  # the update was skipped because the gradients were NaN too


def run_means(exp_dir, *overrides) -> dict:
    """A tiny training run; the train means of its last epoch."""
    cfg = compose_config("base", [f"exp_dir={exp_dir}", *TINY, *overrides])
    return Experiment(**cfg).run(cfg)


# ---- (b) multi-tensor EMA == the per-tensor reference ----

class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.b = torch.nn.Linear(4, 4)
        self.tied = torch.nn.ModuleList([self.a])  # the same parameters under a second path
        self.register_buffer("constant", torch.ones(2), persistent=False)
        self.register_buffer("scale", torch.zeros(()))


def reference_ema(shadow: dict, model: torch.nn.Module, decay: float) -> None:
    """The per-tensor loop: floating-point parameters averaged, persistent buffers copied."""
    params = dict(model.named_parameters())
    for name, tensor in model.state_dict().items():
        if name in params and tensor.is_floating_point():
            shadow[name] = decay * shadow[name] + (1 - decay) * tensor
        elif name not in params and not name.startswith("tied."):
            shadow[name] = tensor.clone()


def test_foreach_ema_equals_the_reference_loop():
    torch.manual_seed(0)
    model = _Net()
    ema = EMA(model, decay=0.9, start_step=2)
    shadow = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("tied.")}
    for step in range(6):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
            model.norm.running_mean.normal_()
            model.norm.num_batches_tracked += 1
            model.scale = torch.full((), float(step))  # reassigned, not filled: still copied
            model.constant.fill_(step)  # non-persistent: the model's own constant, left alone
        ema.update(model, step)
        reference_ema(shadow, model, ema.decay_at(step))
    for name, tensor in shadow.items():
        torch.testing.assert_close(ema.state_dict()[name], tensor, rtol=1e-6, atol=1e-6, msg=name)
    assert torch.equal(ema.module.constant, torch.ones(2))
    assert ema.module.tied[0].weight is ema.module.a.weight  # sharing survives (averaged once)


# ---- (c) fused / foreach AdamW == plain AdamW ----

def test_fused_and_foreach_adamw_equal_plain_adamw_on_cpu():
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    groups = lambda m: [{"params": list(m[0].parameters()), "lr": 1e-2}, {"params": list(m[2].parameters())}]
    assert multi_tensor_kernel(groups(reference)) == {"fused": True}  # what the factory picks on CPU
    models = {kind: copy.deepcopy(reference) for kind in ("plain", "fused", "foreach")}
    optimizers = {
        kind: torch.optim.AdamW(groups(m), lr=3e-2, weight_decay=0.1, fused=kind == "fused",
                                foreach=kind == "foreach")
        for kind, m in models.items()
    }
    for step in range(5):
        x = torch.randn(16, 5, generator=torch.Generator().manual_seed(step))
        for kind, m in models.items():
            m(x).square().mean().backward()
            optimizers[kind].step()
            optimizers[kind].zero_grad(set_to_none=True)
    plain = models["plain"].state_dict()
    assert any(not torch.equal(plain[k], v) for k, v in reference.state_dict().items())
    for kind in ("fused", "foreach"):
        for name, tensor in models[kind].state_dict().items():
            torch.testing.assert_close(tensor, plain[name], rtol=1e-6, atol=1e-6, msg=f"{kind} {name}")


def test_factory_falls_back_to_foreach_when_parameters_cannot_be_fused():
    meta = torch.nn.Linear(2, 2, device="meta")
    assert multi_tensor_kernel([{"params": list(meta.parameters())}]) == {"foreach": True}


# ---- (d) compiled training forward ----

@pytest.mark.slow
def test_compiled_forward_matches_eager_and_checkpoints_plain_names(tmp_path, monkeypatch):
    """Compiling takes ~30-60 s on CPU. Inductor's own random numbers differ from eager's; the
    model draws pixels at random, so the comparison asks for eager's generator."""
    import torch._inductor.config
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    eager_means = run_means(tmp_path / "eager", f"{LOOP}.max_epochs=2")
    counters.clear()
    run_means(tmp_path / "compiled", f"{LOOP}.max_epochs=1", f"{LOOP}.compile_model=true")
    assert counters["stats"]["unique_graphs"] >= 1  # the forward really ran compiled
    first = load_latest_checkpoint(tmp_path / "compiled")
    assert first["model"].keys() == load_latest_checkpoint(tmp_path / "eager")["model"].keys()
    assert not [k for k in first["model"] if "_orig_mod" in k]
    compiled_means = run_means(tmp_path / "compiled", f"{LOOP}.max_epochs=2", f"{LOOP}.compile_model=true")
    assert "resumed from" in (tmp_path / "compiled" / "train.log").read_text()
    assert compiled_means["objective"] == pytest.approx(eager_means["objective"], abs=1e-4)
    compiled, eager = load_latest_checkpoint(tmp_path / "compiled"), load_latest_checkpoint(tmp_path / "eager")
    assert compiled["iteration"] == eager["iteration"] == 4
    for name, tensor in eager["model"].items():
        # Adam's normalised steps (lr 0.05) turn the compiled kernels' round-off into ~1e-4 moves.
        torch.testing.assert_close(compiled["model"][name], tensor, rtol=0, atol=1e-3)
