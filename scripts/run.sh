#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine or a warm one:
#   bash scripts/run.sh            # percolate demo
#   bash scripts/run.sh demo --resources 50000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-deps.sh
if [ "$#" -eq 0 ]; then
  set -- demo
fi
exec cargo run --release --locked --bin percolate -- "$@"
