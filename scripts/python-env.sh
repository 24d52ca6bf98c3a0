#!/usr/bin/env bash
# Makes the Python environment the Python package's tests run in (crates/py/tests/pytest.rs):
# a venv at target/py-venv with NumPy and pytest from PyPI. Does nothing when it is there.
# maturin (to build a wheel: `cd python && maturin build`) is not needed for the tests.
#   scripts/python-env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/py-venv"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import numpy, pytest" 2>/dev/null; then
  exit 0
fi
PY="${PYTHON:-python3}"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "numpy>=1.21" "pytest>=7"
echo "Python test environment ready: $VENV"
