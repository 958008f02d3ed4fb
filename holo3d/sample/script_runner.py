"""What the entry points share: a fast first check, logging, one-line errors and the exit status.

An unusable experiment folder or setting is the user's to fix, so it is reported as one line on
stderr (exit status 2) instead of a traceback; anything else is a bug and keeps its traceback.
The driver module is imported only after ``exp_dir`` passed the file-system checks, so a wrong path
is reported before torch is even imported.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from typing import Any

from holo3d.sample.input_checks import (
    ExperimentLoadError,
    MissingDependencyError,
    SettingsError,
    preflight_exp_dir,
)

EXIT_USER_ERROR = 2


@contextlib.contextmanager
def inference_precision(precision: str, device: str):
    """bf16 autocast and TF32 matmuls on GPUs: about 4x faster full-frame renders on an H200 than
    fp32 (BENCHMARKS.md) at ~4e-3 relative colour error; CPU work stays in fp32."""
    if precision not in ("bf16", "fp32"):
        raise SettingsError(f"precision={precision!r}; use bf16 or fp32")
    import torch

    on_gpu = torch.cuda.is_available() and device != "cpu"
    torch.backends.cuda.matmul.allow_tf32 = on_gpu
    torch.backends.cudnn.allow_tf32 = on_gpu
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu and precision == "bf16"):
        yield


def run_script(driver: str, cfg: Any, script: str) -> Any:
    """Runs ``driver`` ("module:function") on ``cfg``; input errors -> "script: error: ..." and exit 2."""
    logging.getLogger("holo3d").setLevel(logging.INFO)
    try:
        preflight_exp_dir(cfg.exp_dir)
        module, function = driver.split(":")
        with inference_precision(cfg.precision, cfg.device):
            return getattr(importlib.import_module(module), function)(cfg)
    except (ExperimentLoadError, SettingsError, MissingDependencyError) as error:
        print(f"{script}: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
