//! Every row of the design document's performance table on the PostgreSQL provider: the same
//! generic `common::rows` as `benches/rows.rs`, on the server of `scripts/with-postgres.sh`:
//!
//! ```text
//! bash scripts/with-postgres.sh cargo bench --features postgres --bench rows_postgres
//! ```
//!
//! `PERCOLATE_BENCH_N` sets the number of resources (pgvector maintains its HNSW index in
//! every write, so loading 50k embeddings takes about a minute).

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};

fn postgres(c: &mut Criterion) {
    let Some((rt, engine)) = common::postgres_engine() else { return };
    common::rows(c, &rt, &engine);
}

criterion_group!(benches, postgres);
criterion_main!(benches);
