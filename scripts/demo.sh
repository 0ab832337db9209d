#!/usr/bin/env bash
# Set up (if needed) and run the main job on the built-in default: `splatforge demo` makes a
# procedural capture (48 ray-traced views, COLMAP format), trains 3D Gaussians on it on the CPU for
# a few minutes, and writes the PLY, an orbit video, plots and metrics to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/splatforge demo -o out/demo "$@"
