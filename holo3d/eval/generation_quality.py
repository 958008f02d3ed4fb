"""Generation quality of a 3D generative model against ground truth: shape coverage and appearance spread.

Issue 17's figures, for N samples of a model whose samples are radiance fields (``FieldModel``):

- Shapes: each sample's density is read at the voxel CENTRES of the ground truth's grid
  (``occupancy_64.npy``: (D, H, W) = (z, y, x) over [-extent/2, extent/2]^3, centre of voxel
  (k, j, i) at ``(i + 0.5) * extent / R - extent / 2`` along x, and so on), turned into occupancy by
  the opacity of one voxel step (``shape_conversion.density_to_occupancy``), and compared with
  ``shape_metrics`` (COV-CD, MMD-CD, 1-NNA-CD, JSD) against held-out objects' ground truth. Two
  reference rows bracket the figure: an equal-size subset of *training* objects (the ceiling: what a
  model that reproduced its training set would score) and one training object repeated N times (the
  collapse floor: what a model that always draws the same shape scores).
- Appearance: the mean pairwise image distance (per-pixel RMS over RGB, averaged over views) between
  the samples rendered from the same cameras, divided by the same figure for ground-truth objects
  rendered from those cameras. 1 means samples differ from each other as much as real objects do;
  a collapsed model scores near 0.

Targets of the issue (``GenerationQualityReport.targets``): COV-CD at least half the ceiling's,
1-NNA clearly below the floor's, appearance ratio at least 0.5.

The core that samples a model and renders ground truth is ``holo3d.eval.generation_run``; its
entry points are ``python -m holo3d.sample.generation_eval exp_dir=... num_samples=N`` and the
training loop's ``generation_eval_interval_epochs``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from holo3d.eval.report import write_metrics_json
from holo3d.eval.shape_conversion import check_block, density_to_occupancy
from holo3d.eval.shape_metrics import evaluate_voxel_sets

ROWS = ("samples", "ceiling", "floor")
SHAPE_KEYS = ("cov_cd", "mmd_cd", "nna_cd", "jsd")


def voxel_centres(resolution: int, extent: float) -> torch.Tensor:
    """World xyz (R^3, 3) of the voxel centres of [-extent/2, extent/2]^3, in (z, y, x) raster order,
    so ``values.view(R, R, R)`` of per-point values is indexed like the ground truth (D, H, W)."""
    c = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (extent / resolution) - extent / 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")  # each (R, R, R)
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)  # (R^3, 3)


@torch.no_grad()
def samples_to_occupancy(
    model, samples: torch.Tensor, resolution: int = 64, extent: Optional[float] = None,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Occupancy (N, R, R, R) bool (z, y, x) of N samples through ``model.query_field``.

    Args:
        model: a ``FieldModel`` (and ``RenderableModel`` for ``scene_extent`` when extent is None).
        samples: (N, ...) what ``model.sample`` returned.
        threshold: one voxel step's opacity above which a voxel is occupied.
    """
    extent = float(model.scene_extent if extent is None else extent)
    points = voxel_centres(resolution, extent).to(samples.device)  # (R^3, 3)
    # Density does not depend on the view direction; any unit direction will do.
    directions = torch.zeros_like(points)
    directions[:, 2] = 1.0
    occupancy = []
    for sample in samples:
        density, _ = model.query_field(sample, points, directions)  # (R^3,)
        grid = density.float().cpu().view(resolution, resolution, resolution)  # (D, H, W)
        occupancy.append(density_to_occupancy(grid, extent / resolution, threshold))
    return torch.stack(occupancy)  # (N, R, R, R)


def appearance_spread(images: torch.Tensor) -> float:
    """Mean pairwise distance of N objects' images (N, V, C, H, W) seen from the same V cameras.

    Distance of two objects: per-pixel RMS difference over all channels, averaged over the V views
    (own formula: the figure must not need LPIPS weights, which are absent here). Needs N >= 2.
    """
    if images.ndim != 5 or images.shape[0] < 2:
        raise ValueError(f"appearance_spread: expected images (N >= 2, V, C, H, W), got {tuple(images.shape)}")
    n, v = images.shape[:2]
    flat = images.float().transpose(0, 1).reshape(v, n, -1)  # (V, N, C*H*W)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[-1])  # (V, N, N) RMS differences
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    return float(dist[:, upper].mean())


