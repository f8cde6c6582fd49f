//! The conformance suite against the RocksDB provider, each case on its own temporary store.

#[macro_use]
mod conformance;

use percolate::MemoryEngine;
use percolate::rocks::{RocksConfig, RocksProvider};

struct RocksHarness {
    dir: tempfile::TempDir,
    engine: Option<MemoryEngine<RocksProvider>>,
}

fn open(dir: &std::path::Path) -> MemoryEngine<RocksProvider> {
    MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir)).expect("open store"))
}

impl conformance::Harness for RocksHarness {
    type P = RocksProvider;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Some(open(dir.path()));
        Self { dir, engine }
    }

    fn engine(&self) -> &MemoryEngine<RocksProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // Dropping the engine closes every tenant database; a new one reads them from disk.
        self.engine = None;
        self.engine = Some(open(self.dir.path()));
    }
}

conformance_suite!(RocksHarness);
