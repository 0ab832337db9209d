#!/usr/bin/env bash
# Set up (if needed) and run the main job on the built-in default: render the garden capture's
# points from its three cameras to PNGs and print the timing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
GARDEN=${1:-../shared/data/test_garden.npz}
exec .venv/bin/splatforge render "$GARDEN" -o out/garden
