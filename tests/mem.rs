//! The conformance suite against the in-memory provider. Every case gets its own store;
//! "reopening" builds a new engine on a clone of the provider, which shares the store.

use percolate::MemoryEngine;
use percolate::mem::MemProvider;

struct MemHarness {
    provider: MemProvider,
    engine: Option<MemoryEngine<MemProvider>>,
}

impl percolate::testing::Harness for MemHarness {
    type P = MemProvider;

    async fn new() -> Self {
        let provider = MemProvider::new();
        let engine = Some(MemoryEngine::new(provider.clone()));
        Self { provider, engine }
    }

    fn engine(&self) -> &MemoryEngine<MemProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // The old engine and its provider clone go first; the store lives on in `provider`.
        self.engine = None;
        self.engine = Some(MemoryEngine::new(self.provider.clone()));
    }
}

percolate::conformance_suite!(MemHarness);
