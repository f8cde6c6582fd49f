//! kNN on PostgreSQL + pgvector HNSW: k = 10 over 100k 384-d vectors, recall@10 against brute
//! force and p50/p99 latency at several `hnsw.ef_search` values, unfiltered and with filters
//! keeping 10% and 1% of the rows; plus the cost of ingesting embeddings through the vector
//! tail, of merging the tail into the graph (one index build, and row by row), and kNN with
//! the last rows still in the tail.
//!
//! ```text
//! bash scripts/with-postgres.sh cargo bench --features postgres --bench pg_vector
//! ```
//!
//! Data: the 50k real MiniLM embeddings of `../shared/data/wordnet-minilm-dev` (or
//! `PERCOLATE_DATASET`) plus 50k noisy copies of them (each row plus Gaussian noise, normalised),
//! and the dataset's real queries; the ground truth is recomputed by brute force over all 100k
//! (and over the filtered subsets) with the contract's cosine distance. Without the dataset the
//! bench uses 100k synthetic clustered vectors. Goal: p50 ≤ 1 ms at recall@10 ≥ 0.95. The
//! criterion measurement runs at the provider's default `ef_search`, whose recall the table
//! above it reports.
//!
//! `PERCOLATE_PG_VECTOR_ROWS` and `PERCOLATE_PG_VECTOR_QUERIES` shrink a run (default 100000
//! and 200); `PERCOLATE_PG_VECTOR_TAIL` is the number of rows left in the tail for the last
//! measurement (default 10000, at most half the rows).

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use percolate::bench::dataset::Dataset;
use percolate::postgres::PgProvider;
use percolate::postgres::{HNSW_EF_CONSTRUCTION, HNSW_M, PgConfig};
use percolate::{
    Filter, MemoryEngine, Metric, NewResource, Provider, SearchQuery, TenantConfig, TenantHandle,
};
use serde_json::json;

const K: usize = 10;
const DIMENSION: usize = 384;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `rows` base vectors and at most `queries` query vectors.
fn vectors(rows: usize, queries: usize) -> Dataset {
    let Some(mut data) = common::real_dataset().filter(|d| d.dimension == DIMENSION) else {
        println!("no real dataset: {rows} synthetic clustered vectors");
        return Dataset::synthetic(rows, queries, DIMENSION, 0, 7);
    };
    let real = data.len();
    data.base.truncate(rows * DIMENSION);
    percolate::bench::pad_with_noisy_copies(&mut data, rows, 0x5EED);
    let queries = data.query_count().min(queries);
    data.queries.truncate(queries * DIMENSION);
    println!("{real} real rows + {} noisy copies, {queries} real queries", rows - real.min(rows));
    data
}

/// Row `i`'s metadata: `decile` keeps 10% per value, `percentile` 1%.
fn resource(i: usize, embedding: &[f32]) -> NewResource {
    let mut r = NewResource::new(format!("row {i}"));
    r.metadata.insert("decile".into(), json!(i % 10));
    r.metadata.insert("percentile".into(), json!(i % 100));
    r.with_embedding(embedding.to_vec())
}

struct Case {
    name: &'static str,
    filter: Option<serde_json::Value>,
    keep: fn(usize) -> bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "unfiltered", filter: None, keep: |_| true },
        Case { name: "filter 10%", filter: Some(json!({"decile": 3})), keep: |i| i % 10 == 3 },
        Case {
            name: "filter 1%",
            filter: Some(json!({"percentile": 42})),
            keep: |i| i % 100 == 42,
        },
    ]
}

/// The server's configuration with `ef_search`, or the provider's default.
fn config(ef_search: Option<usize>) -> Option<PgConfig> {
    let var = |name: &str| {
        std::env::var(format!("PERCOLATE_BENCH_{name}"))
            .or_else(|_| std::env::var(format!("PERCOLATE_TEST_{name}")))
            .ok()
    };
    let mut config = PgConfig::new(var("POSTGRES_URL")?);
    if let Some(ef_search) = ef_search {
        config = config.with_ef_search(ef_search);
    }
    if let Some(admin) = var("POSTGRES_ADMIN_URL") {
        config = config.with_admin_url(admin);
    }
    Some(config)
}

