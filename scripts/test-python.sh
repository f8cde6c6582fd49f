#!/usr/bin/env bash
# The Python package's tests, on a fresh Debian 12 machine or a warm one:
#   bash scripts/test-python.sh [PYTEST ARGS...]
# Builds the wheel (scripts/build-wheel.sh), installs it into the virtualenv, type-checks the
# tests with mypy --strict against the installed stubs, then runs pytest against RocksDB and
# against a throwaway PostgreSQL (scripts/with-postgres.sh). A missing PostgreSQL fails the
# PostgreSQL cases; nothing is skipped for it.
set -euo pipefail
cd "$(dirname "$0")/.."

wheel="$(bash scripts/build-wheel.sh)"
# The virtualenv scripts/build-wheel.sh made.
VENV="${PERCOLATE_PY_VENV:-${PERCOLATE_CACHE:-$HOME/.cache/percolate}/venv}"
echo "== installing $wheel" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
  --no-deps "$wheel"

echo "== mypy --strict tests/python"
"$VENV/bin/python" -m mypy --strict tests/python

echo "== pytest tests/python (RocksDB and PostgreSQL)"
# Run from tests/python's parent with the source package off the path, so the installed
# wheel is what is tested.
bash scripts/with-postgres.sh "$VENV/bin/python" -m pytest tests/python -p no:cacheprovider "$@"
