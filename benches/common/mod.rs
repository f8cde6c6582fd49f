//! Shared bench helpers: engines on a temporary store, data, and latency percentiles.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use percolate::MemoryEngine;
use percolate::bench::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};

/// An engine on a fresh temporary RocksDB store (kept alive by the returned directory).
pub fn rocks_engine() -> (tempfile::TempDir, MemoryEngine<RocksProvider>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path())).expect("open store"));
    (dir, engine)
}

/// Where [`real_dataset`] looks: `PERCOLATE_DATASET`, else `../shared/data/wordnet-minilm-dev`
/// beside the crate.
pub fn real_dataset_dir() -> PathBuf {
    std::env::var_os("PERCOLATE_DATASET").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wordnet-minilm-dev")
    })
}

/// The dataset named by `PERCOLATE_DATASET`, else `../shared/data/wordnet-minilm-dev` beside
/// the crate, else `None`.
pub fn real_dataset() -> Option<Dataset> {
    let dir = real_dataset_dir();
    if !dir.join("base.fbin").exists() {
        return None;
    }
    match Dataset::load(&dir) {
        Ok(data) => Some(data),
        Err(e) => {
            eprintln!("ignoring dataset {}: {e}", dir.display());
            None
        }
    }
}

/// A runtime with one worker thread, for providers whose connections are background tasks
/// (a current-thread runtime would run them only while something blocks on it).
pub fn networked_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A current-thread runtime: point operations of the RocksDB provider complete inline, so
/// `block_on` measures the operation and not scheduling.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The `q` quantile of `times`.
pub fn percentile(times: &mut [Duration], q: f64) -> Duration {
    percolate::bench::Latencies::new(times.to_vec()).quantile(q)
}

/// A runtime and an engine on the PostgreSQL server named by `PERCOLATE_BENCH_POSTGRES_URL` or
/// `PERCOLATE_TEST_POSTGRES_URL` (and the matching `*_ADMIN_URL`), as exported by
/// `scripts/with-postgres.sh`; `None`, saying so, when no server is configured. The runtime has
/// a worker thread of its own, which keeps the connections' background tasks running.
#[cfg(feature = "postgres")]
pub fn postgres_engine()
-> Option<(tokio::runtime::Runtime, MemoryEngine<percolate::postgres::PgProvider>)> {
    use percolate::postgres::{PgConfig, PgProvider};
    let var = |name: &str| {
        std::env::var(format!("PERCOLATE_BENCH_{name}"))
            .or_else(|_| std::env::var(format!("PERCOLATE_TEST_{name}")))
            .ok()
    };
    let Some(url) = var("POSTGRES_URL") else {
        println!("no PostgreSQL configured (run through scripts/with-postgres.sh): skipping");
        return None;
    };
    let mut config = PgConfig::new(url);
    if let Some(admin) = var("POSTGRES_ADMIN_URL") {
        config = config.with_admin_url(admin);
    }
    let rt = networked_runtime();
    let engine =
        MemoryEngine::new(rt.block_on(PgProvider::connect(config)).expect("connect to PostgreSQL"));
    Some((rt, engine))
}

/// A unique tenant id for one bench run, so reruns against one server never collide.
pub fn bench_tenant(label: &str) -> percolate::TenantId {
    percolate::bench::bench_tenant(&label.replace('/', "-")).expect("valid tenant id")
}

/// The workload's sizes for criterion runs: `percolate bench`'s defaults, the dataset's rows
/// as resources when there is one; `PERCOLATE_BENCH_N` sets the number of resources and caps
/// the power-law graph's entities and the moments (a quick run on PostgreSQL, which loads a
/// graph one round trip per entity and edge).
pub fn sizes(data: Option<&Dataset>) -> percolate::bench::Sizes {
    let n: Option<usize> = std::env::var("PERCOLATE_BENCH_N").ok().and_then(|v| v.parse().ok());
    let defaults = percolate::bench::Sizes::default();
    let cap = n.unwrap_or(usize::MAX);
    percolate::bench::Sizes {
        resources: n.unwrap_or_else(|| data.map_or(defaults.resources, Dataset::len)),
        entities: defaults.entities.min(cap),
        moments: defaults.moments.min(cap),
        samples: 2_000,
        seconds_per_row: 2.0,
        ..defaults
    }
}

/// Every row of the design document's table as a criterion bench on provider `P`: loads the
/// workload of `percolate bench` into a fresh tenant (the shared dataset when present),
/// waits for the vector index, prints the single-call profile (p50, p99, throughput, recall),
/// then benches each operation (reads first; batches with few, flat samples, since each one
/// adds 1000 records), and deletes the tenant.
pub fn rows<P: percolate::bench::BenchProvider>(
    c: &mut criterion::Criterion,
    rt: &tokio::runtime::Runtime,
    engine: &MemoryEngine<P>,
) {
    use percolate::bench::{self, BenchData, Operation, Workload};
    let source = real_dataset().map(|data| ("the shared dataset".to_owned(), data));
    let sizes = sizes(source.as_ref().map(|(_, data)| data));
    let data = BenchData::prepare(source, sizes.resources, sizes.queries, sizes.seed)
        .expect("prepare data");
    let id = bench::bench_tenant("bench-rows").expect("tenant id");
    let workload =
        rt.block_on(Workload::load(engine, &id, &data, &sizes, |_| {})).expect("load workload");
    rt.block_on(bench::settle(&workload.tenant)).expect("index settles");
    println!("{}: {} resources from {}", P::NAME, data.len(), data.source);
    let profile = rt.block_on(bench::measure_all(&workload, &sizes)).expect("profile");
    println!("{}", bench::table(&profile));

    let operations = workload.operations();
    let reads = operations.iter().filter(|op| !op.writes());
    let writes = operations.iter().filter(|op| op.writes());
    for &op in reads.chain(writes) {
        let mut group = c.benchmark_group(P::NAME);
        if matches!(op, Operation::Batch1000 | Operation::Batch1000Embeddings) {
            group
                .sample_size(10)
                .sampling_mode(criterion::SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        }
        let mut i = 0usize;
        group.bench_function(op.name(), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    workload.input(op, i)
                },
                |input| rt.block_on(workload.call(input)).expect("call"),
                criterion::BatchSize::SmallInput,
            )
        });
        group.finish();
    }
    drop(workload);
    rt.block_on(bench::delete_tenant(engine, &id)).expect("delete the bench tenant");
}
