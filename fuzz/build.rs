//! Linking a prebuilt RocksDB: when `ROCKSDB_LIB_DIR` points librocksdb-sys at an existing
//! `librocksdb.a` (scripts/fuzz-smoke.sh does, to reuse the main build's), librocksdb-sys no
//! longer compiles RocksDB and so no longer links the C++ standard library it needs.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-lstdc++,--pop-state");
    }
}
