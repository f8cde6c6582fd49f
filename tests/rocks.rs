//! The conformance suite against the RocksDB provider, each case on its own temporary store:
//! once on plaintext tenants and once on tenants encrypted at rest (a master key configured).

use percolate::MemoryEngine;
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};

struct RocksHarness<const ENCRYPTED: bool> {
    dir: tempfile::TempDir,
    engine: Option<MemoryEngine<RocksProvider>>,
}

fn open(dir: &std::path::Path, encrypted: bool) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    if encrypted {
        config.master_key = Some(MasterKey::from_bytes([0x5a; 32]));
    }
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

impl<const ENCRYPTED: bool> percolate::testing::Harness for RocksHarness<ENCRYPTED> {
    type P = RocksProvider;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Some(open(dir.path(), ENCRYPTED));
        Self { dir, engine }
    }

    fn engine(&self) -> &MemoryEngine<RocksProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // Dropping the engine closes every tenant database; a new one reads them from disk.
        self.engine = None;
        self.engine = Some(open(self.dir.path(), ENCRYPTED));
    }
}

mod plaintext {
    percolate::conformance_suite!(super::RocksHarness<false>);
}

mod encrypted {
    percolate::conformance_suite!(super::RocksHarness<true>);
}
