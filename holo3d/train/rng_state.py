"""Capture and restore every random-number generator the training loop consumes.

Restoring them on resume is what makes an interrupted run continue exactly as an uninterrupted one.
The captured state holds tensors and plain Python values only (no numpy arrays, no tuples of
numpy types), so a checkpoint opens with ``torch.load(path)`` under its default
``weights_only=True``. States written by older versions (numpy arrays, Python tuples) still restore.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def capture_rng_state() -> Dict[str, Any]:
    """{"python", "numpy", "torch"[, "cuda"]}: dicts of tensors / ints / floats and uint8 tensors."""
    version, python_words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(python_words, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _python_state(saved: Any) -> tuple:
    if not isinstance(saved, dict):  # format of older checkpoints: random.getstate() itself
        return saved
    return saved["version"], tuple(int(w) for w in saved["state"].tolist()), saved["gauss"]


def _numpy_state(saved: Any) -> tuple:
    if not isinstance(saved, dict):  # older checkpoints: np.random.get_state() itself
        return saved
    keys = saved["keys"].numpy().astype(np.uint32)
    return saved["kind"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
