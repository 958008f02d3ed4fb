"""Hydra wiring for the training entry point: the stored default config and readable config errors.

Hydra already refuses unknown keys and wrong types (the default config is structured); this module
composes the requested config once before Hydra does, so that the error names the key *and* the
closest existing keys, e.g. ``training_loop.max_epoch`` -> did you mean ``training_loop.max_epochs``.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from holo3d.train.experiment import Experiment, default_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
_KEY_IN_ERROR = re.compile(
    r"(?:full_key: ([\w.\[\]]+)|override '([^']+)'|Key '([^']+)'|key: ([\w.\[\]]+))"
)


def register_default_config() -> None:
    ConfigStore.instance().store(name="default_config", node=default_config())


def split_cli(argv: Sequence[str]) -> Tuple[str, List[str]]:
    """(config name, overrides) from Hydra-style arguments."""
    name, overrides, args = "base", [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--config-name", "-cn") and args:
            name = args.pop(0)
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif not arg.startswith("-") and "=" in arg and not arg.lstrip("+~").startswith("hydra"):
            overrides.append(arg)
    return name.removesuffix(".yaml"), overrides


def compose_config(config_name: str, overrides: Iterable[str] = ()) -> DictConfig:
    """The composed training config, without Hydra's own ``hydra`` node."""
    register_default_config()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return cfg


def explain_config_error(error: Exception) -> str:
    """The error message, plus close matches for a key that does not exist."""
    message = str(error).strip()
    match = _KEY_IN_ERROR.search(message)
    if not match:
        return message
    key = next(group for group in match.groups() if group)
    known = list(flat_keys(default_config()))
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    close += [k for k in known if k.split(".")[-1] in difflib.get_close_matches(leaf, [leaf_of(k) for k in known], n=3)]
    suggestions = list(dict.fromkeys(close))[:5]
    hint = f"\nDid you mean: {', '.join(suggestions)}?" if suggestions else ""
    return f"{message}{hint}"


def leaf_of(key: str) -> str:
    return key.split(".")[-1]


def flat_keys(cfg: DictConfig, prefix: str = "") -> Iterable[str]:
    for key in cfg:
        full = f"{prefix}{key}"
        value = cfg._get_node(key)
        if isinstance(value, DictConfig):
            yield from flat_keys(value, full + ".")
        else:
            yield full


def exit_with_config_error(error: Exception, what: str) -> None:
    print(f"holo3d: invalid configuration ({what}):\n{explain_config_error(error)}", file=sys.stderr)
    raise SystemExit(2) from None


def check_config_or_exit(argv: Sequence[str]) -> DictConfig:
    """Composes the config for ``argv``; on an unknown key or a wrong type prints one clear message
    (naming the key and close matches) and exits with status 2, before anything is built."""
    config_name, overrides = split_cli(argv)
    try:
        return compose_config(config_name, overrides)
    except Exception as error:  # noqa: BLE001 - any composition failure is reported the same way
        exit_with_config_error(error, f"{config_name}.yaml {' '.join(overrides)}")


def build_experiment_or_exit(cfg: DictConfig) -> Experiment:
    """Experiment(**cfg); a value the components reject (e.g. too few frames) exits with status 2."""
    try:
        return Experiment(**cfg)
    except (ValueError, KeyError, TypeError) as error:
        exit_with_config_error(error, "component settings")
