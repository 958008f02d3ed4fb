"""One training step (forward, backward, clipping, optimizer / LR schedule / EMA updates), shared by
the training loop and ``holo3d.bench`` so that the benchmark times exactly what training runs.

Two variants of the same step, on a batch already on the device:

    optimization_step   reads the logged scalars on the host before backward (one host sync per
                        step) and raises NonFiniteStep, with no update, when one is non-finite.
    sync_free_step      makes no host sync: the logged scalars and the gradient norm stay on the
                        device in a StepRecord that the caller reads later (the loop reads every
                        ``log_interval`` steps, many records with one sync), and a non-finite step
                        is skipped on the device.

How sync_free_step skips: the step is non-finite when a logged scalar or the global gradient norm
is. The norm covers every accumulated micro-batch and, in DDP, the all-reduced gradients, which are
the same on every rank (a non-finite loss on one rank reaches them all); only a logged value that is
non-finite on one rank without reaching the gradients would skip that rank alone. Fused optimizers (what HoloOptimizerFactory builds on CPU and CUDA) take that
decision as their ``found_inf`` tensor, as under a GradScaler: weights, moments and step counts stay
as they were. An optimizer without a fused kernel reads the flag on the host (one sync) instead.
Trade-offs against optimization_step, all on non-finite steps only: the LR schedule still advances
one step and the EMA still moves towards the (unchanged) weights; backward runs on the non-finite
loss; the loop learns of the step (its warning, ``max_nonfinite_steps``) when it reads the record,
up to ``log_interval - 1`` steps later. A model's own check that raises FloatingPointError (e.g.
HoloDiffusionModel.check_finite) is handled as before, and costs that model's host sync.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, Optional

import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode

from holo3d.models.protocol import TrainableModel, unwrap
from holo3d.train.stats import StepRecord, scalar_tensors, scalar_values

# forward(batch) -> the model's output dict; e.g. compiled_training_forward(model)
TrainingForward = Callable[[Any], Dict[str, Any]]


class NonFiniteStep(Exception):
    """A step produced non-finite values (``bad`` names them); no update was made."""

    def __init__(self, bad: Dict[str, Any]):
        super().__init__(str(bad))
        self.bad = bad


def optimization_step(model, batch, *, accelerator, optimizer, scheduler, ema, clip_grad_norm: float,
                      iteration: int, forward: Optional[TrainingForward] = None) -> Dict[str, float]:
    """One training step that reads the logged scalars before backward (the step's one host sync).

    Raises NonFiniteStep (after zeroing the gradients) when the model's own finiteness check or a
    logged value fails. ``forward`` replaces ``model(**batch, ...)`` (e.g. a compiled forward).
    """
    with accelerator.accumulate(model):
        preds = _forward(model, batch, accelerator, optimizer, iteration, forward)
        values = scalar_values(preds, unwrap(model).log_vars)
        if not all(map(_is_finite, values.values())):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteStep({k: v for k, v in values.items() if not _is_finite(v)})
        accelerator.backward(preds["objective"])
        if accelerator.sync_gradients and clip_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        _after_update(model, accelerator, optimizer, scheduler, ema, iteration)
    return values


def sync_free_step(model, batch, *, accelerator, optimizer, scheduler, ema, clip_grad_norm: float,
                   iteration: int, forward: Optional[TrainingForward] = None) -> StepRecord:
    """One training step without a host sync; returns its StepRecord (read it with
    ``stats.read_records``). A non-finite step makes no update (see the module docstring).

    Raises NonFiniteStep only when the model's own check raises FloatingPointError.
    """
    with accelerator.accumulate(model):
        preds = _forward(model, batch, accelerator, optimizer, iteration, forward)
        names, scalars, host = scalar_tensors(preds, unwrap(model).log_vars)
        accelerator.backward(preds["objective"])
        if accelerator.sync_gradients:
            grad_norm = _global_grad_norm(model, accelerator, clip_grad_norm)
        else:  # a micro-batch of gradient accumulation: no update, no norm yet
            grad_norm = preds["objective"].detach().float().new_zeros(())
        values = torch.stack([*scalars, grad_norm])  # (K + 1,): logged scalars, gradient norm
        if accelerator.sync_gradients:
            host_finite = all(map(_is_finite, host.values()))  # Python numbers: no sync
            _step_unless_nonfinite(optimizer, ~torch.isfinite(values).all(), host_finite)
        _after_update(model, accelerator, optimizer, scheduler, ema, iteration)
    return StepRecord(iteration, names, values, host)


# torch.compile modes; the two that replay CUDA graphs need a step marker and outputs the graphs do not own
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compiled_training_forward(model: torch.nn.Module, mode: str = "default") -> TrainingForward:
    """The model's training forward with its ``compile_target`` under ``torch.compile(dynamic=False)``.

    The default target is the whole forward (``model``, DDP wrapper included, is compiled). A model
    that names another method (TrainableModel.compile_target) keeps its forward eager and gets the
    compiled method in that method's place for the duration of each call, so whatever the forward
    decides in Python (scene grouping, random coins) never becomes a guard.

    ``model`` itself is left as it is (its state_dict keys gain no ``_orig_mod.`` prefix, and a copy
    of it never calls the compiled method). The compiled call passes no ``iteration``: a Python int
    that changes every step would make torch.compile guard on it and recompile every step (models
    use it only in messages).

    ``mode`` is torch.compile's. Under the CUDA-graph modes each call starts a new graph step
    (``cudagraph_mark_step_begin``) and the compiled call's tensors are cloned out of the graph's
    memory pool, since the next replay overwrites it while the loop still holds logged values.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"training_loop.compile_mode={mode!r}; expected one of {list(COMPILE_MODES)}")
    inner = unwrap(model)
    target = inner.compile_target() if isinstance(inner, TrainableModel) else inner.forward
    if target == inner.forward:
        compiled = _graph_safe(torch.compile(model, dynamic=False, mode=mode), mode)

        def forward(batch) -> Dict[str, Any]:
            return compiled(**batch, evaluation_mode=EvaluationMode.TRAINING)

        return forward
    if getattr(target, "__self__", None) is not inner:
        raise TypeError(f"{type(inner).__name__}.compile_target() must return one of its own bound "
                        f"methods, got {target!r}")
    name, compiled_target = target.__name__, _graph_safe(torch.compile(target, dynamic=False, mode=mode), mode)

    def forward_with_compiled_target(batch) -> Dict[str, Any]:
        with _attribute_replaced(inner, name, compiled_target):
            return model(**batch, evaluation_mode=EvaluationMode.TRAINING)

    return forward_with_compiled_target


