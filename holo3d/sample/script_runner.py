"""What the entry points share: logging set-up and one-line errors with a non-zero exit status.

An unusable experiment folder or setting is the user's to fix, so it is reported as one line on
stderr (exit status 2) instead of a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from holo3d.sample.experiment_loader import ExperimentLoadError
from holo3d.sample.script_config import SettingsError

EXIT_USER_ERROR = 2


def run_script(main: Callable[[Any], Any], cfg: Any, script: str) -> Any:
    """Runs ``main(cfg)``; ExperimentLoadError / SettingsError -> "script: error: ..." and exit 2."""
    logging.getLogger("holo3d").setLevel(logging.INFO)
    try:
        return main(cfg)
    except (ExperimentLoadError, SettingsError) as error:
        print(f"{script}: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
