//! Kill a writer mid-ingest with SIGKILL, reopen, and check the vector index against the store.
//!
//! The test binary re-runs itself as the writer (`writer_child`, active only when
//! `PERCOLATE_CRASH_DIR` is set): it creates resources with embeddings in batches, deletes and
//! re-embeds some, and prints `ack N` after each call returns. The parent kills it at a varying
//! moment, reopens the store and checks that every acknowledged batch is there, and that vector
//! search returns exactly the stored embeddings — none deleted, none missing — whether the
//! index came from a stale snapshot or was rebuilt.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, RecordKind, SearchQuery, TenantConfig, TenantId};

const DIMENSION: usize = 16;
const BATCH: usize = 100;

fn engine(dir: &std::path::Path) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.exact_search_below = 0;
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

fn vector(seed: u64) -> Vec<f32> {
    percolate::dataset::Dataset::synthetic(1, 0, DIMENSION, 0, seed).row(0).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_child() -> percolate::Result<()> {
    let Some(dir) = std::env::var_os("PERCOLATE_CRASH_DIR") else { return Ok(()) };
    let engine = engine(std::path::Path::new(&dir));
    let id = TenantId::new("crash")?;
    let tenant = match engine.tenant(&id).await {
        Ok(tenant) => tenant,
        Err(_) => engine.create_tenant(&id, TenantConfig::default()).await?,
    };
    let mut seed: u64 =
        std::env::var("PERCOLATE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
            * 1_000_000;
    // libtest prints "test writer_child ... " without a newline first: acks are matched
    // anywhere in a line.
    for batch in 0.. {
        let created = tenant
            .batch_create_resources(
                (0..BATCH)
                    .map(|_| {
                        seed += 1;
                        NewResource::new(format!("seed {seed}")).with_embedding(vector(seed))
                    })
                    .collect(),
            )
            .await?;
        // Churn: delete one, re-embed another, so tombstones and stale snapshots happen.
        tenant.delete_resource(created[0].id).await?;
        let mut moved = created[1].clone();
        seed += 1;
        moved.embedding = Some(vector(seed));
        tenant.update_resource(moved).await?;
        println!("ack {batch}");
        std::io::Write::flush(&mut std::io::stdout())
            .map_err(|e| percolate::Error::invalid("stdout", e))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_an_index_that_matches_the_store() -> percolate::Result<()> {
    let cycles: usize =
        std::env::var("PERCOLATE_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    // Resources stored when the previous cycle's check finished.
    let mut base = 0usize;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("PERCOLATE_CRASH_DIR", dir.path())
            .env("PERCOLATE_CRASH_SEED", (cycle + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        // Kill after a varying number of acknowledged batches, mid-way through the next one.
        let kill_after = 2 + (cycle * 7) % 9;
        let mut lines = BufReader::new(stdout).lines();
        let mut acknowledged = 0;
        for line in lines.by_ref() {
            if line.expect("line").contains("ack ") {
                acknowledged += 1;
                if acknowledged == kill_after {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // The writer may have acknowledged more before it died: count what it printed.
        acknowledged += lines.map_while(Result::ok).filter(|l| l.contains("ack ")).count();

        let engine = engine(dir.path());
        let tenant = engine.tenant(&TenantId::new("crash")?).await?;
        let mut stored = Vec::new();
        let mut after = None;
        loop {
            let page = tenant.scan(RecordKind::Resource, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(match last {
                percolate::Record::Resource(r) => r.id.as_uuid(),
                _ => unreachable!("resources only"),
            });
            stored.extend(page.into_iter().filter_map(|r| match r {
                percolate::Record::Resource(r) => Some(r),
                _ => None,
            }));
        }
        // Each acknowledged batch left BATCH - 1 resources (one deleted). The call in flight
        // when the writer died is all or nothing: nothing, a whole batch, or a whole batch
        // minus its deleted resource.
        let acknowledged_floor = base + acknowledged * (BATCH - 1);
        assert!(
            stored.len() >= acknowledged_floor,
            "cycle {cycle}: {} stored, {acknowledged_floor} acknowledged",
            stored.len()
        );
        let extra = stored.len() - acknowledged_floor;
        assert!(
            [0, BATCH - 1, BATCH].contains(&extra),
            "cycle {cycle}: a partial batch of {extra}"
        );
        // At most MAX_K at once: beyond that, every hit must be stored and the sample below
        // checks that nothing stored is missing.
        let k = (stored.len() + 10).min(percolate::MAX_K);
        let everything = tenant.search_resources(&SearchQuery::new(vector(7), k)).await?;
        let expected = stored.len().min(k);
        assert_eq!(
            everything.len(),
            expected,
            "cycle {cycle}: search returns exactly the stored embeddings"
        );
        let stored_ids: std::collections::HashSet<_> = stored.iter().map(|r| r.id).collect();
        assert!(everything.iter().all(|hit| stored_ids.contains(&hit.resource.id)));
        for resource in stored.iter().step_by(37) {
            let query = SearchQuery::new(resource.embedding.clone().unwrap_or_default(), 1);
            let hit = tenant.search_resources(&query).await?;
            assert_eq!(
                hit[0].resource.id, resource.id,
                "cycle {cycle}: each embedding finds itself"
            );
        }
        base = stored.len();
    }
    Ok(())
}
