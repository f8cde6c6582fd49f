//! Model-based test of the PostgreSQL provider: the random operation sequences of
//! `tests/model/mod.rs` against a real server must agree with the in-memory model. Reopen is a
//! new `PgProvider` (new pools) on the same server.
//!
//! Needs a server: run through `scripts/with-postgres.sh`, which exports
//! `PERCOLATE_TEST_POSTGRES_URL` and `PERCOLATE_TEST_POSTGRES_ADMIN_URL`. Without them the test
//! fails: a missing server must never look like a pass.
//!
//! Failing cases proptest finds are saved in `tests/model_postgres.proptest-regressions`,
//! which is committed and replayed first on every run. Its first case is a float property of
//! 1.8643341586470144e18 that `jsonb` handed back as an integer (see `src/postgres/json.rs`).
#![cfg(feature = "postgres")]

mod model;

use model::Backend;
use percolate::MemoryEngine;
use percolate::postgres::{PgConfig, PgProvider};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

struct PgBackend;

fn config() -> PgConfig {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PERCOLATE_TEST_POSTGRES_URL is not set: run the PostgreSQL tests through \
             scripts/with-postgres.sh (e.g. scripts/with-postgres.sh cargo test --release \
             --features postgres --test model_postgres)"
        )
    });
    let config = PgConfig::new(url);
    match std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        Ok(admin) => config.with_admin_url(admin),
        Err(_) => config,
    }
}

impl Backend for PgBackend {
    type P = PgProvider;

    async fn open(&mut self) -> MemoryEngine<PgProvider> {
        let provider =
            PgProvider::connect(config()).await.unwrap_or_else(|e| panic!("connect: {e:?}"));
        MemoryEngine::new(provider)
    }
}

fn run(chunks: &[Vec<u8>]) -> Result<(), String> {
    // Text with NUL is in the plan: the engine rejects it as invalid before any provider sees
    // it (PostgreSQL text and jsonb cannot hold NUL), so both providers agree with the model.
    model::run_chunks(PgBackend, chunks)
}

proptest! {
    #![proptest_config(Config {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    })]

    #[test]
    fn random_operation_sequences_agree_with_the_model(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 24), 1..80)
    ) {
        if let Err(e) = run(&chunks) {
            prop_assert!(false, "{}", e);
        }
    }
}
