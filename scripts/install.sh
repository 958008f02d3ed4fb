#!/usr/bin/env bash
# Creates the virtual environment and installs holo3d with everything it needs, offline-ready.
# Steps that a plain `pip install` cannot do are here: visdom 0.2.4 builds only with setuptools<81
# and without build isolation, and its UI files are fetched from the npm registry at install time
# so that the dashboard server starts on machines without internet access.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
cd "$(dirname "$0")/.."

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip "setuptools<81" wheel
$PIP install -q -c constraints.txt -e ".[test]"
$PIP install -q -c constraints.txt --no-build-isolation "visdom==0.2.4"
if [ -f holo3d/viz/install_static.py ]; then
  "$VENV/bin/python" -m holo3d.viz.install_static || echo "warning: visdom static files not installed (dashboard UI needs them offline)" >&2
fi
# Guard: the ABI of pytorch3d._C needs exactly torch 2.11.
"$VENV/bin/python" - <<'PY'
import torch, torchvision
assert torch.__version__.split("+")[0] == "2.11.0", f"torch {torch.__version__} installed; holo3d needs 2.11.0"
assert torchvision.__version__.split("+")[0] == "0.26.0", f"torchvision {torchvision.__version__}; need 0.26.0"
import pytorch3d._C  # noqa: F401  (fails loudly if the compiled ops do not match torch)
print(f"holo3d environment ready: torch {torch.__version__}, pytorch3d OK")
PY
