//! Shared bench helpers: engines on a temporary store, data, and latency percentiles.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use percolate::MemoryEngine;
use percolate::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};

/// An engine on a fresh temporary RocksDB store (kept alive by the returned directory).
pub fn rocks_engine() -> (tempfile::TempDir, MemoryEngine<RocksProvider>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path())).expect("open store"));
    (dir, engine)
}

/// The dataset named by `PERCOLATE_DATASET`, else `../shared/data/wordnet-minilm-dev` beside
/// the crate, else `None`.
pub fn real_dataset() -> Option<Dataset> {
    let dir = std::env::var_os("PERCOLATE_DATASET").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wordnet-minilm-dev")
    });
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

/// The `q` quantile of `times` (sorts them).
pub fn percentile(times: &mut [Duration], q: f64) -> Duration {
    times.sort_unstable();
    times[((times.len() as f64 * q) as usize).min(times.len() - 1)]
}

/// Times `op` `samples` times one call at a time and prints p50, p99 and throughput.
pub fn latency_profile(name: &str, samples: usize, mut op: impl FnMut(usize)) {
    for i in 0..samples.min(1000) / 10 {
        op(i);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    let total = Instant::now();
    for i in 0..samples {
        let start = Instant::now();
        op(i);
        times.push(start.elapsed());
    }
    let total = total.elapsed();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{name:<40} p50 {:>10.2?}  p99 {:>10.2?}  {:>12.0} ops/s  (n={samples})",
        at(0.50),
        at(0.99),
        samples as f64 / total.as_secs_f64()
    );
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
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    percolate::TenantId::new(format!("{}-{}", label.replace('/', "-"), &suffix[suffix.len() - 8..]))
        .expect("valid tenant id")
}
