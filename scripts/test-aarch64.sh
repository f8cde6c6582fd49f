#!/usr/bin/env bash
# The aarch64 tests, on an x86-64 Debian 12 machine:
#   bash scripts/test-aarch64.sh
# Cross-builds percolate for aarch64-unknown-linux-gnu (GCC's cross toolchain compiles RocksDB's
# C++ and ring's assembly, clang's bindgen reads the aarch64 headers), lints it with warnings as
# errors, and runs the library's unit tests (the NEON distance kernels among them), the RocksDB
# conformance suite and the in-memory provider's suite under qemu's user-mode emulator.
# Installs the Rust target, the cross compiler and qemu if they are missing.
#
# The build lives in its own target directory outside the clone (RocksDB's C++ for aarch64
# takes about 18 minutes cold on two cores; a warm directory rebuilds only percolate).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_AARCH64:-$HOME/.cache/percolate/target-aarch64}"
source scripts/build-deps.sh

if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  echo "== installing g++-aarch64-linux-gnu and qemu-user-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq g++-aarch64-linux-gnu qemu-user-static >/dev/null
fi
if ! rustup target list --installed | grep -qx "$target"; then
  echo "== rustup target add $target" >&2
  rustup target add "$target"
fi

# cc-rs (librocksdb-sys, ring) and rustc's linker take the cross tools by target name; bindgen
# gets the sysroot so it parses aarch64's libc headers rather than the host's.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot"
# Test binaries run under qemu, which finds the aarch64 loader and libstdc++ under the sysroot.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $sysroot"

# Release, as in scripts/test.sh (and the build scripts' output, RocksDB's C++ among it, is
# shared by the lint and the tests). `testing` brings the conformance suites.
cargo_flags=(--release --locked --target "$target" --features testing)

# Every feature but `python` (PyO3 would need a Python for the target): code that compiles
# only on x86-64 must leave no dead code or unused import behind on aarch64.
echo "== cargo clippy --target $target, features cli,testing,postgres (warnings are errors)"
cargo clippy "${cargo_flags[@]}" --features cli,postgres --all-targets -- -D warnings
echo "== tests under qemu-aarch64: unit (NEON kernels among them), RocksDB and in-memory suites"
cargo test "${cargo_flags[@]}" --lib --test rocks --test mem
