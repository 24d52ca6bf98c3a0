#!/usr/bin/env bash
# The full load test of bt-wire: 64 concurrent clients, each with its own hotkey and stake,
# against one axon with a 16-deep queue, for WIRE_LOAD_SECS seconds (default 60).
# Prints the codes seen, how much the lowest- and highest-stake quarters were served, and RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
export WIRE_LOAD_SECS="${WIRE_LOAD_SECS:-60}"
cargo test --release -p bt-wire --test load -- --ignored --nocapture load_full
