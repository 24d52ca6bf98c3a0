#!/usr/bin/env bash
# Crash test of the ledger node: streams transactions at it while killing it with SIGKILL
# at random moments, restarting it each time; then checks that every acknowledged
# transaction is in a block and that `bt chain verify` replays the whole chain.
#
# Usage: scripts/ledger-crash-test.sh [KILLS] [WORK_DIR]   (default: 50 kills, a temp dir)
# Needs the `bt` binary: built here with `cargo build --release -p bt` unless BT is set.
set -euo pipefail

KILLS="${1:-50}"
WORK="${2:-$(mktemp -d)}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${BT:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p bt)
  BT="${CARGO_TARGET_DIR:-$ROOT/target}/release/bt"
fi
PORT="${PORT:-50977}"
NODE="http://127.0.0.1:$PORT"
DATA="$WORK/data"
ALICE=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY
BOB=5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty
mkdir -p "$WORK"
rm -rf "$DATA" "$WORK/acked.txt" "$WORK/stop"
cat > "$WORK/genesis.toml" <<TOML
[params]
tau = 1.0
epsilon = 0.5
max_neurons = 64
block_time_ms = 50

[[accounts]]
address = "$ALICE"
balance = 1_000_000_000_000_000
TOML

node_pid=""
start_node() {
  "$BT" chain run --genesis "$WORK/genesis.toml" --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
    2>>"$WORK/node.log" &
  node_pid=$!
}
cleanup() {
  [[ -n "$node_pid" ]] && kill -9 "$node_pid" 2>/dev/null || true
  [[ -n "${load_pid:-}" ]] && kill "$load_pid" 2>/dev/null || true
}
trap cleanup EXIT

echo "work dir: $WORK"
start_node
"$BT" chain load --node "$NODE" --suri //Alice --to "$BOB" --acked "$WORK/acked.txt" \
  --stop-file "$WORK/stop" --patience-s 120 > "$WORK/load.out" 2>&1 &
load_pid=$!

for ((k = 1; k <= KILLS; k++)); do
  # A random moment between 0.1 and 1.5 s after the (re)start.
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.1 + 1.4 * r / 32767 }')"
  kill -9 "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  acked=$(wc -l < "$WORK/acked.txt" 2>/dev/null || echo 0)
  printf 'kill %2d/%d: node killed with SIGKILL, %6d transactions acknowledged so far\n' "$k" "$KILLS" "$acked"
  start_node
done

sleep 1
touch "$WORK/stop"
wait "$load_pid"
load_pid=""
cat "$WORK/load.out"
"$BT" chain check-acked --node "$NODE" --acked "$WORK/acked.txt" --wait-s 60
kill -9 "$node_pid"
wait "$node_pid" 2>/dev/null || true
node_pid=""
"$BT" chain verify --data-dir "$DATA"
echo "crash test passed: $KILLS kills, no acknowledged transaction lost, chain verified"
