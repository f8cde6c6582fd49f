//! Model-based test of the RocksDB provider: random operation sequences (every record
//! operation, batches, searches, traversals, scans, transactions that commit, roll back, are
//! dropped or conflict, and reopening the store) must give the same results, errors included,
//! as the in-memory model in `tests/model/mod.rs`.
//!
//! A fixed number of cases (`PROPTEST_CASES` overrides it); a failing case is shrunk and saved
//! in `tests/model_rocks.proptest-regressions`, which is committed and replayed first on every
//! run.

mod model;

use model::{Alphabet, Backend};
use percolate::MemoryEngine;
use percolate::rocks::{RocksConfig, RocksProvider};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

struct RocksBackend {
    dir: tempfile::TempDir,
}

impl Backend for RocksBackend {
    type P = RocksProvider;

    async fn open(&mut self) -> MemoryEngine<RocksProvider> {
        // Tiny tenants are searched exactly, so search results can be compared with the model.
        let mut config = RocksConfig::new(self.dir.path());
        config.exact_search_below = 1024;
        MemoryEngine::new(RocksProvider::open(config).expect("open store"))
    }
}

fn run(chunks: &[Vec<u8>]) -> Result<(), String> {
    let plan = model::plan_from_chunks(chunks, Alphabet::FULL);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(async {
            let mut backend = RocksBackend { dir: tempfile::tempdir().expect("temp dir") };
            model::run(&mut backend, &plan).await
        })
        .map_err(|e| format!("{e}\nplan: {plan:#?}"))
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
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
