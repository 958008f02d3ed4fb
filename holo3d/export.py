"""Export a trained experiment as what sampling needs: weights as safetensors + the resolved config.

    python -m holo3d.export exp_dir=exp/base out=exports/base [epoch=-1] [use_ema=true]

writes ``out/model.safetensors`` (the EMA weights when the run kept an EMA, else the raw weights;
no optimizer, scheduler or RNG state: a tenth of a checkpoint's size or less), ``out/config.yaml``
(the selected components' resolved config) and ``out/export.json`` (where the weights came from).
``holo3d.load(out)`` reads it back; safetensors holds tensors only, so loading runs no pickle.
An export needs no other folder: a VoxelLDM's frozen autoencoder (read from ``autoencoder_exp_dir``
when it was built for training) is in its weights, and config.yaml names its architecture instead.
The paths it records (the experiment, checkpoint, data folders) are provenance only; those under the
working directory are written relative to it, so an export made in a checkout names no machine's folders.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from holo3d.io.atomic_file import open_atomic, write_text_atomic
from holo3d.sample.experiment_loader import build_model, load_experiment
from holo3d.sample.input_checks import ExperimentLoadError
from holo3d.train.experiment import Experiment, pruned_config

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
INFO_NAME = "export.json"


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / WEIGHTS_NAME).is_file() and (Path(path) / CONFIG_NAME).is_file()


def export_experiment(exp_dir: str, out: str, epoch: int = -1, use_ema: bool = True) -> Path:
    """Writes the export of ``exp_dir``'s newest (or ``epoch``'s) checkpoint to ``out``; returns out."""
    from safetensors.torch import save

    loaded = load_experiment(exp_dir, epoch=epoch, use_ema=use_ema, device="cpu")
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in loaded.model.state_dict().items()}
    folder = Path(out).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    info = portable_paths({**loaded.info(), "format": "holo3d-export-1"})
    with open_atomic(folder / WEIGHTS_NAME) as stream:
        stream.write(save(tensors, metadata={k: str(v) for k, v in info.items()}))
    config = standalone_config(pruned_config(loaded.config), loaded.model)
    config = portable_paths(OmegaConf.to_container(config, resolve=True))
    write_text_atomic(folder / CONFIG_NAME, OmegaConf.to_yaml(OmegaConf.create(config)))
    write_text_atomic(folder / INFO_NAME, json.dumps(info, indent=2) + "\n")
    return folder


def standalone_config(config: DictConfig, model: torch.nn.Module) -> DictConfig:
    """``config`` with what ``model`` read from other folders at build time replaced by keys that
    build it from its own weights (VoxelLDM.export_args: the autoencoder's architecture)."""
    from holo3d.models.voxel_ldm import VoxelLDM

    if not isinstance(model, VoxelLDM):
        return config
    factory = config[f"model_factory_{config.model_factory_class_type}_args"]
    args = factory[f"model_{factory.model_class_type}_args"]
    for key, value in model.export_args().items():
        args[key] = value
    return config


def portable_paths(value: Any, base: Optional[Path] = None) -> Any:
    """``value`` (nested dicts / lists of plain values) with every absolute path string under ``base``
    (default: the working directory) made relative to it; other values unchanged."""
    base = Path.cwd().resolve() if base is None else base
    if isinstance(value, dict):
        return {key: portable_paths(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_paths(item, base) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and Path(value).resolve().is_relative_to(base):
        return Path(value).resolve().relative_to(base).as_posix()
    return value


def load_export(folder: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of an export folder, weights loaded, in eval mode on ``device``."""
    from pytorch3d.implicitron.tools.config import get_default_args
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config: DictConfig = OmegaConf.merge(get_default_args(Experiment),
                                             OmegaConf.load(folder / CONFIG_NAME))
    except Exception as error:  # noqa: BLE001 - YAML syntax, unknown keys, wrong types
        raise ExperimentLoadError(f"{folder / CONFIG_NAME} does not fit this holo3d version: {error}") from None
    model = build_model(config)
    state = load_file(str(folder / WEIGHTS_NAME), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ExperimentLoadError(f"{folder / WEIGHTS_NAME} does not match its config.yaml: missing "
                                  f"{sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return model.to(device).eval().requires_grad_(False)


def _parse(argv: Sequence[str]) -> Dict[str, str]:
    """key=value arguments (Hydra style, as the other holo3d scripts take)."""
    known = {"exp_dir", "out", "epoch", "use_ema"}
    pairs = dict(a.split("=", 1) for a in argv if "=" in a)
    bad = [a for a in argv if "=" not in a] + [k for k in pairs if k not in known]
    if bad or "exp_dir" not in pairs or "out" not in pairs:
        raise SystemExit(f"usage: python -m holo3d.export exp_dir=EXP out=DIR [epoch=N] [use_ema=true|false]"
                         + (f"\nunknown argument(s): {bad}" if bad else ""))
    return pairs


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        folder = export_experiment(args["exp_dir"], args["out"], int(args.get("epoch", -1)),
                                   args.get("use_ema", "true").lower() in ("1", "true", "yes"))
    except ExperimentLoadError as error:
        print(f"holo3d.export: {error}", file=sys.stderr)
        return 2
    size = (folder / WEIGHTS_NAME).stat().st_size / 2**20
    print(f"exported {args['exp_dir']} -> {folder} ({WEIGHTS_NAME} {size:.1f} MiB, {CONFIG_NAME}, {INFO_NAME})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
