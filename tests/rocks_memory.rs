//! RocksDB-specific scenarios: the memory budget an app sets (one block cache and one
//! write-buffer budget for every open tenant) and what `release_memory` gives back.

use std::time::{Duration, Instant};

use percolate::rocks::{MemoryUsage, RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, TenantConfig, TenantHandle, TenantId};

const DIMENSION: usize = 96;

fn small_budget(dir: &std::path::Path) -> RocksConfig {
    let mut config = RocksConfig::mobile(dir);
    config.block_cache_bytes = 2 << 20;
    config.write_buffer_bytes = 1 << 20;
    config.write_buffer_budget_bytes = 3 << 20;
    config
}

fn embedding(seed: usize) -> Vec<f32> {
    (0..DIMENSION).map(|d| ((seed * 31 + d * 7) % 97) as f32 + 1.0).collect()
}

/// Writes `count` resources with embeddings (about 0.5 KB each) in batches of 100.
async fn fill(tenant: &TenantHandle<RocksProvider>, count: usize) -> percolate::Result<()> {
    for start in (0..count).step_by(100) {
        let batch: Vec<NewResource> = (start..(start + 100).min(count))
            .map(|i| NewResource::new(format!("resource {i}")).with_embedding(embedding(i)))
            .collect();
        tenant.batch_create_resources(batch).await?;
    }
    Ok(())
}

/// What the provider holds once its background flushes are done: polled until two readings
/// 200 ms apart agree, for at most 30 s.
fn settled(provider: &RocksProvider) -> MemoryUsage {
    let started = Instant::now();
    let mut last = provider.memory_usage();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let usage = provider.memory_usage();
        if usage == last || started.elapsed() > Duration::from_secs(30) {
            return usage;
        }
        last = usage;
    }
}

