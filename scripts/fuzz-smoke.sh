#!/usr/bin/env bash
# Builds the fuzz crate (fuzz/) on stable and runs every target briefly from its committed seeds:
#   bash scripts/fuzz-smoke.sh [seconds per target, default 20] [target ...]
# A long session is the same command with more seconds and one target (see README, "Fuzzing").
#
# cargo-fuzz builds with its own RUSTFLAGS into its own target directory, where librocksdb-sys
# would compile RocksDB again (15+ minutes on two cores). So, when the main build has already
# compiled the same librocksdb-sys version, its librocksdb.a is linked instead (ROCKSDB_LIB_DIR,
# ROCKSDB_STATIC); otherwise RocksDB is built once and cached outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
source scripts/build-deps.sh
main_target="$CARGO_TARGET_DIR"
export PATH="$HOME/.cache/percolate/tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz into ~/.cache/percolate/tools" >&2
  cargo install cargo-fuzz --locked --root "$HOME/.cache/percolate/tools"
fi

# The fuzz crate resolves the same versions as the main crate: its lock file (not committed)
# starts as a copy of the main one, and cargo adds the fuzz-only crates to it.
cp Cargo.lock fuzz/Cargo.lock

version_of() { grep -A1 '^name = "librocksdb-sys"$' "$1" | sed -n 's/^version = "\(.*\)"$/\1/p'; }
prebuilt=""
if [ "$(version_of Cargo.lock)" = "$(version_of fuzz/Cargo.lock)" ]; then
  # The newest librocksdb.a of the main build (built by `cargo test --release` before this).
  prebuilt="$(ls -t "$main_target"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)"
fi
if [ -n "$prebuilt" ]; then
  echo "== linking the main build's RocksDB: $prebuilt"
  export ROCKSDB_LIB_DIR="$(dirname "$prebuilt")" ROCKSDB_STATIC=1
else
  echo "== no prebuilt RocksDB of the same version: building it (cached in ~/.cache/percolate/fuzz-target)"
fi

fuzz_target="$HOME/.cache/percolate/fuzz-target"
cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
echo "== cargo fuzz build (stable, no sanitizer)"
cargo fuzz build --sanitizer none --target-dir "$fuzz_target" 2>&1 | tail -n 3
for target in "${targets[@]}"; do
  work="$(mktemp -d)"
  echo "== fuzz $target for ${seconds}s (seeds: fuzz/corpus/$target)"
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  log="$work.log"
  set +e
  cargo fuzz run --sanitizer none --target-dir "$fuzz_target" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY)' "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E 'panicked|memory allocation|Test unit written' "$log" >&2 || tail -n 30 "$log" >&2
  fi
  rm -f "$log"
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); the crashing input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
echo "== fuzz smoke passed: ${targets[*]}"
