#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: Debian's Chromium and ChromeDriver,
# for the dashboard's browser test (crates/net/tests/dashboard_browser.rs). Does nothing when
# both are already there. Uses sudo when not run as root.
#   scripts/install-test-deps.sh
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