def _graph_safe(compiled: Callable, mode: str) -> Callable:
    """``compiled`` as is, or (CUDA-graph modes) marking a new step and cloning its output tensors."""
    if mode not in _CUDA_GRAPH_MODES:
        return compiled

    def call(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return _cloned(compiled(*args, **kwargs))

    return call


def _cloned(value: Any) -> Any:
    """Tensors in (nested) dicts / lists / tuples cloned (differentiably); anything else as is."""
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_cloned(v) for v in value)
    return value


@contextlib.contextmanager
def _attribute_replaced(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.<name>`` is ``value`` inside (an instance attribute shadowing the method)."""
    vars(obj)[name] = value
    try:
        yield
    finally:
        del vars(obj)[name]


def _forward(model, batch, accelerator, optimizer, iteration: int, forward) -> Dict[str, Any]:
    """The training forward under autocast; the model's own FloatingPointError -> NonFiniteStep."""
    model.train()
    try:
        with accelerator.autocast():
            if forward is not None:
                return forward(batch)
            return model(**batch, evaluation_mode=EvaluationMode.TRAINING, iteration=iteration)
    except FloatingPointError as error:  # the model's own check of grids / renders
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteStep({"model": str(error)}) from None


def _after_update(model, accelerator, optimizer, scheduler, ema, iteration: int) -> None:
    """LR schedule and EMA after an optimizer update; gradients cleared (accelerate keeps them
    while accumulating)."""
    if accelerator.sync_gradients:
        scheduler.step()
        if ema is not None:
            ema.update(accelerator.unwrap_model(model), iteration)
    optimizer.zero_grad(set_to_none=True)


def _global_grad_norm(model, accelerator, clip_grad_norm: float) -> torch.Tensor:
    """The 2-norm of all gradients, a 0-d float32 tensor; clips them first when asked."""
    if clip_grad_norm > 0:
        norm = accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if norm is not None:
            return norm.detach().float().reshape(())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=accelerator.device)
    return torch.nn.utils.get_total_norm(grads).float().reshape(())


def _step_unless_nonfinite(optimizer, nonfinite: torch.Tensor, host_finite: bool = True) -> None:
    """optimizer.step() unless ``nonfinite`` (0-d bool tensor) or not ``host_finite``: decided on
    the device through a fused optimizer's ``found_inf``, else read on the host."""
    if not host_finite:
        return
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
    if not inner.defaults.get("fused"):
        if not bool(nonfinite):  # the one host sync of this step
            optimizer.step()
        return
    inner.found_inf = nonfinite.float()
    try:
        optimizer.step()
    finally:
        del inner.found_inf


def _is_finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
