#!/usr/bin/env bash
# Install Debian's Chromium for the X-Ray browser tests (Playwright drives it through
# executable_path; Playwright's own browser download is never used). Idempotent: does nothing
# when chromium is already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser.sh: need root (or sudo) to apt-get install chromium" >&2; exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
echo "chromium installed: $(command -v chromium)"
