#!/usr/bin/env bash
# Install the third-party splat readers that tests/ship/thirdparty drives:
#   - Debian's chromium (headless, WebGL through SwiftShader) for gsplat.js;
#   - node packages pinned in tools/js/package-lock.json (@playcanvas/splat-transform, gsplat);
#   - the python `playwright` package in the venv ($1, default .venv).
# Idempotent, and a quick no-op when everything is present. Playwright is only the driver: it never
# downloads a browser here (no `playwright install`); the tests launch /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
say() { echo "setup_thirdparty: $*"; }

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "/usr/bin/chromium is missing; run this as root (it uses apt-get) or install Debian's chromium" >&2
    exit 1
  fi
  say "installing Debian's chromium (apt-get)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    say "node and npm are missing; run this as root (it uses apt-get) or install nodejs and npm" >&2
    exit 1
  fi
  say "installing Debian's nodejs and npm (apt-get)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi

# npm ci wipes and reinstalls node_modules, so it runs only when the lockfile changed since the
# last install. Install scripts are skipped: the only one (webgpu's) is not needed, since the
# tests run splat-transform with `-g cpu`.
stamp=tools/js/node_modules/.splatforge-lock
want=$(sha256sum tools/js/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "npm ci in tools/js (splat-transform, gsplat.js at the versions in package-lock.json)"
  (cd tools/js && npm ci --ignore-scripts --no-audit --no-fund)
  echo "$want" > "$stamp"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "no python venv at $VENV; create it first (scripts/setup.sh)" >&2
  exit 1
fi
if ! "$VENV/bin/python" -c "import playwright.sync_api" >/dev/null 2>&1; then
  say "pip install playwright into $VENV (the driver only; the browser is /usr/bin/chromium)"
  "$VENV/bin/python" -m pip install --quiet "playwright>=1.40"
fi
say "ready: $(/usr/bin/chromium --version 2>/dev/null | head -1); node $(node --version)"
