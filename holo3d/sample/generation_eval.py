"""Generation-quality evaluation of a trained experiment on the built-in dataset (issue 17).

    python -m holo3d.sample.generation_eval exp_dir=EXP num_samples=32 [sampler=ddim steps=50 \
        points=2048 n_views=4 image_size=64 seed=0 device=auto out_dir=...]

Draws ``num_samples`` samples, turns them into occupancy at the ground truth's voxel centres and
scores them against the held-out (dev + test) objects' ``occupancy_<R>.npy`` next to the ceiling
(as many training objects) and the collapse floor (one training object repeated), then renders the
samples and as many ground-truth meshes from the same fixed cameras for the appearance figure
(``holo3d.eval.generation_quality``). Writes ``<out_dir or EXP/generation_quality>/metrics.json`` and
``contact_sheet.png`` (a row per sample, then a row per ground-truth object), and prints the table.
The dataset must be on disk (it is never generated here).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from holo3d.eval.generation_quality import GenerationQualityReport, evaluate_generation, samples_to_occupancy
from holo3d.models.protocol import FieldModel, GenerativeModel
from holo3d.sample.input_checks import SettingsError

logger = logging.getLogger(__name__)
_PROVIDER_ARGS = "dataset_map_provider_JsonIndexDatasetMapProviderV2_args"


@dataclass
class GenerationEvalConfig:
    """Settings (keys of the command line).

    exp_dir / epoch / use_ema / device / seed: which weights, where, and the sampling seed.
    num_samples: samples drawn (and the size of the ceiling / floor sets); batch_size per sampler call.
    sampler / steps / eta: as generate_samples.py.
    points: surface points per shape for the Chamfer metrics.
    opacity_threshold: one voxel step's opacity above which a sample voxel is occupied.
    n_views / image_size / elevation_deg / distance / focal_length: the fixed cameras of the
        appearance figure (azimuths evenly spaced from 45 degrees).
    out_dir: where the results go (empty: EXP/generation_quality).
    """

    exp_dir: str = ""
    epoch: int = -1
    use_ema: bool = True
    device: str = "auto"
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
    out_dir: str = ""


def parse_args(argv: Sequence[str]) -> GenerationEvalConfig:
    """``key=value`` tokens onto the typed config; a misspelt key or a wrong type fails, named."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SettingsError(f"arguments must be key=value, got {bad}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(GenerationEvalConfig), OmegaConf.from_dotlist(list(argv)))
    except Exception as error:  # noqa: BLE001 - omegaconf's key / type errors
        raise SettingsError(str(error).splitlines()[0]) from None
    cfg = OmegaConf.to_object(cfg)
    if cfg.num_samples < 2:
        raise SettingsError(f"num_samples={cfg.num_samples}: the set metrics need at least 2")
    return cfg


def builtin_split(config) -> Tuple[Path, List[str], List[str]]:
    """(category folder, training sequence names, held-out (dev + test) sequence names) of the
    experiment's built-in / CO3Dv2-format dataset, from its fewview set lists."""
    from holo3d.sample.dataset_access import dataset_roots, dataset_unavailable_reason

    reason = dataset_unavailable_reason(config)
    if reason is not None:
        raise SettingsError(f"the ground truth is not available: {reason}")
    provider = config.data_source_Holo3DDataSource_args[_PROVIDER_ARGS]
    folder = Path(dataset_roots(config)[0]) / provider.category
    splits = {}
    for subset in ("fewview_dev", "fewview_test"):
        path = folder / "set_lists" / f"set_lists_{subset}.json"
        if not path.is_file():
            raise SettingsError(f"{path} is missing: the dataset has no {subset} set list")
        lists = json.loads(path.read_text())
        splits[subset] = {k: sorted({entry[0] for entry in lists[k]}) for k in ("train", "val")}
    held_out = sorted(set(splits["fewview_dev"]["val"]) | set(splits["fewview_test"]["val"]))
    return folder, splits["fewview_dev"]["train"], held_out


def load_occupancy(folder: Path, names: Sequence[str]) -> torch.Tensor:
    """(N, R, R, R) bool ground truth of the named sequences (``<folder>/<name>/occupancy_*.npy``)."""
    grids = []
    for name in names:
        files = sorted((folder / name).glob("occupancy_*.npy"))
        if not files:
            raise SettingsError(f"{folder / name} has no occupancy_*.npy ground truth")
        grids.append(np.load(files[-1], allow_pickle=False).astype(bool))
    return torch.from_numpy(np.stack(grids))


