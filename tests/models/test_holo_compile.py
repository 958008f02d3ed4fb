"""compile_model on HoloDiffusion: the training forward compiles its tensor-only core
(``compile_target``), so new scene names and bootstrap coins never recompile it, and the compiled
steps keep the eager numbers."""

import pytest
import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode

from holo3d.render.rays import rays_need_replacement, sample_training_rays
from holo3d.train import step as step_module
from holo3d.train.step import compiled_training_forward
from models_testdata import orbit_cameras, random_frame_batch, tiny_model


def _batches(n_steps: int):
    """Batches of 2 scenes x 3 frames whose scene names change every step."""
    batches = []
    for step in range(n_steps):
        batch = random_frame_batch(2, 3, seed=step)
        batch["sequence_name"] = [f"step{step}_{name}" for name in batch["sequence_name"]]
        batches.append(batch)
    return batches


def _train_forwards(model, forward, batches):
    """Objectives (N,), coins and accumulated gradients of forward + backward from RNG seed 0."""
    torch.manual_seed(0)
    objectives, coins = [], []
    for batch in batches:
        preds = forward(batch)
        preds["objective"].backward()
        objectives.append(preds["objective"].detach())
        coins.append(bool(preds["bootstrapped"]))
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return torch.stack(objectives), coins, grads


def test_holo_diffusion_compiles_its_training_core():
    model = tiny_model()
    assert model.compile_target() == model.training_core


def test_compiled_target_takes_the_methods_place_only_during_a_call(monkeypatch):
    model = tiny_model(bootstrap_prob=0.0)
    compiled, seen = [], []

    def fake_compile(target, **kwargs):
        compiled.append(target)

        def wrapper(*args, **kw):
            seen.append(vars(model).get("training_core") is wrapper)
            return target(*args, **kw)

        return wrapper

    monkeypatch.setattr(step_module.torch, "compile", fake_compile)
    forward = compiled_training_forward(model)
    preds = forward(_batches(1)[0])
    assert compiled == [model.training_core] and seen == [True]
    assert "training_core" not in vars(model)  # a copy of the model never calls the compiled core
    assert torch.isfinite(preds["objective"])


def test_models_without_a_target_compile_the_whole_forward(monkeypatch):
    from holo3d.models.protocol import TrainableModel

    class Plain(TrainableModel, torch.nn.Linear):
        pass

    compiled = []
    monkeypatch.setattr(step_module.torch, "compile", lambda target, **kw: compiled.append(target))
    plain, linear = Plain(2, 2), torch.nn.Linear(2, 2)  # the default target; not a TrainableModel
    assert plain.compile_target() == plain.forward
    compiled_training_forward(plain)
    compiled_training_forward(linear)
    assert compiled[0] is plain and compiled[1] is linear  # the module itself, as before the hook


def test_cuda_graph_modes_mark_each_step_and_hand_out_tensors_the_graph_does_not_own(monkeypatch):
    from holo3d.models.protocol import TrainableModel

    class Plain(TrainableModel, torch.nn.Linear):
        pass

    pool = torch.zeros(2)  # stands for the graph's static output buffer, overwritten by every replay
    modes, marks = [], []
    monkeypatch.setattr(step_module.torch, "compile",
                        lambda target, **kw: modes.append(kw["mode"]) or (lambda **batch: {"loss": pool}))
    monkeypatch.setattr(step_module.torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    out = compiled_training_forward(Plain(2, 2), "reduce-overhead")({})
    pool.add_(1.0)  # the next replay
    assert modes == ["reduce-overhead"] and marks == [1] and torch.equal(out["loss"], torch.zeros(2))
    compiled_training_forward(Plain(2, 2), "default")({})
    assert modes[-1] == "default" and marks == [1]  # no graph step outside the CUDA-graph modes
    with pytest.raises(ValueError, match="compile_mode='fast'"):
        compiled_training_forward(Plain(2, 2), "fast")


def test_explicit_replacement_draws_the_same_rays():
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1.0  # 16 pixels per view
    cameras = orbit_cameras(2)
    assert not rays_need_replacement(mask, 16) and rays_need_replacement(mask, 17)
    for n_rays in (16, 17):
        decided = rays_need_replacement(mask, n_rays)
        default = sample_training_rays(cameras, n_rays, (8, 8), mask, torch.Generator().manual_seed(0))
        given = sample_training_rays(cameras, n_rays, (8, 8), mask, torch.Generator().manual_seed(0),
                                     replacement=decided)
        assert torch.equal(default.xys_ndc, given.xys_ndc)


@pytest.mark.slow
def test_compiled_training_forward_has_one_graph_per_coin_and_eager_numbers(monkeypatch):
    """Six steps with new scene names every step and both coins: at most two graphs (bootstrap on /
    off), no graph breaks, and the eager objectives and gradients. The graphs are counted by
    torch.compile's front end (dynamo), whatever the backend: aot_eager (AOT autograd, eager kernels)
    keeps the test to a minute or two, where inductor's C++ builds take over ten on 2 cores."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    real_compile = torch.compile
    monkeypatch.setattr(step_module.torch, "compile",
                        lambda target, **kw: real_compile(target, backend="aot_eager", **kw))
    torch.manual_seed(0)
    model = tiny_model(bootstrap_prob=0.5)
    model.train()
    batches = _batches(6)
    eager = _train_forwards(model, lambda b: model(**b, evaluation_mode=EvaluationMode.TRAINING), batches)
    assert set(eager[1]) == {True, False}  # seed 0 gives both coins

    torch._dynamo.reset()
    counters.clear()
    compiled = _train_forwards(model, compiled_training_forward(model), batches)
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])
    assert counters["frames"]["ok"] <= 2 and not counters["graph_break"], dict(counters["graph_break"])
    assert compiled[1] == eager[1]
    torch.testing.assert_close(compiled[0], eager[0], rtol=0, atol=1e-4)
    for name, grad in eager[2].items():
        torch.testing.assert_close(compiled[2][name], grad, rtol=1e-3, atol=1e-4, msg=name)
    assert "training_core" not in vars(model)
