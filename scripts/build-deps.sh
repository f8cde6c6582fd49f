#!/usr/bin/env bash
# Sourced by scripts/run.sh and scripts/test.sh: installs what building percolate needs on a
# fresh Debian 12 machine (clang and libclang for librocksdb-sys' bindgen) and points cargo at
# a target directory outside the clone, so every clone on the machine shares one build of
# RocksDB (over ten minutes cold on two cores).
if ! command -v clang >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  echo "== installing clang and libclang-dev (needed to build librocksdb-sys)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clang libclang-dev >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/percolate/target}"
