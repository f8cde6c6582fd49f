//! Resident memory of the RocksDB provider under its two profiles (`RocksConfig::new`, the
//! desktop default, and `RocksConfig::mobile`): a process with the store open and no tenant;
//! one idle open tenant; ten open tenants; a tenant of N x 384-d resources after a search
//! workload; and that tenant again after `release_memory`.
//!
//! `cargo bench --bench memory` prepares one store (N = 100000 by default,
//! `PERCOLATE_MEMORY_RESOURCES` to change it; clustered synthetic vectors), then measures each
//! case in a fresh process of its own (this binary, re-run with `PERCOLATE_MEMORY_CASE`), since
//! a process's RSS never shrinks back to what a later case alone would use. Prints a Markdown
//! table of VmRSS in MiB and the provider's own accounting. Linux only (reads /proc).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use percolate::bench::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, SearchQuery, TenantConfig, TenantId};

const DIMENSION: usize = 384;
const SMALL_TENANTS: usize = 10;
const QUERIES: usize = 1_000;
const CASES: [&str; 5] = ["store", "idle_tenant", "ten_tenants", "big_searched", "big_released"];

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match std::env::var("PERCOLATE_MEMORY_CASE") {
        Ok(case) => {
            let dir = PathBuf::from(std::env::var("PERCOLATE_MEMORY_ROOT").expect("root"));
            let mobile = std::env::var("PERCOLATE_MEMORY_PROFILE").as_deref() == Ok("mobile");
            runtime.block_on(child(&case, &dir, mobile));
        }
        Err(_) => runtime.block_on(parent()),
    }
}

fn resources() -> usize {
    std::env::var("PERCOLATE_MEMORY_RESOURCES").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000)
}

fn data(n: usize) -> Dataset {
    Dataset::synthetic(n, QUERIES, DIMENSION, 0, 7)
}

async fn parent() {
    let n = resources();
    let dir = tempfile::Builder::new().prefix("percolate-memory-bench").tempdir().expect("temp");
    let started = Instant::now();
    let root = dir.path().join("store");
    prepare(&root, &dir.path().join("queries.f32"), n).await;
    println!("prepared {n} x {DIMENSION}-d resources in {:.0} s", started.elapsed().as_secs_f64());

    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for case in CASES {
        let mut cells = Vec::new();
        for profile in ["desktop", "mobile"] {
            let output = Command::new(&exe)
                .env("PERCOLATE_MEMORY_CASE", case)
                .env("PERCOLATE_MEMORY_ROOT", dir.path())
                .env("PERCOLATE_MEMORY_PROFILE", profile)
                .output()
                .expect("run a case");
            let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            assert!(
                output.status.success(),
                "{case} {profile} failed: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            );
            cells.push(text);
        }
        rows.push(format!("| {case} | {} | {} |", cells[0], cells[1]));
    }
    println!("\n{n} x {DIMENSION}-d; VmRSS MiB (block cache / memtables / vector indexes, MiB)\n");
    println!("| case | desktop (`RocksConfig::new`) | mobile (`RocksConfig::mobile`) |");
    println!("|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// One store: a tenant `big` of `n` resources, and ten small tenants of 100 resources each,
/// every vector index built and its snapshot written (a reopen loads it); and the queries, as
/// little-endian f32 rows, for the children to search with.
async fn prepare(root: &Path, queries: &Path, n: usize) {
    let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(root)).expect("open"));
    let data = data(n);
    let bytes: Vec<u8> = data.queries.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(queries, bytes).expect("write the queries");
    let big = engine
        .create_tenant(&TenantId::new("big").expect("id"), TenantConfig::default())
        .await
        .expect("tenant");
    for start in (0..n).step_by(1_000) {
        let batch = (start..(start + 1_000).min(n))
            .map(|i| NewResource::new(format!("resource {i}")).with_embedding(data.row(i).to_vec()))
            .collect();
        big.batch_create_resources(batch).await.expect("batch");
    }
    RocksProvider::wait_for_index(big.provider_tenant());
    for t in 0..SMALL_TENANTS {
        let id = TenantId::new(format!("small-{t}")).expect("id");
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("tenant");
        let batch = (0..100)
            .map(|i| NewResource::new(format!("note {i}")).with_embedding(data.row(i).to_vec()))
            .collect();
        tenant.batch_create_resources(batch).await.expect("batch");
        RocksProvider::wait_for_index(tenant.provider_tenant());
    }
}

async fn child(case: &str, dir: &Path, mobile: bool) {
    let root = dir.join("store");
    let config = if mobile { RocksConfig::mobile(&root) } else { RocksConfig::new(&root) };
    let engine = MemoryEngine::new(RocksProvider::open(config).expect("open"));
    let mut held = Vec::new();
    match case {
        "store" => {}
        "idle_tenant" => held.push(open(&engine, "small-0").await),
        "ten_tenants" => {
            for t in 0..SMALL_TENANTS {
                held.push(open(&engine, &format!("small-{t}")).await);
            }
        }
        "big_searched" | "big_released" => {
            let big = open(&engine, "big").await;
            RocksProvider::wait_for_index(big.provider_tenant());
            let bytes = std::fs::read(dir.join("queries.f32")).expect("queries");
            let floats: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let mut ids = Vec::new();
            for query in floats.chunks_exact(DIMENSION) {
                let hits = big
                    .search_resources(&SearchQuery::new(query.to_vec(), 10))
                    .await
                    .expect("search");
                ids.extend(hits.into_iter().map(|hit| hit.resource.id));
            }
            for id in ids {
                big.get_resource(id).await.expect("get");
            }
            if case == "big_released" {
                engine.release_memory().await.expect("release");
            }
            held.push(big);
        }
        other => panic!("unknown case {other}"),
    }
    let usage = engine.provider().memory_usage();
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    println!(
        "{:.0} ({:.1} / {:.1} / {:.0})",
        rss_kib() as f64 / 1024.0,
        mib(usage.block_cache),
        mib(usage.write_buffers),
        mib(usage.vector_indexes)
    );
    drop(held);
}

async fn open(
    engine: &MemoryEngine<RocksProvider>,
    id: &str,
) -> percolate::TenantHandle<RocksProvider> {
    engine.tenant(&TenantId::new(id).expect("id")).await.expect("open tenant")
}

/// The process's resident set, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
