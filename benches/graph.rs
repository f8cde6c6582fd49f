//! Depth-3 traversal on RocksDB, alone: the p50 and the p99 over many start entities, and
//! how many entities a start reaches, on the dataset's graph (WordNet pointers, when the
//! shared dataset is present) and on a power-law graph of 100,000 entities and average
//! out-degree 3 (`PERCOLATE_GRAPH_NODES`, `PERCOLATE_GRAPH_DEGREE`).
//!
//! `cargo bench --bench graph --features cli`. Loading takes a while, so the store can be kept
//! between runs: `PERCOLATE_GRAPH_STORE=DIR` loads it once into DIR and later runs reuse it
//! (compare two builds by alternating their runs, each on a store of its own, in one hour).
//! Without it the store is a temporary directory, removed at the end.

#![allow(missing_docs)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use percolate::bench::dataset::Dataset;
use percolate::model::{EntityId, NewEdge, NewEntity, Record, RecordKind, TenantId, TraverseQuery};
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{Error, MemoryEngine, TenantConfig, TenantHandle};

/// Starts measured per graph (spread over the entities with out-edges).
const STARTS: usize = 2000;
/// Passes over the starts; the first warms the cache and is not counted.
const PASSES: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes `nodes` entities and `edges` between them in batches of 1000; returns the ids.
async fn load(
    tenant: &TenantHandle<RocksProvider>,
    label: &str,
    nodes: usize,
    edges: &[(u32, u32)],
) -> percolate::Result<Vec<EntityId>> {
    let mut ids = Vec::with_capacity(nodes);
    let all: Vec<usize> = (0..nodes).collect();
    for chunk in all.chunks(1000) {
        let batch = chunk.iter().map(|i| NewEntity::new(format!("{label} {i}"), "node")).collect();
        ids.extend(tenant.batch_create_entities(batch).await?.into_iter().map(|e| e.id));
    }
    for chunk in edges.chunks(1000) {
        let batch = chunk
            .iter()
            .map(|&(from, to)| NewEdge::new(ids[from as usize], ids[to as usize], "link"))
            .collect();
        tenant.batch_create_edges(batch).await?;
    }
    Ok(ids)
}

/// The graph's tenant, loaded on first use; the start entities of its traversals.
async fn graph(
    engine: &MemoryEngine<RocksProvider>,
    name: &str,
    nodes: usize,
    edges: &[(u32, u32)],
) -> percolate::Result<Vec<EntityId>> {
    let id = TenantId::new(name)?;
    let tenant = match engine.tenant(&id).await {
        Ok(tenant) => tenant,
        Err(Error::NotFound { .. }) => {
            let started = Instant::now();
            let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
            load(&tenant, name, nodes, edges).await?;
            println!(
                "{name}: loaded {nodes} entities, {} edges in {:.1} s",
                edges.len(),
                started.elapsed().as_secs_f64()
            );
            tenant
        }
        Err(e) => return Err(e),
    };
    // Entities are listed in creation order, which is the order of the load.
    let mut ids: Vec<EntityId> = Vec::with_capacity(nodes);
    loop {
        let after = ids.last().map(|id| id.as_uuid());
        let page = tenant.scan(RecordKind::Entity, after, 10_000).await?;
        if page.is_empty() {
            break;
        }
        ids.extend(page.into_iter().filter_map(|record| match record {
            Record::Entity(entity) => Some(entity.id),
            _ => None,
        }));
    }
    let step = (edges.len() / STARTS).max(1);
    Ok(edges.iter().step_by(step).map(|&(from, _)| ids[from as usize]).collect())
}

fn percentile(times: &mut [Duration], q: f64) -> Duration {
    common::percentile(times, q)
}

/// CPU time this thread has used. On a busy machine a call's wall time includes the time the
/// scheduler gave other processes; its CPU time does not, so it compares builds in a noisy hour.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to a local.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn micros(times: &mut [Duration], q: f64) -> f64 {
    percentile(times, q).as_secs_f64() * 1e6
}

async fn measure(engine: &MemoryEngine<RocksProvider>, name: &str, starts: &[EntityId]) {
    let tenant = engine.tenant(&TenantId::new(name).expect("tenant id")).await.expect("tenant");
    let mut wall = Vec::with_capacity(starts.len() * (PASSES - 1));
    let mut cpu = Vec::with_capacity(starts.len() * (PASSES - 1));
    let mut reached = 0usize;
    for pass in 0..PASSES {
        for &start in starts {
            let query = TraverseQuery::new(start, 3);
            let (began, began_cpu) = (Instant::now(), thread_cpu_time());
            let found = tenant.traverse(&query).await.expect("traverse");
            let (took, took_cpu) = (began.elapsed(), thread_cpu_time() - began_cpu);
            if pass > 0 {
                wall.push(took);
                cpu.push(took_cpu);
                reached += found.len();
            }
        }
    }
    let calls = wall.len();
    println!(
        "{name}: traverse_depth3 wall p50 {:.1} µs, p99 {:.1} µs; CPU p50 {:.1} µs, p99 {:.1} µs, \
         max {:.1} µs; reaches {:.1} on average ({calls} calls)",
        micros(&mut wall, 0.5),
        micros(&mut wall, 0.99),
        micros(&mut cpu, 0.5),
        micros(&mut cpu, 0.99),
        micros(&mut cpu, 1.0),
        reached as f64 / calls as f64,
    );
}

fn main() {
    let kept = std::env::var_os("PERCOLATE_GRAPH_STORE").map(PathBuf::from);
    let temporary = tempfile::tempdir().expect("temp dir");
    let root = kept.unwrap_or_else(|| temporary.path().to_path_buf());
    let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(&root)).expect("open"));
    let runtime = common::runtime();
    runtime.block_on(async {
        if let Some(data) = common::real_dataset().filter(|d| !d.edges.is_empty()) {
            let starts = graph(&engine, "wordnet", data.len(), &data.edges).await.expect("load");
            measure(&engine, "wordnet", &starts).await;
        }
        let nodes = env_usize("PERCOLATE_GRAPH_NODES", 100_000);
        let degree = env_usize("PERCOLATE_GRAPH_DEGREE", 3);
        let powerlaw = Dataset::synthetic(nodes, 0, 1, degree, 7);
        let name = format!("powerlaw-{nodes}-{degree}");
        let starts = graph(&engine, &name, powerlaw.len(), &powerlaw.edges).await.expect("load");
        measure(&engine, &name, &starts).await;
    });
}
