"""The training command line: Hydra as Hydra, short keys, readable errors, a useful ``--help``.

``python experiment.py`` / ``holo3d-train`` run a plain ``@hydra.main`` app, so every Hydra feature
works as documented: ``--multirun`` sweeps, ``-cp/--config-path``, ``-cd/--config-dir``,
``--cfg job|hydra|all [--resolve]``, ``--info``, ``-sc`` shell completion, ``hydra.*`` overrides.

Three additions, none of which composes the config before Hydra does:

* **Short keys.** Top-level keys of at most 40 characters (``lr``, ``epochs``, ``image_size``,
  ``scenes_per_step`` ...) declared in ``SHORT_KEYS``. Each is typed (``lr=fast`` fails at
  composition with Hydra's reason, naming ``lr``) and defaults to null (not set). A short key that is
  set, on the command line or in a YAML, is copied onto its long Implicitron key after composition
  and wins over it; the long key is that of the *selected* component (``data_root`` is the CO3D
  provider's ``dataset_root`` by default, the SRN provider's with ``+data=srn_cars``). The config
  handed to ``Experiment`` and written to ``expconfig.yaml`` has long keys only.
* **Did-you-mean.** Hydra prints its own error (with its reason); when the failure came before the
  training task started (i.e. composition), the key named in it is matched against every short and
  long key, close matches are printed, and the exit status is 2.
* **--help / -h** prints the short keys with their active values and one-line descriptions and the
  settings the chosen config changes (``--hydra-help`` is Hydra's own help).

In a ``--multirun`` sweep every job trains in Hydra's job directory, by default ``<exp_dir>/<job
number>`` (``hydra.sweep.dir`` defaults to ``exp_dir`` here; set it to place sweeps elsewhere).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import io
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from holo3d.train.checkpoint import CheckpointError
from holo3d.train.experiment import Experiment, default_config, pruned_config


def _find_config_dir() -> Path:
    """configs/ shipped inside the package (a wheel: ``holo3d/configs``), else the checkout's."""
    packaged = Path(__file__).resolve().parents[1] / "configs"
    if (packaged / "base.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


CONFIG_DIR = _find_config_dir()
_KEY_IN_ERROR = re.compile(
    r"(?:full_key: ([\w.\[\]]+)|override '([^']+)'|Key '([^']+)'|key: ([\w.\[\]]+))"
)


# ---- short keys ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShortKey:
    """A short top-level key and the long keys it sets.

    ``targets`` are alternatives, tried in order; each is a tuple of dotted *member paths* that are
    all set. A path names members, not config blocks: ``data_source.dataset_map_provider.category``
    walks ``data_source_<selected class>_args``, then ``dataset_map_provider_<selected>_args``.
    """

    type: type
    description: str
    targets: Tuple[Tuple[str, ...], ...]


_PROVIDER = "data_source.dataset_map_provider"
_LOADER = "data_source.data_loader_map_provider"
_MODEL = "model_factory.model"
SHORT_KEYS: Dict[str, ShortKey] = {
    "data_root": ShortKey(str, "dataset folder of the selected source ('' = the built-in dataset)",
                          ((f"{_PROVIDER}.dataset_root",), ("data_source.dataset_root",))),
    "category": ShortKey(str, "object category (CO3D / SRN category; voxels: comma list)",
                         ((f"{_PROVIDER}.category",), ("data_source.categories",))),
    "image_size": ShortKey(int, "side of the square training images in pixels",
                           ((f"{_PROVIDER}.dataset.image_height", f"{_PROVIDER}.dataset.image_width"),
                            (f"{_PROVIDER}.image_size",))),
    "scenes_per_step": ShortKey(int, "scenes (objects) per training step",
                                ((f"{_LOADER}.scenes_per_batch",), ("data_source.batch_size",))),
    "frames_per_scene": ShortKey(int, "posed frames of each scene per step (targets + sources)",
                                 ((f"{_LOADER}.frames_per_scene",),)),
    "num_workers": ShortKey(int, "data loader worker processes",
                            ((f"{_LOADER}.num_workers",), ("data_source.num_workers",))),
    "model": ShortKey(str, "model class (HoloDiffusionModel, VoxelLDM, ...)",
                      (("model_factory.model_class_type",),)),
    "grid_size": ShortKey(int, "voxel grid resolution R of the scene representation",
                          ((f"{_MODEL}.grid_resolution",), (f"{_MODEL}.resolution",))),
    "model_channels": ShortKey(int, "base channel width of the U-Net (model size)",
                               ((f"{_MODEL}.unet_args.model_channels",),)),
    "lr": ShortKey(float, "base learning rate", (("optimizer_factory.lr",),)),
    "epochs": ShortKey(int, "epochs to train", (("training_loop.max_epochs",),)),
    "precision": ShortKey(str, "'no' (fp32) or 'bf16' autocast", (("training_loop.mixed_precision",),)),
    "ema_decay": ShortKey(float, "EMA of the weights used for sampling (0: off)",
                          (("training_loop.ema_decay",),)),
    "logger": ShortKey(str, "visdom | tensorboard | wandb | none", (("training_loop.logger",),)),
}
# Keys that already are short and top-level in the Experiment config, shown by --help too.
_TOP_LEVEL = {"exp_dir": "where the config, checkpoints and logs go (re-run to resume)",
              "seed": "base random seed"}


class ShortKeyError(ValueError):
    """A short key whose long key does not exist for the selected components."""


def short_keys_node() -> DictConfig:
    """The typed, null-by-default short keys, as a config."""
    fields = [(name, Optional[spec.type], dataclasses.field(default=None)) for name, spec in SHORT_KEYS.items()]
    return OmegaConf.structured(dataclasses.make_dataclass("ShortKeys", fields))


def config_with_short_keys() -> DictConfig:
    """``default_config`` plus the short keys, every node keeping its type (struct: unknown keys fail).

    The Experiment's own structured type cannot take extra fields, so the root is a plain dict that
    holds the (typed) nodes of both."""
    root = OmegaConf.create({})
    for source in (default_config(), short_keys_node()):
        for key in source:
            root[key] = source._get_node(key)
    OmegaConf.set_struct(root, True)
    return root


def register_default_config() -> None:
    ConfigStore.instance().store(name="default_config", node=config_with_short_keys())


def resolve_member_path(cfg: DictConfig, path: str) -> Optional[str]:
    """The long dotted key of ``path`` (members, see ShortKey) in ``cfg``; None when it is absent."""
    node, parts = cfg, []
    *members, leaf = path.split(".")
    for member in members:
        class_type = node.get(f"{member}_class_type") if isinstance(node, DictConfig) else None
        if not isinstance(node, DictConfig):
            return None
        # a replaceable member's selected block, a plain leaf's block (``unet_args``), or a plain key
        names = (f"{member}_{class_type}_args",) if class_type else (f"{member}_args", member)
        key = next((k for k in names if isinstance(node.get(k), DictConfig)), None)
        if key is None:
            return None
        node, parts = node[key], parts + [key]
    return ".".join(parts + [leaf]) if isinstance(node, DictConfig) and leaf in node else None


def short_key_targets(cfg: DictConfig, name: str) -> List[str]:
    """The long keys short key ``name`` sets in ``cfg`` (its first alternative that fully exists)."""
    for alternative in SHORT_KEYS[name].targets:
        keys = [resolve_member_path(cfg, path) for path in alternative]
        if all(keys):
            return keys
    return []


def apply_short_keys(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with every set short key copied onto its long keys, short keys removed."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        values = {name: out.pop(name) for name in SHORT_KEYS if name in out}
    for name, value in values.items():
        if value is None:
            continue
        targets = short_key_targets(out, name)
        if not targets:
            tried = " or ".join("+".join(a) for a in SHORT_KEYS[name].targets)
            raise ShortKeyError(f"{name}={value}: the selected components have no {tried}; "
                                "set the long key instead (see --cfg job)")
        for key in targets:
            OmegaConf.update(out, key, value, merge=False)  # the long key's type is checked here
    return out


# ---- composing (tests, scripts, --help) ----------------------------------------------------------


def split_cli(argv: Sequence[str]) -> Tuple[str, List[str]]:
    """(config name, overrides) from Hydra-style arguments (flags and hydra.* overrides dropped)."""
    args = _parse_hydra_args(argv)
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    return (args.config_name or "base").removesuffix(".yaml"), overrides


def _parse_hydra_args(argv: Sequence[str]):
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: every flag it knows

    return get_args_parser().parse_args(list(argv))


def compose_raw(config_name: str, overrides: Iterable[str] = (), config_dir: Optional[str] = None,
                primary_dir: Optional[str] = None) -> DictConfig:
    """The composed config as Hydra builds it (short keys still present), without ``hydra``."""
    register_default_config()
    overrides, primary = list(overrides), Path(primary_dir or CONFIG_DIR).resolve()
    if config_dir:  # as Hydra's --config-dir: searched first, the primary folder after it
        overrides.append(f"hydra.searchpath=[file://{primary}]")
        primary = Path(config_dir).resolve()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
            cfg = compose(config_name=config_name.removesuffix(".yaml"), overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def compose_config(config_name: str, overrides: Iterable[str] = (), config_dir: Optional[str] = None,
                   primary_dir: Optional[str] = None) -> DictConfig:
    """The training config ``Experiment(**cfg)`` takes: composed, short keys applied and removed."""
    return apply_short_keys(compose_raw(config_name, overrides, config_dir, primary_dir))


# ---- did-you-mean --------------------------------------------------------------------------------


def flat_keys(cfg: DictConfig, prefix: str = "") -> Iterable[str]:
    for key in cfg:
        full = f"{prefix}{key}"
        value = cfg._get_node(key)
        if isinstance(value, DictConfig):
            yield from flat_keys(value, full + ".")
        else:
            yield full


def leaf_of(key: str) -> str:
    return key.split(".")[-1]


def suggest_keys(message: str) -> List[str]:
    """Existing keys close to the unknown key named in an error ``message`` ([] if it names none,
    or names a key that exists, e.g. a wrong-type error)."""
    match = _KEY_IN_ERROR.search(message)
    if not match:
        return []
    key = next(group for group in match.groups() if group).lstrip("+~")
    known = list(SHORT_KEYS) + list(_TOP_LEVEL) + list(flat_keys(default_config()))
    if key in known:
        return []
    leaf = leaf_of(key)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    close_leaves = difflib.get_close_matches(leaf, [leaf_of(k) for k in known], n=3)
    close += [k for k in known if leaf_of(k) in close_leaves]
    return list(dict.fromkeys(close))[:5]


def explain_config_error(error: Exception | str) -> str:
    """The error message, plus close matches for a key that does not exist."""
    message = str(error).strip()
    cause = getattr(error, "__cause__", None)
    if cause is not None and str(cause) not in message:
        message = f"{message}\n{cause}"  # Hydra's reason (e.g. "could not be converted to Float")
    suggestions = suggest_keys(message)
    return message + (f"\nDid you mean: {', '.join(suggestions)}?" if suggestions else "")


def exit_with_config_error(error: Exception, what: str) -> None:
    print(f"holo3d: invalid configuration ({what}):\n{explain_config_error(error)}", file=sys.stderr)
    raise SystemExit(2) from None


def build_experiment_or_exit(cfg: DictConfig) -> Experiment:
    """Experiment(**cfg); a value the components reject (e.g. too few frames) exits with status 2."""
    try:
        return Experiment(**cfg)
    except (ValueError, KeyError, TypeError) as error:
        exit_with_config_error(error, "component settings")
    except PermissionError as error:  # exp_dir / checkpoints/ not writable: found before any work
        print(f"holo3d: {error}", file=sys.stderr)
        raise SystemExit(2) from None


class _ErrorRecorder(io.TextIOBase):
    """sys.stderr that also keeps what is written until the training task starts: Hydra prints its
    composition errors itself (then exits 1), and this is how their text reaches the suggester."""

    def __init__(self, stream):
        self.stream, self.parts, self.recording = stream, [], True

    def write(self, text):
        if self.recording:
            self.parts.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding ... of the real stream
        return getattr(self.stream, name)


_RECORDER: Optional[_ErrorRecorder] = None


def _task_started() -> None:
    if _RECORDER is not None:
        _RECORDER.recording, _RECORDER.parts = False, []


def run_hydra_app(app, argv: Optional[Sequence[str]] = None) -> None:
    """Runs a ``@hydra.main`` function on ``argv``; a failure before the task started (composition)
    keeps Hydra's message, adds close-match key suggestions and exits with status 2."""
    global _RECORDER
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    real, _RECORDER = sys.stderr, _ErrorRecorder(sys.stderr)
    sys.stderr = _RECORDER
    try:
        app()
    except SystemExit as stop:
        if stop.code in (0, None) or not _RECORDER.recording:
            raise
        suggestions = suggest_keys("".join(_RECORDER.parts))
        if suggestions:
            print(f"Did you mean: {', '.join(suggestions)}?", file=real)
        raise SystemExit(2) from None
    finally:
        sys.stderr, _RECORDER = real, None


# ---- --help --------------------------------------------------------------------------------------


def field_descriptions(cls: type) -> Dict[str, str]:
    """``name: text`` lines of a class docstring's Members / Fields section (``a / b: text`` too)."""
    found: Dict[str, str] = {}
    for line in (cls.__doc__ or "").splitlines():
        match = re.match(r"^\s{4,8}([\w]+(?: / \w+)*): (.+)$", line)
        if match:
            for name in match.group(1).split(" / "):
                found.setdefault(name, match.group(2).strip())
    return found


def describe_long_key(key: str) -> str:
    """One line about ``key`` from its component's docstring ('' when it has none)."""
    from pytorch3d.implicitron.tools.config import registry

    owner: type = Experiment
    for part in key.split(".")[:-1]:
        match = re.match(r"^\w+?_([A-Z]\w*)_args$", part)
        if match:
            candidates = [c for names in registry._mapping.values() for n, c in names.items()
                          if n == match.group(1)]
            owner = candidates[0] if candidates else owner
    return field_descriptions(owner).get(leaf_of(key), "")


def _changed_settings(cfg: DictConfig) -> List[Tuple[str, object]]:
    """(long key, value) that ``cfg`` sets differently from the defaults (selected components)."""
    defaults, pruned = default_config(), pruned_config(cfg)
    shown = {t for name in SHORT_KEYS for t in short_key_targets(cfg, name)} | set(_TOP_LEVEL)
    changed = []
    for key in flat_keys(pruned):
        value = OmegaConf.select(pruned, key)
        if key in shown:
            continue
        if OmegaConf.select(defaults, key, default="<absent>") != value:
            changed.append((key, value))
    return changed


def help_text(argv: Sequence[str]) -> str:
    """Short keys with active values and descriptions, then what the chosen config changes."""
    args = _parse_hydra_args([a for a in argv if a not in ("--help", "-h")])
    name = (args.config_name or "base").removesuffix(".yaml")
    raw = compose_raw(name, [o for o in args.overrides if not o.startswith("hydra")],
                      config_dir=args.config_dir, primary_dir=args.config_path)
    cfg = apply_short_keys(raw)
    lines = [
        "Train a holo3d model (a Hydra app: every Hydra flag works; --hydra-help for Hydra's own help).",
        "",
        "  holo3d-train [--config-name NAME] [-cd DIR] [KEY=VALUE ...] [--multirun KEY=A,B ...]",
        "  holo3d-train ... --cfg job [--resolve]      the full composed config (long keys)",
        "",
        f"config: {name} ({args.config_path or CONFIG_DIR}); "
        f"model: {cfg.model_factory_HoloModelFactory_args.model_class_type}"
        if "model_factory_HoloModelFactory_args" in cfg else f"config: {name}",
        "",
        "Short keys (command line or YAML top level; a short key that is set wins over its long key):",
    ]
    for key, description in _TOP_LEVEL.items():
        lines.append(f"  {key + '=' + str(cfg[key]):<34} {description}")
    for key, spec in SHORT_KEYS.items():
        targets = short_key_targets(cfg, key)
        value = OmegaConf.select(cfg, targets[0]) if targets else "(not used by this config)"
        lines.append(f"  {key + '=' + str(value):<34} {spec.description}")
        lines += [f"  {'':<36}-> {t}" for t in targets[:1]]
    lines += ["", "Other settings this config changes from the defaults (long keys):"]
    for key, value in _changed_settings(cfg):
        description = describe_long_key(key)
        lines.append(f"  {key}={value}" + (f"\n      {description}" if description else ""))
    return "\n".join(lines)


# ---- the training app ----------------------------------------------------------------------------


def _train(cfg: DictConfig) -> None:
    """The Hydra task: short keys applied, one job directory per sweep job, then training."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    _task_started()
    try:
        cfg = apply_short_keys(cfg)
    except (ShortKeyError, ValueError) as error:
        exit_with_config_error(error, "short keys")
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        if hydra_cfg.job.num > 0:  # jobs share this process; let each pick its own precision
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state()
        with open_dict(cfg):
            cfg.exp_dir = hydra_cfg.runtime.output_dir
        print(f"holo3d: sweep job {hydra_cfg.job.num} -> exp_dir={cfg.exp_dir}", flush=True)
    experiment = build_experiment_or_exit(cfg)
    try:
        experiment.run(cfg)
    except CheckpointError as error:  # checkpoints exist and none loads: nothing is overwritten
        print(f"holo3d: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _with_sweep_dir_default(argv: List[str]) -> List[str]:
    """Sweeps go under exp_dir (Hydra's default is ./multirun/<date>) unless hydra.sweep.dir is set."""
    if any(a in ("-m", "--multirun") for a in argv) and not any(a.startswith("hydra.sweep.dir=") for a in argv):
        return [*argv, "hydra.sweep.dir=${exp_dir}"]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``holo3d-train`` / ``python experiment.py``: Hydra's CLI, short keys, readable errors."""
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    register_default_config()
    if "--help" in argv or "-h" in argv:
        try:
            print(help_text(argv))
        except Exception as error:  # noqa: BLE001 - a bad override in the help request itself
            exit_with_config_error(error, " ".join(argv))
        return
    app = hydra.main(config_path=str(CONFIG_DIR), config_name="base", version_base="1.3")(_train)
    run_hydra_app(app, _with_sweep_dir_default(argv))