fn pg_vector(c: &mut Criterion) {
    let Some((rt, engine)) = common::postgres_engine() else { return };
    let rows = env_usize("PERCOLATE_PG_VECTOR_ROWS", 100_000);
    let query_count = env_usize("PERCOLATE_PG_VECTOR_QUERIES", 200);
    let data = vectors(rows, query_count);
    let (base, queries) = (&data.base, &data.queries);
    let query_count = queries.len() / DIMENSION;
    let id = common::bench_tenant("pgvector");
    let tenant = rt
        .block_on(engine.create_tenant(
            &id,
            TenantConfig { dimension: Some(DIMENSION as u32), metric: Metric::Cosine },
        ))
        .expect("tenant");

    // The rows but the last `tail_rows` go in first, in batches of 1000 (through the tail),
    // then a flush builds the graph over them; the last rows are written at the end, left in
    // the tail.
    let tail_rows = env_usize("PERCOLATE_PG_VECTOR_TAIL", 10_000).min(rows / 2);
    let graph_rows = rows - tail_rows;
    let write = |from: usize, to: usize, tenant: &TenantHandle<PgProvider>| {
        let mut batch_times = Vec::new();
        for start in (from..to).step_by(1000) {
            let batch: Vec<NewResource> = (start..(start + 1000).min(to))
                .map(|i| resource(i, &base[i * DIMENSION..][..DIMENSION]))
                .collect();
            let t = Instant::now();
            rt.block_on(tenant.batch_create_resources(batch)).expect("ingest");
            batch_times.push(t.elapsed());
        }
        batch_times
    };
    let started = Instant::now();
    let mut batch_times = write(0, graph_rows, &tenant);
    let ingest = started.elapsed();
    let started = Instant::now();
    let flush = engine.provider().flush_vector_index(tenant.provider_tenant());
    rt.block_on(flush).expect("flush");
    let flushed = started.elapsed();
    println!(
        "ingest {graph_rows} x {DIMENSION}-d through the tail: {ingest:.1?} ({:.0} rows/s), batch \
         of 1000 p50 {:.1?} p99 {:.1?}; then the flush (one index build, m={HNSW_M}, \
         ef_construction={HNSW_EF_CONSTRUCTION}): {flushed:.1?}",
        graph_rows as f64 / ingest.as_secs_f64(),
        common::percentile(&mut batch_times, 0.5),
        common::percentile(&mut batch_times, 0.99)
    );

    let truth: Vec<Vec<Vec<usize>>> = cases()
        .iter()
        .map(|case| {
            let keep = |i: usize| i < graph_rows && (case.keep)(i);
            let found = percolate::bench::exact_neighbours(&data, queries, K, &keep);
            found.into_iter().map(|q| q.into_iter().map(|i| i as usize).collect()).collect()
        })
        .collect();
    let row_of = |content: &str| -> usize {
        content.strip_prefix("row ").and_then(|n| n.parse().ok()).expect("row content")
    };

    // Each query is searched twice in turn: from the bench's runtime, whose worker thread runs
    // the connections' tasks (a call hands over to it and back, as in a multi-threaded
    // application), and from a current-thread runtime with an engine of its own, whose
    // connections run on the calling thread (no hand-over, as a synchronous client like psql
    // or psycopg has none). Side by side, a busy machine slows both alike.
    let local = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    println!("\nkNN k={K} over {graph_rows} x {DIMENSION}-d (cosine), {query_count} queries:");
    for (case, truth) in cases().iter().zip(&truth) {
        let filter = case.filter.as_ref().map(|f| Filter::parse(f).expect("filter"));
        for ef in [32, 40, 44, 48, 64] {
            let (Some(config), Some(local_config)) = (config(Some(ef)), config(Some(ef))) else {
                return;
            };
            let engine =
                MemoryEngine::new(rt.block_on(PgProvider::connect(config)).expect("connect"));
            let handle: TenantHandle<PgProvider> = rt.block_on(engine.tenant(&id)).expect("open");
            let local_engine = MemoryEngine::new(
                local.block_on(PgProvider::connect(local_config)).expect("connect"),
            );
            let local_handle: TenantHandle<PgProvider> =
                local.block_on(local_engine.tenant(&id)).expect("open");
            let search = |q: usize, on_local: bool| {
                let mut query = SearchQuery::new(queries[q * DIMENSION..][..DIMENSION].to_vec(), K);
                query.filter = filter.clone();
                if on_local {
                    local.block_on(local_handle.search_resources(&query)).expect("search")
                } else {
                    rt.block_on(handle.search_resources(&query)).expect("search")
                }
            };
            for q in 0..query_count.min(20) {
                // warm-up: connections, prepared statements, buffers
                search(q, false);
                search(q, true);
            }
            let mut times = [Vec::with_capacity(query_count), Vec::with_capacity(query_count)];
            let mut found = 0usize;
            let mut expected = 0usize;
            for (q, truth) in truth.iter().enumerate() {
                for on_local in [q % 2 == 0, q % 2 == 1] {
                    let t = Instant::now();
                    let hits = search(q, on_local);
                    times[usize::from(on_local)].push(t.elapsed());
                    assert_eq!(hits.len(), truth.len(), "{}: k results when k match", case.name);
                    if on_local {
                        expected += truth.len();
                        found += hits
                            .iter()
                            .filter(|h| truth.contains(&row_of(&h.resource.content)))
                            .count();
                    }
                }
            }
            let [mut worker, mut local_times] = times;
            println!(
                "  {:<11} ef_search {ef:>4}: recall@{K} {:.3}  p50 {:>9.2?}  p99 {:>9.2?}  \
                 (from a worker thread: p50 {:>9.2?}  p99 {:>9.2?})",
                case.name,
                found as f64 / expected.max(1) as f64,
                common::percentile(&mut local_times, 0.5),
                common::percentile(&mut local_times, 0.99),
                common::percentile(&mut worker, 0.5),
                common::percentile(&mut worker, 0.99)
            );
        }
    }

    // A criterion measurement at the provider's default, for trend tracking.
    if let Some(config) = config(None) {
        let ef = config.ef_search;
        println!("\ncriterion: unfiltered, the provider's default ef_search {ef}");
        let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config)).expect("connect"));
        let handle: TenantHandle<PgProvider> = rt.block_on(engine.tenant(&id)).expect("open");
        let mut q = 0usize;
        let mut group = c.benchmark_group("postgres/knn");
        group.bench_function(format!("k10_ef{ef}_100k"), |b| {
            b.iter(|| {
                q = (q + 1) % query_count;
                let query = SearchQuery::new(queries[q * DIMENSION..][..DIMENSION].to_vec(), K);
                rt.block_on(handle.search_resources(&query)).expect("search")
            })
        });
        group.finish();
    }

    with_a_tail(&rt, &id, &data, (graph_rows, rows), &write);
}

