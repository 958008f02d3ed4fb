"""tests/models: make the shared test-data helpers (models_testdata.py) importable.

pytest's importlib import mode does not put test folders on sys.path, so do it here, as the
top-level conftest does for tests/train.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
