#!/usr/bin/env bash
# Create .venv and install splatforge with its test extras. Idempotent: reinstalls only when
# pyproject.toml changes. CPU machines get the CPU build of torch (pinned, from the local wheel
# cache here); set SPLATFORGE_TORCH to another spec (e.g. "torch" on a CUDA machine) to override.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${SPLATFORGE_TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.splatforge-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi
# With --test: Chromium, node packages and playwright for the tests that drive third-party splat
# readers and the viewer in a real browser (a quick no-op once installed)
if [ "${1:-}" = "--test" ]; then
  bash scripts/setup_thirdparty.sh .venv
fi
