"""Experiment: the top of holo3d's config tree, wiring data source, model, optimizer and loop.

    Experiment
     ├─ data_source        (DataSourceBase, default Holo3DDataSource)
     ├─ model_factory      (ModelFactoryBase, default HoloModelFactory -> model)
     ├─ optimizer_factory  (OptimizerFactoryBase, default HoloOptimizerFactory)
     └─ training_loop      (TrainingLoopBase, default HoloTrainingLoop)

Its default arguments are stored in Hydra's ConfigStore as ``default_config``; every YAML in
``configs/`` starts from it, so every key is typed and a misspelt key fails before any work starts.
"""


import logging
import os
from pathlib import Path
from typing import Dict, Optional

from omegaconf import DictConfig, OmegaConf
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.tools.config import (
    Configurable,
    get_default_args,
    remove_unused_components,
    run_auto_creation,
)

from holo3d.data.scene_batch import SceneSource
from holo3d.io.atomic_file import probe_writable, write_text_atomic
from holo3d.models.protocol import TrainableModel
from holo3d.train.model_factory import ModelFactoryBase
from holo3d.train.optimizer_factory import OptimizerFactoryBase
from holo3d.train.rng_state import seed_everything
from holo3d.train.training_loop import TrainingLoopBase

logger = logging.getLogger("holo3d")

EXPCONFIG_NAME = "expconfig.yaml"


class Experiment(Configurable):
    """
    Members:
        data_source: yields the datasets and data loaders.
        model_factory: builds the model and finds the checkpoint to resume from.
        optimizer_factory: builds the optimizer and LR schedule.
        training_loop: runs training, validation, checkpointing and monitoring.
        seed: base seed (offset by the process rank).
        exp_dir: where the config, checkpoints, logs and results go.
    """

    data_source: DataSourceBase
    data_source_class_type: str = "Holo3DDataSource"
    model_factory: ModelFactoryBase
    model_factory_class_type: str = "HoloModelFactory"
    optimizer_factory: OptimizerFactoryBase
    optimizer_factory_class_type: str = "HoloOptimizerFactory"
    training_loop: TrainingLoopBase
    training_loop_class_type: str = "HoloTrainingLoop"
    seed: int = 42
    exp_dir: str = "exp/default"

    @classmethod
    def pre_expand(cls) -> None:
        # Registration must not depend on import order: import every registering package here.
        import holo3d.data  # noqa: F401
        import holo3d.models  # noqa: F401
        import holo3d.train.model_factory  # noqa: F401
        import holo3d.train.optimizer_factory  # noqa: F401
        import holo3d.train.training_loop  # noqa: F401

    def __post_init__(self):
        # exp_dir is checked first: components may load or generate data while they are built.
        prepare_exp_dir(self.exp_dir)
        # Seed before the components are built: model initialisation must be reproducible.
        seed_everything(self.seed)
        run_auto_creation(self)
        check_frames_cover_model(self)

    def run(self, config: DictConfig) -> Dict[str, float]:
        """Trains; ``config`` is the resolved config this experiment was built from."""
        exp_dir = prepare_exp_dir(self.exp_dir)
        config_yaml = OmegaConf.to_yaml(config, resolve=True)
        log_handler = None
        if _is_rank_zero():  # rank 0 alone writes into exp_dir: the log and the config too
            log_handler = attach_log_file(exp_dir)
            write_text_atomic(exp_dir / EXPCONFIG_NAME, config_yaml)
        try:
            return self.training_loop.run(
                data_source=self.data_source,
                model_factory=self.model_factory,
                optimizer_factory=self.optimizer_factory,
                exp_dir=str(exp_dir),
                seed=self.seed,
                config_yaml=config_yaml,
            )
        finally:  # a sweep's next job (same process) must not log into this job's train.log
            if log_handler is not None:
                logging.getLogger("holo3d").removeHandler(log_handler)
                log_handler.close()


def default_config() -> DictConfig:
    """What ``default_config`` resolves to: every key, with argument blocks for every registered
    implementation of each replaceable member (``pruned_config`` keeps the selected ones)."""
    return get_default_args(Experiment)


def pruned_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` without the argument blocks of components that are not selected."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    remove_unused_components(cfg)
    return cfg


def check_frames_cover_model(experiment: Experiment) -> None:
    """A scene needs the model's targets plus at least one source view; say so at config time."""
    source = experiment.data_source
    frames = source.frames_per_scene if isinstance(source, SceneSource) else None
    model = experiment.model_factory.model
    needed = model.min_frames_per_scene if isinstance(model, TrainableModel) else None
    if needed is not None and frames is None:
        raise ValueError(f"{type(model).__name__} trains on scenes of posed images but the data source "
                         f"{type(experiment.data_source).__name__} yields none")
    if needed is not None and frames < needed:
        raise ValueError(
            f"data_source...frames_per_scene={frames} but {type(model).__name__} needs at least {needed} "
            "frames per scene (its targets + 1 source); raise frames_per_scene or lower the model's n_targets"
        )


def prepare_exp_dir(exp_dir: str) -> Path:
    """Creates exp_dir and its checkpoints/ folder and proves both writable (a temporary file is
    written and removed in each), before any data is loaded or any step trained: an unwritable
    destination found only at the first checkpoint would cost a whole epoch."""
    if not str(exp_dir).strip():
        raise ValueError("exp_dir is empty: set exp_dir=PATH (training would write into the current folder)")
    path = Path(exp_dir).expanduser().resolve()
    _probe_writable(path, f"exp_dir={exp_dir!r}")
    _probe_writable(path / "checkpoints", f"exp_dir={exp_dir!r}: its checkpoints folder")
    return path


def _probe_writable(folder: Path, what: str) -> None:
    """``probe_writable`` (holo3d.io), as a PermissionError naming ``what`` and the cause."""
    try:
        probe_writable(folder)
    except OSError as error:
        raise PermissionError(f"{what} is not writable ({folder}): {error}") from error


def attach_log_file(exp_dir: Path) -> Optional[logging.Handler]:
    """Logs holo3d's messages to exp_dir/train.log; returns the new handler (None if one is there)."""
    root = logging.getLogger("holo3d")
    root.setLevel(logging.INFO)
    log_path = str(exp_dir / "train.log")
    if any(getattr(h, "baseFilename", None) == log_path for h in root.handlers):
        return None
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return handler


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
