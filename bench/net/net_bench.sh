#!/usr/bin/env bash
# bt net up, measured: wall time, ledger height and peak memory, one run after the other on
# the same machine (release build). Nothing else should be running.
#
#   bench/net/net_bench.sh transports   the default network in lockstep, then over grpc, and
#                                       the ratio (docs/net.md, Lockstep against grpc)
#   bench/net/net_bench.sh scale        32 tiny neurons x 300 steps in lockstep
#   extra arguments go to every `bt net up` (e.g. --steps 50 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:-transports}"
shift || true
# BT=path runs that binary instead of building this checkout's release one.
if [ -z "${BT:-}" ]; then
  cargo build -q --release -p bt
fi
bt="${BT:-target/release/bt}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# run NAME ARGS...: runs bt net up, prints "NAME wall_s height steps peak_mb".
run() {
  local name="$1"
  shift
  local dir="$out/$name"
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$dir.mem" "$bt" net up --out "$dir" "$@" > "$dir.log" 2>&1 || {
    echo "$name failed; its log:" >&2
    tail -20 "$dir.log" >&2
    exit 1
  }
  t1=$(date +%s.%N)
  python3 - "$name" "$t0" "$t1" "$dir/report.json" "$dir.mem" <<'PY'
import json, sys
name, t0, t1, report, mem = sys.argv[1:]
r = json.load(open(report))
kb = int(open(mem).read().split()[-1])
print(name, f"{float(t1) - float(t0):.1f}", r["height"], r["steps"], f"{kb / 1024:.0f}")
PY
}

case "$what" in
  transports)
    a=$(run lockstep --transport lockstep "$@")
    b=$(run grpc --transport grpc "$@")
    python3 - "$a" "$b" <<'PY'
import sys
rows = [l.split() for l in sys.argv[1:]]
print("| transport | wall time | ledger height | blocks per step | peak memory |")
print("|---|---|---|---|---|")
for name, wall, height, steps, mb in rows:
    print(f"| {name} | {float(wall):.0f} s | {height} | {int(height) / max(int(steps), 1):.1f} | {int(mb)} MB |")
print(f"\nlockstep is {float(rows[1][1]) / float(rows[0][1]):.2f}x faster than grpc (goal: 1.5x)")
PY
    ;;
  scale)
    a=$(run scale32 --neurons 32 --steps 300 --model tiny "$@")
    python3 - "$a" <<'PY'
import sys
name, wall, height, steps, mb = sys.argv[1].split()
print("| run | wall time | steps | ledger height | peak memory |")
print("|---|---|---|---|---|")
print(f"| 32 tiny neurons, lockstep | {float(wall) / 60:.1f} min | {steps} | {height} | {int(mb)} MB |")
print(f"\ngoal: under 10 minutes on 2 cores ({'met' if float(wall) < 600 else 'missed'})")
PY
    ;;
  *)
    echo "usage: $0 transports|scale [bt net up flags]" >&2
    exit 2
    ;;
esac
