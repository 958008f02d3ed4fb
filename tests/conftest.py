"""Test-suite set-up shared by every folder.

The trainer's tests use a tiny model and data source (tests/train/tiny_components.py). They are
registered here, at collection start, because Implicitron expands a config class once: a component
registered after the first expansion would not be configurable.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "train"))
sys.path.insert(0, str(Path(__file__).parent / "models"))

import tiny_components  # noqa: E402,F401  (registers TinyTestModel and TinyTestDataSource)
import tiny_image_ddpm  # noqa: E402,F401  (registers TinyImageDDPM, the sixth model)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state; each test's training run may ask for another
    mixed-precision setting, as separate processes would."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
