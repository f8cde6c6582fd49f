//! Model-based test of the in-memory provider: random operation sequences (every record
//! operation, batches, searches, traversals, scans, transactions that commit, roll back, are
//! dropped or conflict, and reopening the store) must give the same results, errors included,
//! as the in-memory model in `tests/model/mod.rs`. The provider is the reference the disk
//! providers are compared against, so it is held to the same model.
//!
//! A fixed number of cases (`PROPTEST_CASES` overrides it); a failing case is shrunk and saved
//! in `tests/model_mem.proptest-regressions`, which is committed and replayed first on every
//! run. Its first case is a dot-product search with a zero query vector, whose hits at
//! distances -0.0 and 0.0 tie and must come back in id order.

mod model;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn run(chunks: &[Vec<u8>]) -> Result<(), String> {
    model::run_chunks(model::MemBackend::new(), chunks)
}

proptest! {
    #![proptest_config(Config {
        // Nothing touches a disk, so many more sequences fit in the time of the RocksDB run.
        cases: 1024,
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
