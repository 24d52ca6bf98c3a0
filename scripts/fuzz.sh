#!/usr/bin/env bash
# Builds and runs one fuzz target of fuzz/fuzz_targets/ on stable Rust: libfuzzer-sys with the
# same coverage instrumentation cargo-fuzz asks of rustc (stable -C flags; no sanitizer, which
# would need nightly; the decoding code is safe Rust).
#   scripts/fuzz.sh TARGET [SECONDS]   (default 60; crashes land in fuzz/artifacts/TARGET/)
# Targets: decode_request (the axon's requests), ledger_decode (transactions, blocks),
# replica_log (raft log entries, commands, votes), replica_rpc (raft messages between validators),
# snapshot_restore (a ledger snapshot installed from another validator), key_files (hotkey,
# coldkey public and encrypted coldkey files, ours and bittensor's $NACL).
# With a nightly toolchain or RUSTC_BOOTSTRAP=1, `cargo fuzz run TARGET` works as usual.
set -euo pipefail
NAME="${1:?usage: scripts/fuzz.sh TARGET [SECONDS]}"
SECS="${2:-60}"
cd "$(dirname "$0")/../fuzz"
if [ ! -f "fuzz_targets/$NAME.rs" ]; then
  echo "no fuzz target $NAME; there are: $(cd fuzz_targets && ls *.rs | sed 's/\.rs$//' | tr '\n' ' ')" >&2
  exit 2
fi
TARGET="${CARGO_TARGET_DIR:-target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
HOST="$(rustc -vV | sed -n 's/^host: //p')"
CARGO_TARGET_DIR="$TARGET/fuzz" cargo build --release --target "$HOST" -p bt-fuzz --bin "$NAME"
mkdir -p "corpus/$NAME" "artifacts/$NAME"
"$TARGET/fuzz/$HOST/release/$NAME" -max_total_time="$SECS" -max_len=65536 \
  -artifact_prefix="artifacts/$NAME/" "corpus/$NAME"
