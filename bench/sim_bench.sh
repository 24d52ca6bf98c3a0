#!/usr/bin/env bash
# Solver benchmark: Rust against NumPy on the same instances (see bench/sim_bench.py).
# Builds `bt` in release mode and a NumPy virtual environment under bench/.venv (once).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p bt
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/requirements.txt
fi
exec bench/.venv/bin/python bench/sim_bench.py --bt target/release/bt "$@"
