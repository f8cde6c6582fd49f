//! The conformance suite against the RocksDB provider with encryption at rest: every case on
//! its own store, every tenant sealed under a data key wrapped by a raw master key.

#[macro_use]
mod conformance;

use percolate::MemoryEngine;
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};

struct EncryptedHarness {
    dir: tempfile::TempDir,
    engine: Option<MemoryEngine<RocksProvider>>,
}

fn open(dir: &std::path::Path) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.master_key = Some(MasterKey::from_bytes([0x5a; 32]));
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

impl conformance::Harness for EncryptedHarness {
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
        self.engine = None;
        self.engine = Some(open(self.dir.path()));
    }
}

conformance_suite!(EncryptedHarness);
