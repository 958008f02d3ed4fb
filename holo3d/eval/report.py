"""Metric reports: per-sequence means of per-view metrics, their mean, and the metrics.json writer.

Layout of the JSON file::

    {"mean": {"psnr": ..., ...},            # mean over sequences of the per-sequence means
     "per_sequence": {"<name>": {"psnr": ..., "n_views": V}, ...},
     "skipped": {"lpips": "<why>"},          # metrics that could not be computed
     ...run information (exp_dir, checkpoint, settings)...}

Non-finite values (e.g. PSNR of a view without foreground) are written as null and left out of
the means, so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

import torch

from holo3d.io.atomic_file import write_text_atomic


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


class MetricsReport:
    """Collects per-view metrics sequence by sequence."""

    def __init__(self) -> None:
        self.per_sequence: Dict[str, Dict[str, float]] = {}
        self.skipped: Dict[str, str] = {}

    def add_sequence(self, name: str, per_view: Mapping[str, torch.Tensor]) -> Dict[str, float]:
        """Stores the means of ``per_view`` metrics, each (V,), for sequence ``name``."""
        means = {key: _finite_mean(value.detach().float().cpu().tolist()) for key, value in per_view.items()}
        means["n_views"] = int(next(iter(per_view.values())).numel()) if per_view else 0
        self.per_sequence[name] = means
        return means

    def skip(self, metric: str, reason: str) -> None:
        self.skipped[metric] = reason

    def mean(self) -> Dict[str, float]:
        """Mean over sequences of each metric (sequences weigh the same whatever their view count)."""
        keys = {k for values in self.per_sequence.values() for k in values if k != "n_views"}
        return {
            key: _finite_mean([v[key] for v in self.per_sequence.values() if key in v])
            for key in sorted(keys)
        }

    def to_dict(self, info: Mapping[str, Any]) -> Dict[str, Any]:
        return {
            **dict(info),
            "n_sequences": len(self.per_sequence),
            "mean": self.mean(),
            "per_sequence": self.per_sequence,
            "skipped": self.skipped,
        }


def _nulls_for_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls_for_nonfinite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls_for_nonfinite(v) for v in value]
    return value


def write_metrics_json(path: Path, report: Mapping[str, Any]) -> Path:
    """Writes ``report`` as strict JSON (non-finite -> null), atomically."""
    text = json.dumps(_nulls_for_nonfinite(dict(report)), indent=2, sort_keys=False, allow_nan=False)
    write_text_atomic(Path(path), text + "\n")
    return Path(path)
