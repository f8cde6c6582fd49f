//! The cost of reading beside a writer: a read-only provider opens a tenant of 10,000 384-d
//! embeddings from the writer's index snapshot, then catches up with 100 new embeddings, then
//! with nothing new. `cargo bench --features cli --bench reader`; figures in docs/mobile.md.

use std::time::Instant;

use percolate::bench::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, SearchQuery, TenantConfig, TenantId};

const N: usize = 10_000;
const D: usize = 384;

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::Builder::new().prefix("percolate-reader-bench").tempdir().expect("temp");
    let id = TenantId::new("bench").expect("id");
    let mut writer_config = RocksConfig::new(dir.path());
    writer_config.exact_search_below = 0;
    let writer = MemoryEngine::new(RocksProvider::open(writer_config).expect("writer"));
    let config = TenantConfig { dimension: Some(D as u32), ..TenantConfig::default() };
    let wt = writer.create_tenant(&id, config).await.expect("tenant");
    let data = Dataset::synthetic(N + 100, 0, D, 0, 7);
    let batch = |range: std::ops::Range<usize>| {
        range
            .map(|i| NewResource::new(format!("resource {i}")).with_embedding(data.row(i).to_vec()))
            .collect::<Vec<_>>()
    };
    for start in (0..N).step_by(1000) {
        wt.batch_create_resources(batch(start..start + 1000)).await.expect("batch");
    }
    RocksProvider::wait_for_index(wt.provider_tenant());
    RocksProvider::write_snapshot(wt.provider_tenant()).expect("snapshot");

    let started = Instant::now();
    let mut reader_config = RocksConfig::new(dir.path());
    reader_config.read_only = true;
    let reader = MemoryEngine::new(RocksProvider::open(reader_config).expect("reader"));
    let rt = reader.tenant(&id).await.expect("reader tenant");
    let opened = started.elapsed();
    let added = wt.batch_create_resources(batch(N..N + 100)).await.expect("batch");
    let started = Instant::now();
    let moved = reader.provider().catch_up().expect("catch up");
    let caught_up = started.elapsed();
    let started = Instant::now();
    let idle_moved = reader.provider().catch_up().expect("catch up");
    let idle = started.elapsed();
    let hits =
        rt.search_resources(&SearchQuery::new(data.row(N + 50).to_vec(), 1)).await.expect("search");
    let found = hits.first().map(|hit| hit.resource.id) == Some(added[50].id);
    println!(
        "reader open {opened:?} (restored {} points from the snapshot); catch-up with 100 new \
         of {N} x {D}-d: {caught_up:?} ({moved} tenant moved); catch-up with nothing new: \
         {idle:?} ({idle_moved} moved); a new embedding found after catch-up: {found}",
        RocksProvider::index_stats(rt.provider_tenant()).restored
    );
}
