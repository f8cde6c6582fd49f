//! The conformance suite against the PostgreSQL provider.
//!
//! Needs a server: run through `scripts/with-postgres.sh`, which exports
//! `PERCOLATE_TEST_POSTGRES_URL` (the application role) and
//! `PERCOLATE_TEST_POSTGRES_ADMIN_URL` (the owner role). Without them every test fails: a
//! missing server must never look like a pass.
#![cfg(feature = "postgres")]

#[macro_use]
mod conformance;

use percolate::MemoryEngine;
use percolate::postgres::{PgConfig, PgProvider};

struct PgHarness {
    engine: Option<MemoryEngine<PgProvider>>,
}

fn config() -> PgConfig {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PERCOLATE_TEST_POSTGRES_URL is not set: run the PostgreSQL tests through \
             scripts/with-postgres.sh (e.g. scripts/with-postgres.sh cargo test --release \
             --features postgres --test postgres)"
        )
    });
    let config = PgConfig::new(url);
    match std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        Ok(admin) => config.with_admin_url(admin),
        Err(_) => config,
    }
}

async fn open() -> MemoryEngine<PgProvider> {
    let provider = PgProvider::connect(config()).await.unwrap_or_else(|e| panic!("connect: {e:?}"));
    MemoryEngine::new(provider)
}

impl conformance::Harness for PgHarness {
    type P = PgProvider;

    async fn new() -> Self {
        Self { engine: Some(open().await) }
    }

    fn engine(&self) -> &MemoryEngine<PgProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // A new provider with new pools; the data is on the server.
        self.engine = None;
        self.engine = Some(open().await);
    }
}

conformance_suite!(PgHarness);
