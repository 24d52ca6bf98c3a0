#!/usr/bin/env bash
# Mechanism benchmark: the ledger's fixed-point Yuma epoch and paper inflation step against
# NumPy on the same state (see bench/epoch_numpy.py). Runs the whole ledger benchmark (its
# table first), then the comparison table. NumPy comes from bench/.venv (made once).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/requirements.txt
fi
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
BT_BENCH_JSON="$json" cargo bench -q -p bt-chain --bench ledger
echo
exec bench/.venv/bin/python bench/epoch_numpy.py --rust "$json" "$@"