def fixed_cameras(cfg: GenerationEvalConfig):
    """``OrbitCameras`` of the appearance figure: n_views azimuths around the origin."""
    from pytorch3d.renderer import look_at_view_transform

    from holo3d.data.synthetic.orbit import OrbitCameras

    azim = 45.0 + 360.0 * torch.arange(cfg.n_views) / cfg.n_views
    R, T = look_at_view_transform(dist=cfg.distance, elev=cfg.elevation_deg, azim=azim)
    return OrbitCameras(R=R, T=T, focal_length=torch.full((cfg.n_views, 2), cfg.focal_length),
                        principal_point=torch.zeros(cfg.n_views, 2))


@torch.no_grad()
def draw_samples(model, cfg: GenerationEvalConfig, device) -> torch.Tensor:
    """(num_samples, ...) samples in batches of batch_size, reproducible from cfg.seed."""
    generator = torch.Generator().manual_seed(cfg.seed)
    out = []
    with model.sampling_accelerated():
        for start in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - start)
            out.append(model.sample(n, sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta,
                                    generator=generator, device=device))
    return torch.cat(out)


@torch.no_grad()
def render_appearance(model, samples, folder: Path, names: Sequence[str], cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """Samples and ground-truth meshes (``<folder>/<name>/mesh.ply``) from the same fixed cameras,
    (N, V, 3, H, W) each, on the model's background."""
    from pytorch3d.io import IO

    from holo3d.data.synthetic.renderer import render_views, to_pytorch3d_cameras

    cams, size = fixed_cameras(cfg), (cfg.image_size, cfg.image_size)
    p3d = to_pytorch3d_cameras(cams, size, samples.device)
    rows = []
    for start in range(0, samples.shape[0], cfg.batch_size):
        chunk = samples[start : start + cfg.batch_size]
        idx = [v for _ in range(chunk.shape[0]) for v in range(cfg.n_views)]
        rows.append(model.render_samples(chunk, p3d[idx], size)["rgb"].float().cpu())
    gt = [render_views(IO().load_mesh(str(folder / n / "mesh.ply")), cams, size, model.background).rgb
          for n in names]
    return torch.cat(rows), torch.stack(gt).permute(0, 1, 4, 2, 3)  # (N, V, 3, H, W) each


def evaluate_experiment(cfg: GenerationEvalConfig) -> GenerationQualityReport:
    """Loads ``cfg.exp_dir``, samples, scores, writes metrics.json and contact_sheet.png."""
    from holo3d.sample.contact_sheet import compose_sheet, write_png
    from holo3d.sample.experiment_loader import load_experiment, output_dir

    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    model = loaded.model
    if not (isinstance(model, GenerativeModel) and isinstance(model, FieldModel) and model.can_sample):
        raise SettingsError(f"{type(model).__name__} cannot be evaluated here: it must be a GenerativeModel "
                            "that can sample and a FieldModel (radiance-field samples)")
    folder, train_names, held_out = builtin_split(loaded.config)
    train, heldout = load_occupancy(folder, train_names), load_occupancy(folder, held_out)
    samples = draw_samples(model, cfg, loaded.device)
    occupancy = samples_to_occupancy(model, samples, resolution=heldout.shape[-1],
                                     threshold=cfg.opacity_threshold)
    gt_names = held_out[: cfg.num_samples] if len(held_out) >= 2 else train_names[: cfg.num_samples]
    sample_rgb, gt_rgb = render_appearance(model, samples, folder, gt_names, cfg)
    report = evaluate_generation(occupancy, heldout, train, sample_images=sample_rgb, reference_images=gt_rgb,
                                 points=cfg.points, seed=cfg.seed, device=loaded.device)
    report.settings.update(loaded.info(), sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta,
                           opacity_threshold=cfg.opacity_threshold, category=folder.name,
                           mean_occupied_fraction=float(occupancy.float().mean()))
    out = output_dir(loaded, cfg.out_dir, "generation_quality")
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / "metrics.json")
    write_png(out / "contact_sheet.png", compose_sheet(list(sample_rgb) + list(gt_rgb)))
    logger.info("wrote %s", out)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    from holo3d.sample.input_checks import ExperimentLoadError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = evaluate_experiment(parse_args(sys.argv[1:] if argv is None else argv))
    except (SettingsError, ExperimentLoadError) as error:
        print(f"generation_eval: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(report.table())
    print(json.dumps(report.targets()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
