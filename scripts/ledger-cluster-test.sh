#!/usr/bin/env bash
# Crash test of a replicated ledger: three validators on loopback (`bt chain run --cluster`),
# transfers streamed at them (`bt chain load`, failing over between validators), the leader
# killed with SIGKILL again and again and restarted from its data directory, and after each
# leader a follower, which must catch up. Then: every
# acknowledged transaction is in a block on every validator, all three show the same height,
# block id and state hash, and `bt chain verify` replays each data directory.
# Exits non-zero on any failure.
#
# Usage: scripts/ledger-cluster-test.sh [KILLS] [WORK_DIR]   (default: 10 kills, a temp dir)
# Needs the `bt` binary: built here with `cargo build --release -p bt` unless BT is set.
set -euo pipefail

KILLS="${1:-10}"
WORK="${2:-$(mktemp -d)}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${BT:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p bt)
  BT="${CARGO_TARGET_DIR:-$ROOT/target}/release/bt"
fi
BASE="${PORT:-51070}"
ALICE=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY
BOB=5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty
mkdir -p "$WORK"
rm -rf "$WORK"/v* "$WORK/acked.txt" "$WORK/stop"
cat > "$WORK/genesis.toml" <<TOML
[params]
tau = 1.0
epsilon = 0.5
max_neurons = 64
block_time_ms = 300

[[accounts]]
address = "$ALICE"
balance = 1_000_000_000_000_000
TOML
: > "$WORK/cluster.toml"
NODES=""
for id in 1 2 3; do
  cat >> "$WORK/cluster.toml" <<TOML
[[validator]]
id = $id
raft = "127.0.0.1:$((BASE + id))"
api = "127.0.0.1:$((BASE + 10 + id))"

TOML
  NODES="${NODES:+$NODES,}http://127.0.0.1:$((BASE + 10 + id))"
done

declare -A pid
start() {
  "$BT" chain run --genesis "$WORK/genesis.toml" --data-dir "$WORK/v$1" \
    --cluster "$WORK/cluster.toml" --node-id "$1" 2>>"$WORK/v$1.log" &
  pid[$1]=$!
}
cleanup() {
  for id in 1 2 3; do [[ -n "${pid[$id]:-}" ]] && kill -9 "${pid[$id]}" 2>/dev/null || true; done
  [[ -n "${load_pid:-}" ]] && kill "$load_pid" 2>/dev/null || true
}
trap cleanup EXIT
# The id of the validator that says it leads (empty while none does).
leader() {
  "$BT" chain status --node "$NODES" 2>/dev/null | sed -n 's/^  validator \([0-9]*\) leader .*/\1/p' | head -1
}
wait_leader() {
  for _ in $(seq 1 200); do
    l="$(leader)"
    [[ -n "$l" ]] && { echo "$l"; return; }
    sleep 0.05
  done
  echo "no leader after 10 s" >&2
  exit 1
}

echo "work dir: $WORK"
for id in 1 2 3; do start "$id"; done
first="$(wait_leader)"
echo "validator $first leads"
"$BT" chain load --node "$NODES" --suri //Alice --to "$BOB" --acked "$WORK/acked.txt" \
  --stop-file "$WORK/stop" --patience-s 120 > "$WORK/load.out" 2>&1 &
load_pid=$!

for ((k = 1; k <= KILLS; k++)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.5 + 1.5 * r / 32767 }')"
  l="$(wait_leader)"
  kill -9 "${pid[$l]}"
  wait "${pid[$l]}" 2>/dev/null || true
  acked=$(wc -l < "$WORK/acked.txt" 2>/dev/null || echo 0)
  # Down for 0.3 to 8 s: the others wait out the leader's lease and an election timeout
  # (3 to 6 s by default) before they elect, and a leader back sooner takes up its leadership
  # again (its vote is on disk); one down longer finds that another leads.
  down="$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", 0.3 + 7.7 * r / 32767 }')"
  printf 'kill %2d/%d: leader %s killed with SIGKILL for %s s, %6d transactions acknowledged so far\n' \
    "$k" "$KILLS" "$l" "$down" "$acked"
  sleep "$down"
  start "$l"
  # Then a follower: killed under load and restarted a moment later, it must catch up.
  sleep 0.5
  l="$(wait_leader)"
  f=$((l % 3 + 1))
  kill -9 "${pid[$f]}"
  wait "${pid[$f]}" 2>/dev/null || true
  printf '         follower %s killed with SIGKILL\n' "$f"
  sleep 0.3
  start "$f"
done

sleep 1
touch "$WORK/stop"
wait "$load_pid"
load_pid=""
cat "$WORK/load.out"
"$BT" chain check-acked --node "$NODES" --acked "$WORK/acked.txt" --wait-s 60

# The same chain on all three: poll until their heads agree (blocks come every 300 ms).
same=""
for _ in $(seq 1 100); do
  heads="$("$BT" chain status --node "$NODES" | grep -o 'height [0-9]* head [0-9a-f]* state [0-9a-f]*' | sort -u)"
  if [[ "$(echo "$heads" | wc -l)" == 1 && -n "$heads" ]]; then same="$heads"; break; fi
  sleep 0.05
done
if [[ -z "$same" ]]; then
  echo "the validators never showed the same head:" >&2
  "$BT" chain status --node "$NODES" >&2
  exit 1
fi
echo "all three validators at $same"

for id in 1 2 3; do kill -INT "${pid[$id]}"; done
for id in 1 2 3; do wait "${pid[$id]}" 2>/dev/null || true; pid[$id]=""; done
for id in 1 2 3; do
  echo -n "validator $id: "
  "$BT" chain verify --data-dir "$WORK/v$id"
done
echo "cluster test passed: $KILLS leader kills and $KILLS follower kills, no acknowledged transaction lost, the same head on all three, every chain verified"
