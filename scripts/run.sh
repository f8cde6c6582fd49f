#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine or a warm one:
#   bash scripts/run.sh                          # percolate bench: the design document's table
#   bash scripts/run.sh bench --json out.json    # any bench flags (percolate bench --help)
#   bash scripts/run.sh demo --resources 50000   # or any other subcommand
# With PERCOLATE_POSTGRES_URL set, the PostgreSQL provider is compiled in too, and the bench
# measures PostgreSQL in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-deps.sh
if [ "$#" -eq 0 ]; then
  set -- bench
fi
features=(--features cli)
if [ -n "${PERCOLATE_POSTGRES_URL:-}" ]; then
  features=(--features cli,postgres)
fi
exec cargo run --release --locked "${features[@]}" --bin percolate -- "$@"
