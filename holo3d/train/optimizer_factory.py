"""OptimizerFactory: optimizer (Adam / AdamW / SGD), per-parameter-group learning rates, LR schedule.

Schedules are stepped once per optimizer step, so warm-up is counted in iterations; milestones and
the cosine horizon are given in epochs and converted with the loop's ``iterations_per_epoch``.
Every breed runs its fused multi-tensor kernel where the parameters allow (``multi_tensor_kernel``).
"""


import math
from dataclasses import field
from typing import Dict, List, Tuple

import torch
from pytorch3d.implicitron.tools.config import ReplaceableBase, registry

OPTIMIZERS = ("Adam", "AdamW", "SGD")
LR_POLICIES = ("constant", "multistep", "exponential", "cosine")


class OptimizerFactoryBase(ReplaceableBase):
    def __call__(
        self, model: torch.nn.Module, iterations_per_epoch: int, max_epochs: int
    ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        raise NotImplementedError()


@registry.register
class HoloOptimizerFactory(OptimizerFactoryBase):
    """
    Members:
        breed: one of Adam, AdamW, SGD.
        lr: base learning rate.
        param_group_lrs: parameter-name prefix -> learning rate (e.g. {"unet.": 2e-5}); the longest
            matching prefix wins, unmatched parameters use ``lr``.
        lr_policy: constant | multistep | exponential | cosine (all after linear warm-up).
        warmup_iters: linear warm-up from ``warmup_start_factor * lr`` over this many steps.
        multistep_milestones: epochs at which multistep multiplies the LR by ``gamma``.
        exponential_decay_epochs: exponential policy: LR * gamma ** (epoch / this).
        cosine_min_factor: cosine policy decays to ``lr * cosine_min_factor`` at max_epochs.
    """

    breed: str = "Adam"
    lr: float = 5e-5
    weight_decay: float = 0.0
    betas: Tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    param_group_lrs: Dict[str, float] = field(default_factory=lambda: {})
    lr_policy: str = "constant"
    gamma: float = 0.1
    multistep_milestones: List[int] = field(default_factory=lambda: [])
    exponential_decay_epochs: float = 100.0
    cosine_min_factor: float = 0.0
    warmup_iters: int = 0
    warmup_start_factor: float = 0.01

    def __post_init__(self):
        if self.breed not in OPTIMIZERS:
            raise ValueError(f"optimizer_factory.breed={self.breed!r}; choose one of {OPTIMIZERS}")
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"optimizer_factory.lr_policy={self.lr_policy!r}; choose one of {LR_POLICIES}")
        if self.lr < 0:
            raise ValueError(f"optimizer_factory.lr={self.lr}; must be >= 0")

    def __call__(self, model, iterations_per_epoch, max_epochs):
        groups = self._parameter_groups(model)
        kernel = multi_tensor_kernel(groups)
        if self.breed == "SGD":
            optimizer = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, **kernel
            )
        else:
            optimizer_class = torch.optim.Adam if self.breed == "Adam" else torch.optim.AdamW
            optimizer = optimizer_class(
                groups, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay, **kernel
            )
        factor = self._lr_factor_fn(iterations_per_epoch, max_epochs)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _parameter_groups(self, model: torch.nn.Module) -> List[dict]:
        prefixes = sorted(self.param_group_lrs, key=len, reverse=True)
        grouped: Dict[str, List[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                prefix = next((p for p in prefixes if name.startswith(p)), "")
                grouped.setdefault(prefix, []).append(param)
        unused = [p for p in prefixes if p not in grouped]
        if unused:
            raise ValueError(f"optimizer_factory.param_group_lrs prefixes match no parameter: {unused}")
        return [
            {"params": params, "lr": self.param_group_lrs.get(prefix, self.lr), "name": prefix or "default"}
            for prefix, params in grouped.items()
        ]

    def _lr_factor_fn(self, iterations_per_epoch: int, max_epochs: int):
        """Returns step -> LR multiplier (warm-up times the policy's decay)."""
        per_epoch = max(iterations_per_epoch, 1)
        milestones = [m * per_epoch for m in self.multistep_milestones]
        horizon = max(max_epochs * per_epoch - self.warmup_iters, 1)

        def decay(step: int) -> float:
            if self.lr_policy == "multistep":
                return self.gamma ** sum(step >= m for m in milestones)
            if self.lr_policy == "exponential":
                return self.gamma ** (step / (self.exponential_decay_epochs * per_epoch))
            if self.lr_policy == "cosine":
                progress = min(max(step - self.warmup_iters, 0) / horizon, 1.0)
                cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
                return self.cosine_min_factor + (1.0 - self.cosine_min_factor) * cosine
            return 1.0

        def factor(step: int) -> float:
            if step < self.warmup_iters:
                start = self.warmup_start_factor
                return (start + (1.0 - start) * step / self.warmup_iters) * decay(step)
            return decay(step)

        return factor


# Devices where Adam, AdamW and SGD have fused kernels for every floating-point dtype.
_FUSED_DEVICES = ("cuda", "cpu")


def multi_tensor_kernel(groups: List[dict]) -> Dict[str, bool]:
    """The optimizer's implementation switch: ``fused`` when every parameter is a floating-point
    tensor on one device type with fused kernels, else ``foreach``.

    The fused kernel updates all parameters in a few launches (CUDA) or one pass (CPU), and it takes
    the ``found_inf`` flag that lets ``holo3d.train.step.sync_free_step`` skip a non-finite step on
    the device; foreach (one launch per op and dtype group) is the fallback.
    """
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    fusable = len(devices) == 1 and devices <= set(_FUSED_DEVICES)
    if fusable and all(p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True}
