//! The soak on RocksDB: 16 tasks on one tenant for `PERCOLATE_SOAK_SECONDS` (default 20),
//! then the end state compared with every acknowledged call (`tests/load/mod.rs`). Prints
//! calls per second and p50/p99 per kind of call: a measurement, not an assertion.

mod load;

use percolate::MemoryEngine;
use percolate::rocks::{RocksConfig, RocksProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_one_rocksdb_tenant_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = RocksConfig::new(dir.path());
    // The graph, not an exact scan, answers searches from the first embedding on.
    config.exact_search_below = 0;
    let engine = MemoryEngine::new(RocksProvider::open(config).expect("open store"));
    load::run(&engine, load::duration(20)).await;
}