/// Writes 4,000 resources to each of six tenants, a batch of 100 to each in turn, and returns
/// what their memtables hold at the end.
async fn memtables_after_writes(budget: usize) -> percolate::Result<usize> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = small_budget(dir.path());
    config.write_buffer_budget_bytes = budget;
    let engine = MemoryEngine::new(RocksProvider::open(config)?);
    let mut tenants = Vec::new();
    for i in 0..6 {
        let id = TenantId::new(format!("t{i}"))?;
        tenants.push(engine.create_tenant(&id, TenantConfig::default()).await?);
    }
    for round in 0..40 {
        for tenant in &tenants {
            let batch: Vec<NewResource> = (round * 100..(round + 1) * 100)
                .map(|i| NewResource::new(format!("resource {i}")).with_embedding(embedding(i)))
                .collect();
            tenant.batch_create_resources(batch).await?;
        }
    }
    // Flushes the writes asked for finish in the background.
    let usage = settled(engine.provider());
    for (i, tenant) in tenants.iter().enumerate() {
        let scanned = tenant.scan(percolate::RecordKind::Resource, None, 10_000).await?;
        assert_eq!(scanned.len(), 4_000, "tenant t{i} lost writes to its flushes");
    }
    Ok(usage.write_buffers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_buffer_budget_bounds_the_memtables_of_every_open_tenant() -> percolate::Result<()>
{
    // RocksDB enforces the budget on writes: a write that finds every tenant's memtables
    // together over it flushes the writing tenant's. Tenants written in turn therefore end
    // within the budget, plus the history optimistic transactions keep (a quarter memtable
    // for each of the three column families written, in each of the six tenants: records,
    // embeddings and the text index's pending entries).
    let budget = 3 << 20;
    let within = memtables_after_writes(budget).await?;
    let slack = 6 * 3 * (1 << 20) / 4;
    assert!(within <= budget + slack, "memtables hold {within} bytes over a budget of {budget}");
    // The same writes with a budget that never binds keep far more in memory: the budget is
    // what bounded them.
    let unbounded = memtables_after_writes(1 << 30).await?;
    assert!(
        unbounded > within * 3 / 2,
        "{unbounded} bytes unbounded against {within} within the budget"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_tenant_larger_than_the_cache_stay_within_it() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = small_budget(dir.path());
    let capacity = config.block_cache_bytes;
    let engine = MemoryEngine::new(RocksProvider::open(config)?);
    let tenant = engine.create_tenant(&TenantId::new("big")?, TenantConfig::default()).await?;
    fill(&tenant, 12_000).await?;
    engine.release_memory().await?; // everything on disk: reads go through the cache
    let ids: Vec<_> = tenant
        .scan(percolate::RecordKind::Resource, None, 12_000)
        .await?
        .into_iter()
        .filter_map(|record| match record {
            percolate::Record::Resource(resource) => Some(resource.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 12_000);
    for id in ids {
        tenant.get_resource(id).await?;
    }
    let usage = engine.provider().memory_usage();
    assert!(
        usage.block_cache <= capacity + usage.block_cache_pinned,
        "the block cache holds {} bytes ({} pinned), over its capacity of {capacity}",
        usage.block_cache,
        usage.block_cache_pinned
    );
    assert!(usage.block_cache > 0, "reads of flushed data went through the cache");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_memory_flushes_snapshots_closes_idle_tenants_and_empties_the_cache()
-> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path()))?);
    let held = engine.create_tenant(&TenantId::new("held")?, TenantConfig::default()).await?;
    fill(&held, 3_000).await?;
    let idle = engine.create_tenant(&TenantId::new("idle")?, TenantConfig::default()).await?;
    fill(&idle, 500).await?;
    drop(idle);
    for i in (0..3_000).step_by(10) {
        held.search_resources(&percolate::SearchQuery::new(embedding(i), 5)).await?;
    }
    // The graph holds every point and its snapshot is written; then a few more embeddings,
    // far too few for the indexer to write another snapshot on its own.
    RocksProvider::wait_for_index(held.provider_tenant());
    RocksProvider::write_snapshot(held.provider_tenant())?;
    let snapshot = dir.path().join("held").join("vectors.hnsw");
    let indexed = std::fs::metadata(&snapshot).expect("the snapshot").len();
    let extra: Vec<NewResource> = (3_000..3_020)
        .map(|i| NewResource::new(format!("extra {i}")).with_embedding(embedding(i)))
        .collect();
    held.batch_create_resources(extra).await?;
    RocksProvider::wait_for_index(held.provider_tenant());
    assert_eq!(std::fs::metadata(&snapshot).expect("snapshot").len(), indexed);

    let tables = |tenant: &str| {
        std::fs::read_dir(dir.path().join(tenant))
            .expect("tenant dir")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".sst"))
            .count()
    };
    let before = engine.provider().memory_usage();
    assert!(before.write_buffers > 1 << 20, "the writes sit in memtables: {before:?}");
    let tables_before = tables("held");
    assert_eq!(before.open_tenants, 2);

    engine.release_memory().await?;
    let after = engine.provider().memory_usage();
    assert_eq!(after.open_tenants, 1, "the idle tenant is closed, the held one kept: {after:?}");
    assert!(tables("held") > tables_before, "the held tenant's memtables are flushed to tables");
    // The flushed memtables of an open tenant stay as the history its optimistic transactions
    // check conflicts against (see `RocksConfig`), until newer writes replace them.
    assert!(
        after.write_buffers < before.write_buffers,
        "memtables: {} bytes before, {} after",
        before.write_buffers,
        after.write_buffers
    );
    assert!(
        after.block_cache <= after.block_cache_pinned,
        "only pinned blocks stay cached: {after:?}"
    );
    let written = std::fs::metadata(&snapshot).expect("snapshot");
    assert!(written.len() > indexed, "release_memory wrote the snapshot of the 20 new points");
    let stats_before = RocksProvider::index_stats(held.provider_tenant());
    assert_eq!(stats_before.pending, 0, "every embedding is in the graph: {stats_before:?}");

    // With no handle left, release_memory closes every tenant and gives all of it back.
    drop(held);
    engine.release_memory().await?;
    let closed = engine.provider().memory_usage();
    assert_eq!((closed.open_tenants, closed.write_buffers, closed.vector_indexes), (0, 0, 0));

    // The snapshot release_memory wrote is complete: closing wrote no other (the graph did
    // not change since), and the reopened index takes every point from it, as it would after
    // a kill.
    drop(engine);
    let closed = std::fs::metadata(&snapshot).expect("snapshot");
    assert_eq!(
        (closed.modified().ok(), closed.len()),
        (written.modified().ok(), written.len()),
        "closing wrote a newer snapshot: release_memory's was stale"
    );
    let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path()))?);
    let held = engine.tenant(&TenantId::new("held")?).await?;
    let stats = RocksProvider::index_stats(held.provider_tenant());
    assert_eq!(stats.restored, stats_before.graph, "reopened from the snapshot: {stats:?}");
    assert_eq!(held.scan(percolate::RecordKind::Resource, None, 5_000).await?.len(), 3_020);
    Ok(())
}
