#!/usr/bin/env bash
# Builds the Python package percolate_core as a wheel (abi3: one wheel for CPython 3.9 and
# later) with maturin, and prints its path:
#   bash scripts/build-wheel.sh [MATURIN BUILD FLAGS...]
# maturin (with numpy, pytest and mypy for scripts/test-python.sh) comes from PyPI into a
# virtualenv at ${PERCOLATE_PY_VENV:-~/.cache/percolate/venv};
# the build shares the cargo target directory of scripts/build-deps.sh, so RocksDB is built
# once for the CLI, the tests and the wheel. Wheels land in $CARGO_TARGET_DIR/wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-deps.sh

# The virtualenv that holds maturin, and what scripts/test-python.sh needs beside it.
VENV="${PERCOLATE_PY_VENV:-${PERCOLATE_CACHE:-$HOME/.cache/percolate}/venv}"
PY_REQUIREMENTS=("maturin>=1.9,<2" "numpy>=1.21" "pytest>=7" "mypy>=1.8")
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the Python virtualenv $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 lacks ensurepip without python3-venv; fall back to virtualenv.
    python3 -m pip install --quiet --user virtualenv >/dev/null 2>&1 \
      || python3 -m pip install --quiet --break-system-packages --user virtualenv
    python3 -m virtualenv --quiet "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c 'import maturin, numpy, pytest, mypy' >/dev/null 2>&1; then
  echo "== installing ${PY_REQUIREMENTS[*]} into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
fi

out="$CARGO_TARGET_DIR/wheels"
rm -f "$out"/percolate_core-*.whl
"$VENV/bin/maturin" build --release --locked --out "$out" "$@" >&2
ls -t "$out"/percolate_core-*.whl | head -n1
