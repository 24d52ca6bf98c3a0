#!/usr/bin/env bash
# Builds and runs the fuzz target of bt-wire's request decoding (fuzz/fuzz_targets/decode_request.rs)
# on stable Rust: libfuzzer-sys with the same coverage instrumentation cargo-fuzz asks of rustc
# (stable -C flags; no sanitizer, which would need nightly; the decoding code is safe Rust).
#   scripts/wire-fuzz.sh [SECONDS]   (default 60; crashes land in fuzz/artifacts/)
# With a nightly toolchain or RUSTC_BOOTSTRAP=1, `cargo fuzz run decode_request` works as usual.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS="${1:-60}"
TARGET="${CARGO_TARGET_DIR:-target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
HOST="$(rustc -vV | sed -n 's/^host: //p')"
CARGO_TARGET_DIR="$TARGET/fuzz" cargo build --release --target "$HOST" --bin decode_request
mkdir -p corpus/decode_request artifacts/decode_request
"$TARGET/fuzz/$HOST/release/decode_request" -max_total_time="$SECS" -max_len=65536 \
  -artifact_prefix=artifacts/decode_request/ corpus/decode_request
