#!/usr/bin/env bash
# Generates a Python client from crates/wire/proto/wire.proto with grpcio-tools, starts the
# example axon (feed-forward expert) on 127.0.0.1, and calls Forward and Backward from Python.
# The Python environment lives in $WIRE_VENV (default /tmp/bt-wire-venv); never used by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WIRE_VENV:-/tmp/bt-wire-venv}"
TARGET="${CARGO_TARGET_DIR:-target}"
DIM="${WIRE_DIM:-64}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q grpcio==1.76.0 grpcio-tools==1.76.0 py-sr25519-bindings==0.2.2 numpy protobuf

GEN="$(mktemp -d)"
trap 'kill "${AXON_PID:-}" 2>/dev/null || true; rm -rf "$GEN"' EXIT
"$VENV/bin/python" -m grpc_tools.protoc -I crates/wire/proto \
  --python_out="$GEN" --grpc_python_out="$GEN" crates/wire/proto/wire.proto
cp bench/wire/wire_client.py "$GEN/"

cargo build --release -q -p bt-wire --example wire_axon
"$TARGET/release/examples/wire_axon" --port 0 --dim "$DIM" --secs 120 > "$GEN/axon.out" &
AXON_PID=$!
for _ in $(seq 1 200); do
  grep -q '^listening' "$GEN/axon.out" 2>/dev/null && break
  sleep 0.05
done
ADDR="$(awk '/^listening/ {print $2}' "$GEN/axon.out")"
HEX="$(awk '/^hotkey/ {print $3}' "$GEN/axon.out")"
[ -n "$ADDR" ] || { echo "axon did not start"; cat "$GEN/axon.out"; exit 1; }
echo "axon at $ADDR, hotkey $(awk '/^hotkey/ {print $2}' "$GEN/axon.out")"
"$VENV/bin/python" bench/wire/python_forward.py "$GEN" "$ADDR" "$HEX" "$DIM"
