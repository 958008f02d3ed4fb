"""Scoring a generative model in memory against a dataset's ground truth on disk (issue 17).

The shared core of ``python -m holo3d.sample.generation_eval`` (a trained experiment) and of the
training loop's periodic evaluation (``holo3d.train.generation_monitor``): draw N samples from a
private seeded generator, read each sample's occupancy at the ground truth's voxel centres, render
the samples and N ground-truth meshes from the same fixed cameras, and score everything with
``generation_quality.evaluate_generation`` (COV / MMD / 1-NNA / JSD next to the ceiling and the
collapse floor, and the appearance spread).

Ground truth is a CO3Dv2-format category folder as the built-in dataset writes it: the set lists
``<root>/<category>/set_lists/set_lists_fewview_{dev,test}.json`` split the sequences (training: the
dev list's train sequences; held out: the val sequences of both lists) and every sequence folder
holds ``occupancy_<R>.npy`` and ``mesh.ply`` (``holo3d.data.synthetic.ground_truth``).

Nothing here draws from the global random streams on purpose (samples: a private generator; points:
``shape_metrics``' seeded draws); the training loop still saves and restores them around a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from holo3d.eval.generation_quality import GenerationQualityReport, evaluate_generation, samples_to_occupancy
from holo3d.models.protocol import FieldModel, GenerativeModel, ReconstructionModel

SPLIT_LISTS = ("fewview_dev", "fewview_test")


class CannotEvaluate(ValueError):
    """The dataset has no usable ground-truth shapes or the model cannot be scored; the message is
    one line saying why."""


@dataclass
class GenerationSettings:
    """How samples are drawn, scored and shown (keys of the command line, too).

    seed: the samples' noise (a private generator: the same noise at every evaluation).
    num_samples: samples drawn (and the size of the ceiling / floor sets); batch_size per sampler call.
    sampler / steps / eta: a name of ``holo3d.diffusion.SAMPLERS``, its steps and DDIM eta.
    points: surface points per shape for the Chamfer metrics.
    opacity_threshold: one voxel step's opacity above which a sample voxel is occupied.
    n_views / image_size / elevation_deg / distance / focal_length: the fixed cameras of the
        appearance figure (azimuths evenly spaced from 45 degrees).
    """

    seed: int = 0
    num_samples: int = 16
    batch_size: int = 8
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    points: int = 2048
    opacity_threshold: float = 0.5
    n_views: int = 4
    image_size: int = 64
    elevation_deg: float = 25.0
    distance: float = 2.8
    focal_length: float = 2.3


@dataclass(frozen=True)
class GroundTruthShapes:
    """The ground-truth objects of one category folder: which are training and which held-out."""

    folder: Path
    train_names: Tuple[str, ...]
    heldout_names: Tuple[str, ...]

    @classmethod
    def from_category_folder(cls, folder) -> "GroundTruthShapes":
        """Reads the fewview set lists of ``folder`` (``<root>/<category>``) and checks that every
        listed sequence has its ``occupancy_*.npy``; CannotEvaluate names what is missing."""
        folder = Path(folder)
        splits = {}
        for subset in SPLIT_LISTS:
            path = folder / "set_lists" / f"set_lists_{subset}.json"
            if not path.is_file():
                raise CannotEvaluate(f"{path} is missing: the dataset has no {subset} set list")
            lists = json.loads(path.read_text())
            splits[subset] = {k: sorted({entry[0] for entry in lists.get(k, [])}) for k in ("train", "val")}
        held_out = sorted(set(splits["fewview_dev"]["val"]) | set(splits["fewview_test"]["val"]))
        truth = cls(folder, tuple(splits["fewview_dev"]["train"]), tuple(held_out))
        if not truth.train_names or not truth.heldout_names:
            raise CannotEvaluate(f"{folder}: the set lists name {len(truth.train_names)} training and "
                                 f"{len(truth.heldout_names)} held-out sequences; need at least one each")
        for name in truth.train_names + truth.heldout_names:
            truth.occupancy_file(name)
        return truth

    def occupancy_file(self, name: str) -> Path:
        files = sorted((self.folder / name).glob("occupancy_*.npy"))
        if not files:
            raise CannotEvaluate(f"{self.folder / name} has no occupancy_*.npy ground truth")
        return files[-1]

    def occupancy(self, names: Sequence[str]) -> torch.Tensor:
        """(N, R, R, R) bool (z, y, x) ground truth of the named sequences."""
        grids = [np.load(self.occupancy_file(name), allow_pickle=False).astype(bool) for name in names]
        return torch.from_numpy(np.stack(grids))

    def appearance_names(self, n: int) -> List[str]:
        """The n (at most) objects whose meshes give the ground-truth appearance spread: held-out
        ones when there are two or more, else training ones."""
        names = self.heldout_names if len(self.heldout_names) >= 2 else self.train_names
        return list(names[:n])


def ground_truth_of(data_source) -> GroundTruthShapes:
    """The ground truth of a training data source: a ``Holo3DDataSource`` reading one category of a
    CO3Dv2-format dataset that holds per-sequence occupancy (the built-in dataset does; real CO3D
    does not). CannotEvaluate says why not otherwise."""
    from pytorch3d.implicitron.dataset.json_index_dataset_map_provider_v2 import JsonIndexDatasetMapProviderV2

    from holo3d.data.data_source import Holo3DDataSource

    if not isinstance(data_source, Holo3DDataSource):
        raise CannotEvaluate(f"the data source {type(data_source).__name__} declares no ground-truth "
                                     "shapes (only Holo3DDataSource over a CO3Dv2-format dataset does)")
    provider = data_source.dataset_map_provider
    if not isinstance(provider, JsonIndexDatasetMapProviderV2):
        raise CannotEvaluate(f"the dataset provider {type(provider).__name__} is not the "
                                     "CO3Dv2-format JsonIndexDatasetMapProviderV2")
    categories = [c.strip() for c in provider.category.split(",")]
    if len(categories) != 1:
        raise CannotEvaluate(f"category={provider.category!r} names several categories; the "
                                     "generation evaluation scores one")
    return GroundTruthShapes.from_category_folder(Path(provider.dataset_root) / categories[0])


def cannot_evaluate_reason(model) -> Optional[str]:
    """None when ``model`` can be scored here, else one line saying why not."""
    name = type(model).__name__
    if not isinstance(model, GenerativeModel):
        return f"{name} is not a GenerativeModel"
    if not model.can_sample:
        return f"{name} cannot sample: {model.cannot_sample_reason}"
    if not (isinstance(model, FieldModel) and isinstance(model, ReconstructionModel)):
        return (f"{name} must also be a FieldModel (radiance-field samples, for occupancy) and a "
                "ReconstructionModel (its background, for the ground-truth renders)")
    return None


def fixed_cameras(settings: GenerationSettings):
    """``OrbitCameras`` of the appearance figure: n_views azimuths around the origin."""
    from pytorch3d.renderer import look_at_view_transform

    from holo3d.data.synthetic.orbit import OrbitCameras

    n = settings.n_views
    azim = 45.0 + 360.0 * torch.arange(n) / n
    R, T = look_at_view_transform(dist=settings.distance, elev=settings.elevation_deg, azim=azim)
    return OrbitCameras(R=R, T=T, focal_length=torch.full((n, 2), settings.focal_length),
                        principal_point=torch.zeros(n, 2))


@torch.no_grad()
def draw_samples(model, settings: GenerationSettings, device) -> torch.Tensor:
    """(num_samples, ...) samples in batches of batch_size, reproducible from settings.seed."""
    generator = torch.Generator().manual_seed(settings.seed)
    out = []
    with model.sampling_accelerated():
        for start in range(0, settings.num_samples, settings.batch_size):
            n = min(settings.batch_size, settings.num_samples - start)
            out.append(model.sample(n, sampler=settings.sampler, steps=settings.steps, eta=settings.eta,
                                    generator=generator, device=device))
    return torch.cat(out)


@torch.no_grad()
def render_sample_views(model, samples: torch.Tensor, settings: GenerationSettings) -> torch.Tensor:
    """Samples (N, ...) seen from the fixed cameras: (N, V, 3, H, W) float on the CPU."""
    from holo3d.data.synthetic.renderer import to_pytorch3d_cameras

    size = (settings.image_size, settings.image_size)
    p3d = to_pytorch3d_cameras(fixed_cameras(settings), size, samples.device)
    rows = []
    for start in range(0, samples.shape[0], settings.batch_size):
        chunk = samples[start : start + settings.batch_size]
        idx = [v for _ in range(chunk.shape[0]) for v in range(settings.n_views)]
        rows.append(model.render_samples(chunk, p3d[idx], size)["rgb"].float().cpu())
    return torch.cat(rows)  # (N, V, 3, H, W)


def render_ground_truth(truth: GroundTruthShapes, names: Sequence[str], settings: GenerationSettings,
                        background) -> torch.Tensor:
    """Ground-truth meshes (``<folder>/<name>/mesh.ply``) from the fixed cameras: (N, V, 3, H, W)."""
    from pytorch3d.io import IO

    from holo3d.data.synthetic.renderer import render_views

    cams, size = fixed_cameras(settings), (settings.image_size, settings.image_size)
    gt = [render_views(IO().load_mesh(str(truth.folder / n / "mesh.ply")), cams, size, background).rgb
          for n in names]
    return torch.stack(gt).permute(0, 1, 4, 2, 3)  # (N, V, 3, H, W)


@dataclass
class GenerationRun:
    """One evaluation: the report, and the images behind its appearance figure (N, V, 3, H, W)."""

    report: GenerationQualityReport
    sample_rgb: torch.Tensor
    reference_rgb: torch.Tensor


@dataclass
class GenerationEvaluator:
    """Scores models against one dataset's ground truth; the ground truth's occupancy and renders
    are read once and kept, so repeated evaluations (during training) only sample and score."""

    truth: GroundTruthShapes
    settings: GenerationSettings
    _cache: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def evaluate(self, model, device) -> GenerationRun:
        """Samples ``model`` (in its current train / eval mode: callers set eval) and scores it."""
        reason = cannot_evaluate_reason(model)
        if reason is not None:
            raise CannotEvaluate(f"{reason}; it cannot be scored here")
        cfg = self.settings
        train, heldout = self._occupancy()
        samples = draw_samples(model, cfg, device)
        occupancy = samples_to_occupancy(model, samples, resolution=heldout.shape[-1],
                                         threshold=cfg.opacity_threshold)
        sample_rgb = render_sample_views(model, samples, cfg)
        reference_rgb = self._reference_rgb(tuple(model.background))
        report = evaluate_generation(occupancy, heldout, train, sample_images=sample_rgb,
                                     reference_images=reference_rgb, points=cfg.points, seed=cfg.seed,
                                     device=device)
        report.settings.update(sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta,
                               opacity_threshold=cfg.opacity_threshold, category=self.truth.folder.name,
                               mean_occupied_fraction=float(occupancy.float().mean()))
        return GenerationRun(report, sample_rgb, reference_rgb)

    def _occupancy(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if "train" not in self._cache:
            self._cache["train"] = self.truth.occupancy(self.truth.train_names)
            self._cache["heldout"] = self.truth.occupancy(self.truth.heldout_names)
        return self._cache["train"], self._cache["heldout"]

    def _reference_rgb(self, background: Tuple[float, ...]) -> torch.Tensor:
        key = f"rgb_{background}"
        if key not in self._cache:
            names = self.truth.appearance_names(self.settings.num_samples)
            self._cache[key] = render_ground_truth(self.truth, names, self.settings, background)
        return self._cache[key]
