"""Picks the experiment logger by name (the ``logger=visdom|tensorboard|wandb|none`` config choice).

wandb is an optional extra (``pip install 'holo3d[wandb]'``): choosing it without the package fails
at start with that instruction; nothing else imports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from holo3d.viz.logger_base import ExperimentLogger

LOGGER_KINDS = ("visdom", "tensorboard", "wandb", "none")


def make_logger(kind: str, exp_dir: str | Path, **kwargs: Any) -> ExperimentLogger:
    """``kind`` in ``LOGGER_KINDS``; ``kwargs`` go to the logger (e.g. ``port`` for visdom).

    "none" returns the base class, whose methods all do nothing. Call this on rank 0 only; other
    ranks should use ``make_logger("none", ...)``.
    """
    kind = (kind or "none").lower()
    if kind == "visdom":
        from holo3d.viz.visdom_logger import VisdomLogger

        return VisdomLogger(exp_dir, **kwargs)
    if kind == "tensorboard":
        from holo3d.viz.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(exp_dir, **kwargs)
    if kind == "wandb":
        from holo3d.viz.wandb_logger import WandbLogger

        return WandbLogger(exp_dir, **kwargs)
    if kind == "none":
        return ExperimentLogger()
    raise ValueError(f"unknown logger {kind!r}; choose one of {LOGGER_KINDS}")
