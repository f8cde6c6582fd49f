//! Export and import throughput on a 100k-resource tenant with 384-d embeddings. Ignored by
//! default (it writes ~0.5 GB); run it with
//!
//! ```sh
//! cargo test --release --test portable_throughput -- --ignored --nocapture
//! scripts/with-postgres.sh cargo test --release --features postgres \
//!     --test portable_throughput -- --ignored --nocapture
//! ```
//!
//! `PERCOLATE_THROUGHPUT_RESOURCES` changes the size. `PERCOLATE_THROUGHPUT_SOURCE=<dir>` keeps
//! the filled RocksDB source store there and reuses it on later runs (its index snapshot is
//! read back, so they skip the fill and the wait for the HNSW build): for repeated measurements.

use std::path::Path;
use std::time::Instant;

use percolate::portable::{self, Progress};
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, Provider, TenantConfig, TenantId};
use rand::{Rng, SeedableRng};

const DIMENSION: usize = 384;

fn resources() -> usize {
    std::env::var("PERCOLATE_THROUGHPUT_RESOURCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

fn quiet(_: Progress) {}

/// CPU seconds this process has used (every thread, user and system), from `/proc/self/stat`;
/// 0 where that is not available. Printed next to wall times: on a shared machine the wall
/// time varies with the load, the CPU time much less.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some((_, fields)) = stat.rsplit_once(") ") else { return 0.0 };
    let ticks: Vec<f64> =
        fields.split(' ').skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

async fn fill<P: Provider>(engine: &MemoryEngine<P>, tenant: &TenantId, n: usize) {
    let handle = engine.create_tenant(tenant, TenantConfig::default()).await.expect("create");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut written = 0;
    while written < n {
        let batch: Vec<NewResource> = (written..n.min(written + 1000))
            .map(|i| {
                let vector: Vec<f32> = (0..DIMENSION).map(|_| rng.random::<f32>() - 0.5).collect();
                NewResource::new(format!("resource {i}: some remembered text of modest length"))
                    .with_embedding(vector)
                    .with_metadata(
                        serde_json::json!({"row": i, "bucket": i % 10})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    )
            })
            .collect();
        written += batch.len();
        handle.batch_create_resources(batch).await.expect("batch");
    }
    eprintln!("  filled {n} resources in {:.1} s", started.elapsed().as_secs_f64());
}

/// Waits (up to 20 minutes) until no `percolate-hnsw` background indexer thread is alive, so
/// the export is timed without the RocksDB provider's graph build competing for the two cores.
fn wait_for_indexers() {
    let started = Instant::now();
    let busy = || {
        std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten().any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "percolate-hnsw")
        })
    };
    while busy() && started.elapsed().as_secs() < 1200 {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    eprintln!("  waited {:.1} s for the HNSW indexer to finish", started.elapsed().as_secs_f64());
}

/// Exports `tenant` from `source` to a file, imports it into `target`; prints records/s.
async fn measure<S: Provider, T: Provider>(
    source: &MemoryEngine<S>,
    target: &MemoryEngine<T>,
    tenant: &TenantId,
    file: &Path,
) {
    let handle = source.tenant(tenant).await.expect("tenant");
    wait_for_indexers();
    let started = Instant::now();
    let mut after = None;
    let mut scanned = 0;
    loop {
        let page = handle
            .scan(percolate::RecordKind::Resource, after, portable::PAGE)
            .await
            .expect("scan");
        scanned += page.len();
        match page.last() {
            Some(percolate::Record::Resource(r)) if page.len() == portable::PAGE => {
                after = Some(r.id.as_uuid())
            }
            _ => break,
        }
    }
    eprintln!("  one scan pass over {scanned} resources: {:.2} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let cpu = cpu_seconds();
    let out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(file).expect("create file"),
    );
    let summary = portable::export(&handle, out, quiet).await.expect("export");
    let seconds = started.elapsed().as_secs_f64();
    let records = summary.trailer.records as f64;
    eprintln!(
        "  export from {}: {} records, {:.0} MB in {seconds:.2} s = {:.0} records/s ({:.2} CPU s)",
        S::NAME,
        records,
        summary.bytes as f64 / 1e6,
        records / seconds,
        cpu_seconds() - cpu
    );
    let started = Instant::now();
    portable::verify(file).expect("verify");
    let verify = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let imported = portable::import(target, file, None, quiet).await.expect("import");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(imported.inserted.total() as f64, records);
    eprintln!(
        "  import into {}: {:.2} s = {:.0} records/s ({:.2} CPU s, the vector index's included; \
         verifying the file alone: {verify:.2} s)",
        T::NAME,
        seconds,
        records / seconds,
        cpu_seconds() - cpu
    );
}