@dataclass
class GenerationQualityReport:
    """Shape metrics of the sample set and its two reference rows, and the appearance spread.

    Attributes:
        shapes: row ("samples" | "ceiling" | "floor") -> {cov_cd, mmd_cd, nna_cd, jsd, n_shapes, n_empty};
            NaN metrics where a row had fewer than 2 non-empty shapes.
        appearance: {"samples", "ground_truth", "ratio"} (absent when no images were given).
        settings: counts, points, seed and whatever the caller adds (exp_dir, sampler, ...).
    """

    shapes: Dict[str, Dict[str, float]]
    appearance: Dict[str, float] = field(default_factory=dict)
    settings: Dict[str, Any] = field(default_factory=dict)

    def targets(self) -> Dict[str, Optional[bool]]:
        """Issue 17's done-when checks (None where a figure is missing)."""
        s, ceiling, floor = (self.shapes.get(r, {}) for r in ROWS)
        out: Dict[str, Optional[bool]] = {
            "cov_at_least_half_ceiling": _compare(s.get("cov_cd"), 0.5 * ceiling.get("cov_cd", math.nan), ">="),
            "nna_below_floor": _compare(s.get("nna_cd"), floor.get("nna_cd"), "<"),
        }
        out["appearance_at_least_half_gt"] = _compare(self.appearance.get("ratio"), 0.5, ">=")
        return out

    def scalars(self) -> Dict[str, float]:
        """Flat figures for a dashboard: the samples' COV-CD / MMD-CD / 1-NNA-CD / JSD, each of the
        first three over the ceiling's (``<key>_to_ceiling``), the collapse floor's 1-NNA, the empty
        samples, and the appearance spread with its ratio to ground truth. NaN where undefined."""
        s, ceiling, floor = (self.shapes.get(r, {}) for r in ROWS)
        out = {k: float(s.get(k, math.nan)) for k in SHAPE_KEYS}
        for k in ("cov_cd", "mmd_cd", "nna_cd"):
            ref = float(ceiling.get(k, math.nan))
            out[f"{k}_to_ceiling"] = out[k] / ref if ref > 0 else math.nan
        out["nna_cd_floor"] = float(floor.get("nna_cd", math.nan))
        out["n_empty"] = float(s.get("n_empty", math.nan))
        out["appearance_spread"] = float(self.appearance.get("samples", math.nan))
        out["appearance_ratio"] = float(self.appearance.get("ratio", math.nan))
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "targets": self.targets()}

    def to_json(self, path) -> Path:
        return write_metrics_json(path, self.to_dict())

    def table(self) -> str:
        """The three rows as a fixed-width text table, then the appearance figure."""
        lines = [f"{'row':<8} {'n':>4} {'empty':>5} " + " ".join(f"{k:>8}" for k in SHAPE_KEYS)]
        for row in ROWS:
            m = self.shapes.get(row)
            if m is not None:
                lines.append(f"{row:<8} {m['n_shapes']:>4d} {m['n_empty']:>5d} "
                             + " ".join(f"{m[k]:>8.4f}" for k in SHAPE_KEYS))
        if self.appearance:
            a = self.appearance
            lines.append(f"appearance spread: samples {a['samples']:.4f}, ground truth "
                         f"{a['ground_truth']:.4f}, ratio {a['ratio']:.3f}")
        return "\n".join(lines)


def _compare(a: Optional[float], b: Optional[float], op: str) -> Optional[bool]:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a >= b if op == ">=" else a < b


