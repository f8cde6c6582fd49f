//! Every row of the design document's performance table on the RocksDB provider, with the
//! workload of `percolate bench` (see `percolate::bench`): get, put, batches of 1000 (with and
//! without 384-d embeddings), kNN k=10 (unfiltered and with a 10% filter), depth-3 traversal
//! (the dataset's graph and a power-law graph of average out-degree 10), and a week of moments.
//!
//! `cargo bench --bench rows` prints the single-call profile (p50, p99, throughput, recall@10)
//! and then criterion's estimates, which track regressions between runs. The data is
//! `../shared/data/wordnet-minilm-dev` (or `PERCOLATE_DATASET`) when present, else clustered
//! synthetic; `PERCOLATE_BENCH_N` sets the number of resources.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};

fn rocks(c: &mut Criterion) {
    let (_dir, engine) = common::rocks_engine();
    common::rows(c, &common::runtime(), &engine);
}

criterion_group!(benches, rocks);
criterion_main!(benches);
