//! The vector-precision comparison of `percolate bench --vector-precision`: a RocksDB store
//! opened with one [`VectorPrecision`], one tenant loaded with the bench's vectors, its index
//! built, then recall@10 and search latency through the provider's search (index walk,
//! re-scoring, record reads), the index's bytes and the process's resident memory. Owns this
//! measurement only: the CLI runs each precision in a process of its own so that one
//! precision's freed memory does not hide in another's resident set.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::measure::{Latencies, recall};
use super::workload::{BenchData, row_resource};
use crate::model::{ResourceId, SearchQuery, TenantConfig};
use crate::rocks::{RocksConfig, RocksProvider, VectorPrecision};
use crate::{MemoryEngine, Result};

/// What one precision measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrecisionRow {
    /// `f32`, `f16` or `int8`.
    pub precision: String,
    /// Resources loaded.
    pub resources: usize,
    /// Recall@10 against the exact neighbours, over every query.
    pub recall_at_10: f64,
    /// Search latency (k = 10), median, microseconds.
    pub p50_us: f64,
    /// Search latency (k = 10), 99th percentile, microseconds.
    pub p99_us: f64,
    /// The graph's bytes ([`crate::rocks::IndexStats::bytes`]: vectors and links).
    pub index_bytes: usize,
    /// Bytes the index holds beside the graph ([`crate::rocks::IndexStats::side_bytes`]).
    pub side_bytes: usize,
    /// The process's resident memory after the searches, the tenant open (`VmRSS`).
    pub rss_bytes: u64,
    /// Seconds from the first write until every vector was in the graph.
    pub build_seconds: f64,
}

/// Loads `data`'s rows into a fresh tenant of a store at `root` opened with `precision`,
/// waits for its index, and measures `data`'s queries with beam width `ef`. The base vectors
/// are dropped once written, so the resident memory counts the store and its index, not the
/// bench's copy of the dataset.
///
/// # Errors
/// Any error of the store.
pub async fn measure_precision(
    root: &Path,
    mut data: BenchData,
    precision: VectorPrecision,
    ef: usize,
) -> Result<PrecisionRow> {
    let mut config = RocksConfig::new(root);
    config.vector_precision = precision;
    let engine = MemoryEngine::new(RocksProvider::open(config)?);
    let id = super::bench_tenant("precision")?;
    let dimension = data.dataset.dimension;
    let tenant = engine
        .create_tenant(
            &id,
            TenantConfig { dimension: Some(dimension as u32), ..Default::default() },
        )
        .await?;
    let started = Instant::now();
    let rows: Vec<usize> = (0..data.dataset.len()).collect();
    let mut row_of: HashMap<ResourceId, u32> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(1000) {
        let batch = chunk.iter().map(|&i| row_resource(&data.dataset, i)).collect();
        let created = tenant.batch_create_resources(batch).await?;
        row_of.extend(created.iter().zip(chunk).map(|(r, &i)| (r.id, i as u32)));
    }
    let resources = row_of.len();
    data.dataset.base = Vec::new();
    data.dataset.texts = Vec::new();
    let db = tenant.provider_tenant();
    RocksProvider::wait_for_index(db);
    let build_seconds = started.elapsed().as_secs_f64();

    let queries: Vec<Vec<f32>> = data
        .dataset
        .queries
        .chunks_exact(dimension)
        .take(data.truth.len())
        .map(<[f32]>::to_vec)
        .collect();
    let search = |vector: &Vec<f32>| {
        RocksProvider::search_with_ef(db, &SearchQuery::new(vector.clone(), 10), ef)
    };
    // One pass to warm caches up, then the timed pass that also gives recall.
    for query in &queries {
        search(query)?;
    }
    let mut found = Vec::with_capacity(queries.len());
    let mut times = Vec::with_capacity(queries.len());
    for query in &queries {
        let start = Instant::now();
        let hits = search(query)?;
        times.push(start.elapsed());
        found.push(hits.iter().filter_map(|h| row_of.get(&h.resource.id).copied()).collect());
    }
    let truth: Vec<Vec<u32>> =
        data.truth.iter().map(|t| t.iter().take(10).copied().collect()).collect();
    let latencies = Latencies::new(times);
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let stats = RocksProvider::index_stats(db);
    Ok(PrecisionRow {
        precision: precision.as_str().to_owned(),
        resources,
        recall_at_10: recall(&found, &truth),
        p50_us: micros(latencies.quantile(0.5)),
        p99_us: micros(latencies.quantile(0.99)),
        index_bytes: stats.bytes,
        side_bytes: stats.side_bytes,
        rss_bytes: resident_bytes().unwrap_or(0),
        build_seconds,
    })
}

/// The process's resident memory (`VmRSS` of `/proc/self/status`); `None` off Linux.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The rows as a Markdown table, with each precision's index bytes and resident memory as a
/// ratio of the first row's.
pub fn precision_table(rows: &[PrecisionRow]) -> String {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut out = String::from(
        "| precision | recall@10 | p50 | p99 | index bytes | vs first | RSS | vs first | build |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let first = rows.first();
    for row in rows {
        let ratio = |value: f64, base: f64| if base > 0.0 { value / base } else { f64::NAN };
        out.push_str(&format!(
            "| {} | {:.3} | {:.0} µs | {:.0} µs | {:.1} MiB | {:.2} | {:.0} MiB | {:.2} | {:.1} s |\n",
            row.precision,
            row.recall_at_10,
            row.p50_us,
            row.p99_us,
            mib(row.index_bytes as f64),
            ratio(row.index_bytes as f64, first.map_or(0.0, |f| f.index_bytes as f64)),
            mib(row.rss_bytes as f64),
            ratio(row.rss_bytes as f64, first.map_or(0.0, |f| f.rss_bytes as f64)),
            row.build_seconds,
        ));
    }
    out
}