def _row_metrics(occ: torch.Tensor, references: torch.Tensor, name: str, **kwargs) -> Dict[str, float]:
    """Shape metrics of one occupancy set (N, R, R, R) against the references, NaN when < 2 non-empty."""
    _, empty = check_block(occ, 0, name)
    figures = {"n_shapes": int(occ.shape[0]), "n_empty": len(empty)}
    if occ.shape[0] - len(empty) < 2:
        return {**figures, **{k: math.nan for k in SHAPE_KEYS}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty shapes are counted in n_empty instead
        report = evaluate_voxel_sets(occ, references, names=(name, "held-out"), **kwargs)
    return {**figures, **{k: float(report.metrics[k]) for k in SHAPE_KEYS}}


def evaluate_generation(
    sample_occupancy: torch.Tensor,
    heldout_occupancy: torch.Tensor,
    train_occupancy: torch.Tensor,
    *,
    sample_images: Optional[torch.Tensor] = None,
    reference_images: Optional[torch.Tensor] = None,
    points: int = 2048,
    seed: int = 0,
    device=None,
    floor_index: int = 0,
) -> GenerationQualityReport:
    """Issue 17's figures for N sampled shapes.

    Args:
        sample_occupancy: (N, R, R, R) bool, (z, y, x) (``samples_to_occupancy``).
        heldout_occupancy: (M, R, R, R) ground truth of held-out objects (the reference set).
        train_occupancy: (K, R, R, R) ground truth of training objects; the ceiling uses the first
            min(N, K) after a seeded shuffle, the floor repeats object ``floor_index`` N times.
        sample_images / reference_images: (N, V, 3, H, W) and (N', V, 3, H, W) renders from the same
            V cameras, for the appearance figure (skipped when either is None).
        points / seed / device: as ``shape_metrics.evaluate_voxel_sets``.
    """
    sample_occupancy, heldout, train = (torch.as_tensor(np.asarray(a)) if not torch.is_tensor(a) else a
                                        for a in (sample_occupancy, heldout_occupancy, train_occupancy))
    n = sample_occupancy.shape[0]
    if n < 2 or train.shape[0] < 1:
        raise ValueError(f"evaluate_generation: need >= 2 samples and >= 1 training object, got {n} and "
                         f"{train.shape[0]}")
    if not 0 <= floor_index < train.shape[0]:
        raise ValueError(f"floor_index={floor_index} outside the {train.shape[0]} training objects")
    order = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))
    rows = {
        "samples": sample_occupancy,
        "ceiling": train[order[: min(n, train.shape[0])]],
        "floor": train[floor_index : floor_index + 1].expand(n, *train.shape[1:]),
    }
    kwargs = dict(points=points, seed=seed, device=device)
    shapes = {name: _row_metrics(occ.bool(), heldout.bool(), name, **kwargs) for name, occ in rows.items()}
    appearance: Dict[str, float] = {}
    if sample_images is not None and reference_images is not None:
        spread_s, spread_gt = appearance_spread(sample_images), appearance_spread(reference_images)
        appearance = {"samples": spread_s, "ground_truth": spread_gt,
                      "ratio": spread_s / spread_gt if spread_gt > 0 else math.nan}
    settings = {"n_samples": n, "n_heldout": int(heldout.shape[0]), "n_train": int(train.shape[0]),
                "points": points, "seed": seed, "floor_index": floor_index,
                "resolution": int(sample_occupancy.shape[-1])}
    return GenerationQualityReport(shapes, appearance, settings)


def format_rows(reports: Sequence[GenerationQualityReport], names: Sequence[str]) -> str:
    """One line per report (e.g. per ablation): sample COV / 1-NNA next to ceiling / floor, appearance."""
    head = f"{'run':<24} {'cov':>6} {'cov_ceil':>8} {'nna':>6} {'nna_floor':>9} {'app_ratio':>9}"
    lines = [head]
    for name, r in zip(names, reports):
        s, c, f = (r.shapes[k] for k in ROWS)
        lines.append(f"{name:<24} {s['cov_cd']:>6.3f} {c['cov_cd']:>8.3f} {s['nna_cd']:>6.3f} "
                     f"{f['nna_cd']:>9.3f} {r.appearance.get('ratio', math.nan):>9.3f}")
    return "\n".join(lines)
