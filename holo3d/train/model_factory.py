"""ModelFactory: builds the configured model and finds the state to start it from.

Resume picks the newest usable checkpoint of ``exp_dir`` (or ``resume_epoch``); ``init_weights_from``
starts a new experiment from another one's weights (model only: fresh optimizer and epoch 0).
"""


import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase
from pytorch3d.implicitron.tools.config import ReplaceableBase, registry, run_auto_creation

from holo3d.train.checkpoint import (
    CheckpointError,
    check_state_dict_compatible,
    load_checkpoint_file,
    load_latest_checkpoint,
)

logger = logging.getLogger(__name__)


class ModelFactoryBase(ReplaceableBase):
    def __call__(self, exp_dir: str) -> ImplicitronModelBase:
        raise NotImplementedError()

    def resume_state(self, exp_dir: str) -> Optional[Dict[str, Any]]:
        """The checkpoint dict to resume from, or None to start fresh."""
        raise NotImplementedError()


@registry.register
class HoloModelFactory(ModelFactoryBase):
    """
    Members:
        model_class_type: the registered model to build (e.g. HoloDiffusionModel).
        resume: continue from the newest checkpoint of exp_dir when there is one.
        resume_epoch: resume from exactly this epoch's checkpoint (-1: newest usable).
        init_weights_from: an experiment folder or checkpoint file whose model weights initialise a
            new run (ignored when resuming).
    """

    model: ImplicitronModelBase
    model_class_type: str = "HoloDiffusionModel"
    resume: bool = True
    resume_epoch: int = -1
    init_weights_from: str = ""

    def __post_init__(self):
        run_auto_creation(self)

    def __call__(self, exp_dir: str) -> ImplicitronModelBase:
        model = self.model
        if self.init_weights_from and self.resume_state(exp_dir) is None:
            state = self._weights_state(Path(self.init_weights_from))
            check_state_dict_compatible(state, model.state_dict(), source=self.init_weights_from)
            model.load_state_dict(state)
            logger.info("initialised model weights from %s", self.init_weights_from)
        return model

    def resume_state(self, exp_dir: str) -> Optional[Dict[str, Any]]:
        if not self.resume:
            return None
        epoch = self.resume_epoch if self.resume_epoch >= 0 else None
        return load_latest_checkpoint(exp_dir, epoch=epoch)

    @staticmethod
    def _weights_state(source: Path) -> Dict[str, torch.Tensor]:
        if source.is_dir():
            state = load_latest_checkpoint(source)
            if state is None:
                raise CheckpointError(f"init_weights_from={source}: the folder has no checkpoints")
        elif source.is_file():
            state = load_checkpoint_file(source)
        else:
            raise CheckpointError(f"init_weights_from={source}: no such file or folder")
        return state.get("ema") or state["model"]
