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