/// The RocksDB source store: in `PERCOLATE_THROUGHPUT_SOURCE` when set (filled on the first
/// run, reused after), else in `work`.
async fn rocks_source(work: &Path, tenant: &TenantId) -> MemoryEngine<RocksProvider> {
    let kept = std::env::var_os("PERCOLATE_THROUGHPUT_SOURCE").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| work.join("source"));
    let source = MemoryEngine::new(RocksProvider::open(RocksConfig::new(&dir)).expect("open"));
    match source.tenant(tenant).await {
        Ok(handle) => {
            let count = handle.scan(percolate::RecordKind::Resource, None, 1).await.expect("scan");
            assert!(!count.is_empty(), "{} holds an empty tenant", dir.display());
            eprintln!("  reusing the source store in {}", dir.display());
            source
        }
        Err(_) => {
            fill(&source, tenant, resources()).await;
            if kept.is_some() {
                // Close the store (writing the index snapshot) and reopen it, as a later run will.
                wait_for_indexers();
                drop(source);
                MemoryEngine::new(RocksProvider::open(RocksConfig::new(&dir)).expect("reopen"))
            } else {
                source
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes ~0.5 GB; run with --ignored --nocapture to measure"]
async fn rocksdb_export_and_import_throughput() {
    let work = tempfile::tempdir().expect("temp dir");
    let tenant = TenantId::new("throughput").expect("id");
    let source = rocks_source(work.path(), &tenant).await;
    let target = MemoryEngine::new(
        RocksProvider::open(RocksConfig::new(work.path().join("target"))).expect("open"),
    );
    measure(&source, &target, &tenant, &work.path().join("export.jsonl")).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes ~0.5 GB; run through scripts/with-postgres.sh with --ignored --nocapture"]
async fn postgres_export_and_import_throughput() {
    use percolate::postgres::{PgConfig, PgProvider};
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL")
        .expect("PERCOLATE_TEST_POSTGRES_URL: run through scripts/with-postgres.sh");
    let mut config = PgConfig::new(url);
    if let Ok(admin) = std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        config = config.with_admin_url(admin);
    }
    let pg = MemoryEngine::new(PgProvider::connect(config).await.expect("connect"));
    let work = tempfile::tempdir().expect("temp dir");
    let tenant =
        TenantId::new(format!("throughput-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]))
            .expect("id");
    let rocks = MemoryEngine::new(
        RocksProvider::open(RocksConfig::new(work.path().join("source"))).expect("open"),
    );
    fill(&rocks, &tenant, resources()).await;
    // RocksDB → PostgreSQL measures the PostgreSQL import; then PostgreSQL → RocksDB its export.
    measure(&rocks, &pg, &tenant, &work.path().join("to-pg.jsonl")).await;
    let back = MemoryEngine::new(
        RocksProvider::open(RocksConfig::new(work.path().join("back"))).expect("open"),
    );
    measure(&pg, &back, &tenant, &work.path().join("from-pg.jsonl")).await;
    pg.delete_tenant(&tenant).await.expect("delete");
}
