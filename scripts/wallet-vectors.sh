#!/usr/bin/env bash
# Regenerates the bittensor wallet test vectors in crates/keys/tests/vectors/bittensor/ with the
# Python `bittensor-wallet` package from PyPI, in a venv of its own ($WALLET_VENV, default
# target/wallet-vectors-venv). Test-only: neither the build nor CI runs it; the generated files
# are committed and crates/keys/tests/bittensor.rs decrypts them.
#   scripts/wallet-vectors.sh
# Each coldkey takes a few seconds: bittensor derives its key with Argon2i at 512 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WALLET_VENV:-target/wallet-vectors-venv}"
VERSION="${BITTENSOR_WALLET_VERSION:-4.1.1}"
OUT=crates/keys/tests/vectors/bittensor

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "bittensor-wallet==$VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"
"$VENV/bin/python" scripts/wallet_vectors.py "$OUT"
echo "wrote $(find "$OUT" -type f | wc -l) files to $OUT with bittensor-wallet $VERSION"
