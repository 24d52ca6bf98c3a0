#!/usr/bin/env bash
# The Python package's Dendrite and Axon against the Rust ones on loopback, in one run
# (python/bench/binding.py): builds the release wheel with maturin and installs it in a
# benchmark-only venv ($PY_BENCH_VENV, default /tmp/bt-py-bench-venv), builds the Rust
# example axon and client, prints a table with the ratios. Never run in CI.
# Extra arguments go to binding.py (e.g. --dim 256 --batch 64 --clients 4 --secs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PY_BENCH_VENV:-/tmp/bt-py-bench-venv}"
TARGET="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import numpy, maturin" 2>/dev/null; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "numpy>=1.21" "maturin>=1.5,<2"
fi
(cd python && "$VENV/bin/maturin" build --release -q -o "../$TARGET/wheels")
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$(ls -t "$TARGET"/wheels/bittensor_rs-*.whl | head -1)"
cargo build --release -q -p bt-wire --example wire_axon --example wire_client
# One BLAS thread: the Rust expert computes on one thread per call too.
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$VENV/bin/python" python/bench/binding.py \
  --rust-axon "$TARGET/release/examples/wire_axon" \
  --rust-client "$TARGET/release/examples/wire_client" "$@"
