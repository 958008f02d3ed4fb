"""FiniteCheck: catch non-finite grids and renders and say where and when they appeared."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch


class FiniteCheck:
    """Collects ``isfinite(x).all()`` flags during a forward pass and checks them all at once.

    One host sync per forward (in ``raise_if_any``) instead of one per checked tensor.
    """

    def __init__(self, iteration: Optional[int] = None, enabled: bool = True):
        self.iteration = iteration
        self.enabled = enabled
        self._flags: List[Tuple[str, torch.Tensor]] = []

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Records whether ``x`` is finite; returns ``x`` unchanged so calls can wrap expressions."""
        if self.enabled:
            self._flags.append((name, torch.isfinite(x.detach()).all()))
        return x

    def raise_if_any(self) -> None:
        """Raises FloatingPointError naming every non-finite tensor and the iteration."""
        if not self._flags:
            return
        finite = torch.stack([flag for _, flag in self._flags]).cpu()
        bad = [name for (name, _), ok in zip(self._flags, finite.tolist()) if not ok]
        self._flags.clear()
        if bad:
            when = "" if self.iteration is None else f" at iteration {self.iteration}"
            raise FloatingPointError(
                f"non-finite values (NaN/inf) in {', '.join(bad)}{when}; the first one listed is "
                "where they appeared. Lower the learning rate, enable gradient clipping, or check "
                "the input cameras and images."
            )
