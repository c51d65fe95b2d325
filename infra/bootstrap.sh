#!/usr/bin/env bash
# Python side: uv (from PyPI if missing) and the locked virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    echo "== installing uv"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
UV=$(command -v uv || echo "$HOME/.local/bin/uv")
echo "== syncing the virtual environment from uv.lock"
"$UV" sync --frozen --quiet

# Headless Chromium and its driver for the console's browser tests (Debian packages; no download
# at test time). Installed only when missing; CI runs with CI=true and no stdin.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    echo "== installing chromium and chromium-driver (browser tests of the web console)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Node.js and npm for the checks `make test` runs with `npm ci` (package.json, pinned in
# package-lock.json): axe-core, which the console's browser tests inject into every page, and
# Spectral, which checks the OpenAPI document as integrators' tools read it. Installed only when missing.
if ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    echo "== installing nodejs and npm (axe-core and Spectral for the tests)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