/// Writes rows `from..to` into a tenant and returns each write's latency.
type RowWriter<'a> =
    dyn Fn(usize, usize, &TenantHandle<PgProvider>) -> Vec<std::time::Duration> + 'a;

/// kNN with rows `from..to` in the tail (background merge off), against brute force over all
/// rows, at the provider's default `ef_search`; then a flush that merges them row by row (the
/// tail is smaller than the graph), for the merge rate.
fn with_a_tail(
    rt: &tokio::runtime::Runtime,
    id: &percolate::TenantId,
    data: &Dataset,
    (from, to): (usize, usize),
    write: &RowWriter<'_>,
) {
    let Some(config) = config(None) else { return };
    let ef = config.ef_search;
    let provider = rt.block_on(PgProvider::connect(config.with_background_merge(false)));
    let engine = MemoryEngine::new(provider.expect("connect"));
    let handle: TenantHandle<PgProvider> = rt.block_on(engine.tenant(id)).expect("open");
    let mut batch_times = write(from, to, &handle);
    let queries = &data.queries;
    let query_count = queries.len() / DIMENSION;
    let truth = percolate::bench::exact_neighbours(data, queries, K, &|i| i < to);
    let row_of = |content: &str| -> usize {
        content.strip_prefix("row ").and_then(|n| n.parse().ok()).expect("row content")
    };
    let search = |q: usize| {
        let query = SearchQuery::new(queries[q * DIMENSION..][..DIMENSION].to_vec(), K);
        rt.block_on(handle.search_resources(&query)).expect("search")
    };
    for q in 0..query_count.min(20) {
        search(q);
    }
    let (mut times, mut found) = (Vec::with_capacity(query_count), 0usize);
    for (q, truth) in truth.iter().enumerate() {
        let t = Instant::now();
        let hits = search(q);
        times.push(t.elapsed());
        found +=
            hits.iter().filter(|h| truth.contains(&(row_of(&h.resource.content) as u32))).count();
    }
    println!(
        "\n{} rows in the tail (batches of 1000 p50 {:.1?}): kNN k={K} ef_search {ef} over {to} \
         rows: recall@{K} {:.3}  p50 {:.2?}  p99 {:.2?}",
        to - from,
        common::percentile(&mut batch_times, 0.5),
        found as f64 / (query_count * K).max(1) as f64,
        common::percentile(&mut times, 0.5),
        common::percentile(&mut times, 0.99)
    );
    let started = Instant::now();
    rt.block_on(engine.provider().flush_vector_index(handle.provider_tenant())).expect("flush");
    let merged = started.elapsed();
    println!(
        "merging them row by row: {merged:.1?} ({:.0} rows/s)",
        (to - from) as f64 / merged.as_secs_f64()
    );
}

criterion_group!(benches, pg_vector);
criterion_main!(benches);
