"""tests/models: shared set-up for the model tests.

- Makes the test-data helpers (models_testdata.py) importable: pytest's importlib import mode does
  not put test folders on sys.path (the top-level conftest does the same for tests/train).
- Runs these tests single-threaded. Their tensors are tiny, so a second intra-op thread gains
  nothing, while on the shared 2-core CI machines OpenMP threads spin-waiting against other
  processes made the learning test 10-15x slower (136 s vs 9 s measured under load).
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
