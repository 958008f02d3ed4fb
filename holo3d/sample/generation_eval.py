"""Generation-quality evaluation of a trained experiment on the built-in dataset (issue 17).

    python -m holo3d.sample.generation_eval exp_dir=EXP num_samples=32 [sampler=ddim steps=50 \
        points=2048 n_views=4 image_size=64 seed=0 device=auto out_dir=...]

Draws ``num_samples`` samples, turns them into occupancy at the ground truth's voxel centres and
scores them against the held-out (dev + test) objects' ``occupancy_<R>.npy`` next to the ceiling
(as many training objects) and the collapse floor (one training object repeated), then renders the
samples and as many ground-truth meshes from the same fixed cameras for the appearance figure
(``holo3d.eval.generation_quality``). Writes ``<out_dir or EXP/generation_quality>/metrics.json``
and ``contact_sheet.png`` (a row per sample, then a row per ground-truth object), and prints the
table. This is the entry point only: the sampling and scoring core, which the training loop's
periodic evaluation shares, is ``holo3d.eval.generation_run``.
The dataset must be on disk (it is never generated here).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from holo3d.eval.generation_quality import GenerationQualityReport
from holo3d.eval.generation_run import (
    CannotEvaluate,
    GenerationEvaluator,
    GenerationSettings,
    GroundTruthShapes,
    cannot_evaluate_reason,
)
from holo3d.sample.input_checks import SettingsError

logger = logging.getLogger(__name__)
_PROVIDER_ARGS = "dataset_map_provider_JsonIndexDatasetMapProviderV2_args"


@dataclass
class GenerationEvalConfig(GenerationSettings):
    """Settings (keys of the command line): those of ``GenerationSettings`` (seed, num_samples,
    batch_size, sampler, steps, eta, points, opacity_threshold, the appearance cameras) and

    exp_dir / epoch / use_ema / device: which weights, and where they run.
    out_dir: where the results go (empty: EXP/generation_quality).
    """

    exp_dir: str = ""
    epoch: int = -1
    use_ema: bool = True
    device: str = "auto"
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


def builtin_ground_truth(config) -> GroundTruthShapes:
    """The ground truth of the experiment's built-in / CO3Dv2-format dataset (its category folder
    and fewview set lists), read from the experiment's config without building its data source."""
    from holo3d.sample.dataset_access import dataset_roots, dataset_unavailable_reason

    reason = dataset_unavailable_reason(config)
    if reason is not None:
        raise SettingsError(f"the ground truth is not available: {reason}")
    provider = config.data_source_Holo3DDataSource_args[_PROVIDER_ARGS]
    return GroundTruthShapes.from_category_folder(Path(dataset_roots(config)[0]) / provider.category)


def evaluate_experiment(cfg: GenerationEvalConfig) -> GenerationQualityReport:
    """Loads ``cfg.exp_dir``, samples, scores, writes metrics.json and contact_sheet.png."""
    from holo3d.sample.contact_sheet import compose_sheet, write_png
    from holo3d.sample.experiment_loader import load_experiment, output_dir

    loaded = load_experiment(cfg.exp_dir, cfg.epoch, cfg.use_ema, cfg.device)
    reason = cannot_evaluate_reason(loaded.model)
    if reason is not None:
        raise SettingsError(f"{reason}; it cannot be evaluated here")
    run = GenerationEvaluator(builtin_ground_truth(loaded.config), cfg).evaluate(loaded.model, loaded.device)
    report = run.report
    report.settings.update(loaded.info())
    out = output_dir(loaded, cfg.out_dir, "generation_quality")
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / "metrics.json")
    write_png(out / "contact_sheet.png", compose_sheet(list(run.sample_rgb) + list(run.reference_rgb)))
    logger.info("wrote %s", out)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    from holo3d.sample.input_checks import ExperimentLoadError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = evaluate_experiment(parse_args(sys.argv[1:] if argv is None else argv))
    except (SettingsError, ExperimentLoadError, CannotEvaluate) as error:
        print(f"generation_eval: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(report.table())
    print(json.dumps(report.targets()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
