//! Operation sequences decoded from the fuzz input (with `arbitrary`) run against the RocksDB
//! provider on a temporary directory and against the in-memory model of `tests/model/mod.rs`
//! (the model the proptest suites use); every result, errors included, must agree.
#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use model::{Alphabet, Choose};

impl Choose for Unstructured<'_> {
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 { 0 } else { self.choose_index(n).unwrap_or(0) }
    }
}

/// The most ops one input runs: enough for interesting histories, few enough to stay fast.
const MAX_OPS: usize = 64;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Unstructured::new(data);
    let config = model::config(&mut choices);
    let mut ops = Vec::new();
    while !choices.is_empty() && ops.len() < MAX_OPS {
        ops.push(model::op(&mut choices, Alphabet::FULL));
    }
    let plan = model::Plan { config, ops };
    let result = runtime().block_on(async {
        let mut backend = model::RocksBackend::new();
        model::run(&mut backend, &plan).await
    });
    if let Err(disagreement) = result {
        panic!("provider and model disagree: {disagreement}");
    }
});
