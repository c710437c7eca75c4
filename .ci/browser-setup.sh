#!/usr/bin/env bash
# Installs what apps/studio's end-to-end test drives: Debian's `chromium` package (playwright-core
# launches /usr/bin/chromium through `executablePath`, so Playwright never downloads a browser).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "browser-setup: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi

echo "browser-setup: installing chromium"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "browser-setup: $(/usr/bin/chromium --version 2>/dev/null || echo "chromium installed")"
