#!/usr/bin/env bash
# Benchmark one training step of the candle learner trained alone (bt-neuron, Mode::Alone)
# against the same model in PyTorch on the CPU, side by side, at batch sizes 8, 16 and 32
# (seq 64); prints a Markdown table with tokens/s and the ratio. Benchmark only; never in CI.
#
# Uses the Python environment in $NEURON_VENV (default /tmp/bt-wire-venv, shared with
# scripts/wire-bench.sh); installs bench/neuron/requirements.txt (torch 2.5.1 from PyPI, as the
# wire benchmark does) when torch is missing.
# Threads: $NEURON_BENCH_THREADS (default 2) for both (RAYON_NUM_THREADS for candle, --threads
# for torch). Batch sizes: $NEURON_BENCH_BATCHES (default "8 16 32").
# Extra arguments go to both programs, so use the flags both take: --steps --warmup --seq --d
# --layers --hidden --heads --seed (e.g. --steps 100 --warmup 10 --d 128 --layers 4).
# Each program's JSON line goes to stderr; the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NEURON_VENV:-/tmp/bt-wire-venv}"
TARGET="${CARGO_TARGET_DIR:-target}"
THREADS="${NEURON_BENCH_THREADS:-2}"
BATCHES="${NEURON_BENCH_BATCHES:-8 16 32}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r bench/neuron/requirements.txt
fi
cargo build --release -q -p bt-neuron --example neuron_bench
BIN="$TARGET/release/examples/neuron_bench"

rows=()
for b in $BATCHES; do
  c="$(RAYON_NUM_THREADS="$THREADS" "$BIN" --batch "$b" --seq 64 "$@")"
  p="$("$VENV/bin/python" bench/neuron/torch_step.py --batch "$b" --seq 64 --threads "$THREADS" "$@")"
  echo "$c" >&2
  echo "$p" >&2
  rows+=("$c" "$p")
done

"$VENV/bin/python" - "${rows[@]}" <<'EOF'
import json, sys
rs = [json.loads(line) for line in sys.argv[1:]]
c0, p0 = rs[0], rs[1]
print(f"\nparams: candle {c0['params']}, pytorch {p0['params']}; seq {c0['seq']}; "
      f"{c0['steps']} timed steps; {p0['threads']} threads; torch {p0['torch']}\n")
print("| batch | candle tok/s | pytorch tok/s | candle/pytorch | candle ms/step "
      "| pytorch ms/step | final loss candle | final loss pytorch |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for c, p in zip(rs[0::2], rs[1::2]):
    print(f"| {c['batch']} | {c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | "
          f"{c['tokens_per_s'] / p['tokens_per_s']:.2f} | {c['ms_per_step']:.2f} | "
          f"{p['ms_per_step']:.2f} | {c['final_loss']:.3f} | {p['final_loss']:.3f} |")
EOF
