#!/usr/bin/env bash
# Benchmark bt-wire against hivemind 1.1.12 on loopback (same expert, batch size and clients);
# prints a table with the ratio. Creates a benchmark-only Python environment in $WIRE_VENV
# (default /tmp/bt-wire-venv): torch is installed from PyPI (its CPU code path is used; the
# CUDA libraries it pulls are never loaded). Never run in CI.
# Extra arguments go to bench/wire/bench.py (e.g. --batch 16 --clients 4 --secs 10).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WIRE_VENV:-/tmp/bt-wire-venv}"
TARGET="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import hivemind, torch" 2>/dev/null; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r bench/wire/requirements.txt
fi
cargo build --release -q -p bt-wire --example wire_bench
LOG="$(mktemp /tmp/wire-bench.XXXXXX.log)"
echo "hivemind's logs: $LOG"
if ! "$VENV/bin/python" bench/wire/bench.py --rust-bin "$TARGET/release/examples/wire_bench" "$@" 2> "$LOG"; then
  tail -40 "$LOG"
  exit 1
fi
