//! The conformance suite against the RocksDB provider, each case on its own temporary store:
//! on plaintext tenants and on tenants encrypted at rest (a master key configured), with the
//! vector index in f32, and again with it in f16 (plaintext) and int8 (encrypted). The
//! suite's tenants are small, so an int8 index keeps f32 until it trains; f16 is compact from
//! the first point, which puts every search path through the re-scoring.

use percolate::MemoryEngine;
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider, VectorPrecision};

/// `PRECISION`: 0 f32, 1 f16, 2 int8.
struct RocksHarness<const ENCRYPTED: bool, const PRECISION: u8 = 0> {
    dir: tempfile::TempDir,
    engine: Option<MemoryEngine<RocksProvider>>,
}

fn open(dir: &std::path::Path, encrypted: bool, precision: u8) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.vector_precision = match precision {
        1 => VectorPrecision::F16,
        2 => VectorPrecision::Int8,
        _ => VectorPrecision::F32,
    };
    if encrypted {
        config.master_key = Some(MasterKey::from_bytes([0x5a; 32]));
    }
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

impl<const ENCRYPTED: bool, const PRECISION: u8> percolate::testing::Harness
    for RocksHarness<ENCRYPTED, PRECISION>
{
    type P = RocksProvider;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Some(open(dir.path(), ENCRYPTED, PRECISION));
        Self { dir, engine }
    }

    fn engine(&self) -> &MemoryEngine<RocksProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // Dropping the engine closes every tenant database; a new one reads them from disk.
        self.engine = None;
        self.engine = Some(open(self.dir.path(), ENCRYPTED, PRECISION));
    }
}

mod plaintext {
    percolate::conformance_suite!(super::RocksHarness<false>);
}

mod encrypted {
    percolate::conformance_suite!(super::RocksHarness<true>);
}

mod plaintext_f16 {
    percolate::conformance_suite!(super::RocksHarness<false, 1>);
}

mod encrypted_int8 {
    percolate::conformance_suite!(super::RocksHarness<true, 2>);
}
