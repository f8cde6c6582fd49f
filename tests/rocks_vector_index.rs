//! RocksDB-specific scenarios for the HNSW vector index: the graph path (small tenants are
//! searched exactly, so these tests turn that off), tombstones, filters inside the walk,
//! read-your-writes while the graph catches up, and rebuilding from the store on reopen.

use std::collections::HashSet;

use percolate::bench::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{
    Filter, MemoryEngine, NewResource, Resource, ResourceId, SearchQuery, TenantConfig,
    TenantHandle, TenantId,
};
use serde_json::json;

mod vectors;
use vectors::{brute_force, load};

const DIMENSION: usize = 32;

fn engine(dir: &std::path::Path) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.exact_search_below = 0;
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

fn search_ids(hits: Vec<percolate::ScoredResource>) -> Vec<ResourceId> {
    hits.into_iter().map(|h| h.resource.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_search_reaches_high_recall_and_never_returns_deleted_or_stale_vectors()
-> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path());
    let tenant = engine.create_tenant(&TenantId::new("graph")?, TenantConfig::default()).await?;
    let data = Dataset::synthetic(3000, 40, DIMENSION, 0, 11);
    let mut resources = load(&tenant, &data).await?;
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!((stats.graph, stats.pending), (3000, 0), "{stats:?}");

    let mut hits = 0;
    for q in 0..data.query_count() {
        let query = data.query(q).to_vec();
        let found =
            search_ids(tenant.search_resources(&SearchQuery::new(query.clone(), 10)).await?);
        let truth = brute_force(&resources, &query, 10, |_| true);
        hits += found.iter().filter(|id| truth.contains(id)).count();
    }
    let recall = hits as f64 / (data.query_count() * 10) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");

    // Delete every third resource and move every fifth one: the graph keeps tombstones.
    let mut deleted = HashSet::new();
    for (i, resource) in resources.iter_mut().enumerate() {
        if i % 3 == 0 {
            tenant.delete_resource(resource.id).await?;
            deleted.insert(resource.id);
        } else if i % 5 == 0 {
            let moved: Vec<f32> = resource
                .embedding
                .as_ref()
                .map(|e| e.iter().map(|x| -x).collect())
                .unwrap_or_default();
            resource.embedding = Some(moved);
            *resource = tenant.update_resource(resource.clone()).await?;
        }
    }
    let live: Vec<Resource> =
        resources.iter().filter(|r| !deleted.contains(&r.id)).cloned().collect();
    for q in 0..10 {
        let query = data.query(q).to_vec();
        let found = tenant.search_resources(&SearchQuery::new(query.clone(), 10)).await?;
        assert_eq!(found.len(), 10);
        for hit in &found {
            assert!(!deleted.contains(&hit.resource.id), "a deleted resource came back");
            let stored =
                live.iter().find(|r| r.id == hit.resource.id).and_then(|r| r.embedding.clone());
            assert_eq!(hit.resource.embedding, stored, "hit carries the stored embedding");
        }
    }
    // A moved resource is found at its new place, before and after the graph catches up.
    let moved = live
        .iter()
        .enumerate()
        .find(|(i, _)| i % 5 == 0)
        .map(|(_, r)| r.clone())
        .expect("a moved one");
    let at_new_place = SearchQuery::new(moved.embedding.clone().unwrap_or_default(), 1);
    assert_eq!(search_ids(tenant.search_resources(&at_new_place).await?), vec![moved.id]);
    RocksProvider::wait_for_index(tenant.provider_tenant());
    assert_eq!(search_ids(tenant.search_resources(&at_new_place).await?), vec![moved.id]);
    // A third of the graph was tombstones: waiting also compacted them away.
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!((stats.graph, stats.tombstones), (live.len(), 0), "{stats:?}");
    for hit in tenant.search_resources(&SearchQuery::new(data.query(3).to_vec(), 50)).await? {
        assert!(
            !deleted.contains(&hit.resource.id),
            "a deleted resource came back after compaction"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_filters_still_return_k_results_in_brute_force_order() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path());
    let tenant = engine.create_tenant(&TenantId::new("filters")?, TenantConfig::default()).await?;
    let data = Dataset::synthetic(3000, 10, DIMENSION, 0, 5);
    let resources = load(&tenant, &data).await?;
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let tenth: Vec<u32> = (0..10).collect();
    let fifth: Vec<u32> = (0..20).collect();
    // Each search path: the postings' candidates scored exactly (1%), the filtered walk over
    // exact postings (10%), over a superset of them (an `$and` whose one part is posted) and
    // over no postings at all (a range).
    for (filter, expected_matches) in [
        (json!({"bucket": 7}), 30),
        (json!({"bucket": {"$in": tenth}}), 300),
        (json!({"$and": [{"bucket": {"$in": fifth}}, {"bucket": {"$lt": 10}}]}), 300),
        (json!({"bucket": {"$lt": 10}}), 300),
    ] {
        let filter = Filter::parse(&filter)?;
        let keep = |r: &Resource| filter.matches(&r.metadata);
        assert_eq!(resources.iter().filter(|r| keep(r)).count(), expected_matches);
        for q in 0..data.query_count() {
            let query = data.query(q).to_vec();
            let found = search_ids(
                tenant
                    .search_resources(
                        &SearchQuery::new(query.clone(), 10).with_filter(filter.clone()),
                    )
                    .await?,
            );
            assert_eq!(found.len(), 10, "k results when k match");
            let truth = brute_force(&resources, &query, 10, keep);
            let overlap = found.iter().filter(|id| truth.contains(id)).count();
            assert!(overlap >= 9, "filtered recall {overlap}/10");
        }
        // Asking for more than match returns every match.
        let all = tenant
            .search_resources(
                &SearchQuery::new(data.query(0).to_vec(), 1000).with_filter(filter.clone()),
            )
            .await?;
        assert_eq!(all.len(), expected_matches);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_searchable_when_it_returns_and_the_index_is_rebuilt_on_reopen()
-> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = TenantId::new("ryw")?;
    let data = Dataset::synthetic(4000, 0, DIMENSION, 0, 3);
    let resources = {
        let engine = engine(dir.path());
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
        let resources = load(&tenant, &data).await?;
        // No waiting for the graph: every resource is its own nearest neighbour right away.
        for resource in resources.iter().step_by(97) {
            let query = SearchQuery::new(resource.embedding.clone().unwrap_or_default(), 1);
            assert_eq!(search_ids(tenant.search_resources(&query).await?), vec![resource.id]);
        }
        resources
    };
    let engine = engine(dir.path());
    let tenant = engine.tenant(&id).await?;
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!(stats.graph + stats.pending, 4000, "every stored embedding is back: {stats:?}");
    for resource in resources.iter().step_by(131) {
        let query = SearchQuery::new(resource.embedding.clone().unwrap_or_default(), 1);
        assert_eq!(search_ids(tenant.search_resources(&query).await?), vec![resource.id]);
    }
    Ok(())
}

fn snapshot_path(dir: &std::path::Path, tenant: &str) -> std::path::PathBuf {
    dir.join(tenant).join("vectors.hnsw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_reads_the_snapshot_instead_of_rebuilding_the_graph() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = TenantId::new("snap")?;
    let data = Dataset::synthetic(3000, 20, DIMENSION, 0, 8);
    let resources = {
        let engine = engine(dir.path());
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
        let resources = load(&tenant, &data).await?;
        RocksProvider::wait_for_index(tenant.provider_tenant());
        resources
    };
    assert!(snapshot_path(dir.path(), "snap").is_file(), "closing wrote a snapshot");
    let engine = engine(dir.path());
    let tenant = engine.tenant(&id).await?;
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!((stats.graph, stats.pending, stats.tombstones), (3000, 0, 0), "{stats:?}");
    for q in 0..data.query_count() {
        let query = data.query(q).to_vec();
        let found =
            search_ids(tenant.search_resources(&SearchQuery::new(query.clone(), 10)).await?);
        let truth = brute_force(&resources, &query, 10, |_| true);
        assert!(found.iter().filter(|id| truth.contains(id)).count() >= 9);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_damaged_snapshot_is_reconciled_with_the_store() -> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = TenantId::new("stale")?;
    let data = Dataset::synthetic(3000, 0, DIMENSION, 0, 21);
    let old_snapshot = dir.path().join("old.hnsw");
    let (deleted, moved, added) = {
        let engine = engine(dir.path());
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
        let mut resources = load(&tenant, &data).await?;
        RocksProvider::wait_for_index(tenant.provider_tenant());
        RocksProvider::write_snapshot(tenant.provider_tenant())?;
        std::fs::copy(snapshot_path(dir.path(), "stale"), &old_snapshot).expect("copy");
        // Changes the old snapshot does not know about.
        let mut deleted = Vec::new();
        let mut moved = Vec::new();
        for (i, resource) in resources.iter_mut().enumerate().take(600) {
            if i % 2 == 0 {
                tenant.delete_resource(resource.id).await?;
                deleted.push(resource.id);
            } else {
                resource.embedding =
                    resource.embedding.as_ref().map(|e| e.iter().map(|x| -x).collect());
                moved.push(tenant.update_resource(resource.clone()).await?);
            }
        }
        let added = tenant
            .batch_create_resources(
                (0..200)
                    .map(|i| {
                        NewResource::new("new").with_embedding(
                            Dataset::synthetic(1, 0, DIMENSION, 0, 1000 + i).row(0).to_vec(),
                        )
                    })
                    .collect(),
            )
            .await?;
        RocksProvider::wait_for_index(tenant.provider_tenant());
        (deleted, moved, added)
    };
    // A crash after the old snapshot: the store moved on, the snapshot did not.
    std::fs::copy(&old_snapshot, snapshot_path(dir.path(), "stale")).expect("restore old snapshot");
    {
        let engine = engine(dir.path());
        let stats = check(engine.tenant(&id).await?, &moved, &added, &deleted, &data).await?;
        assert_eq!(stats.graph, 3000, "the old graph was reused, not rebuilt: {stats:?}");
        assert!(stats.tombstones >= 600, "deleted and moved points are tombstoned: {stats:?}");
    }
    // A damaged snapshot is ignored and the graph rebuilt from the store.
    let path = snapshot_path(dir.path(), "stale");
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let engine = engine(dir.path());
    let stats = check(engine.tenant(&id).await?, &moved, &added, &deleted, &data).await?;
    assert_eq!(stats.tombstones, 0, "rebuilt from scratch: {stats:?}");
    Ok(())
}

async fn check(
    tenant: TenantHandle<RocksProvider>,
    moved: &[Resource],
    added: &[Resource],
    deleted: &[ResourceId],
    data: &Dataset,
) -> percolate::Result<percolate::rocks::IndexStats> {
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    for resource in moved.iter().chain(added).step_by(7) {
        let query = SearchQuery::new(resource.embedding.clone().unwrap_or_default(), 1);
        assert_eq!(search_ids(tenant.search_resources(&query).await?), vec![resource.id]);
    }
    let everything = tenant.search_resources(&SearchQuery::new(data.row(1).to_vec(), 5000)).await?;
    assert_eq!(
        everything.len(),
        3000 - deleted.len() + added.len(),
        "exactly the stored embeddings"
    );
    assert!(
        everything.iter().all(|hit| !deleted.contains(&hit.resource.id)),
        "no deleted resource"
    );
    Ok(stats)
}

/// Batches write their stored embeddings through a buffer the tenant keeps between batches
/// (or a fresh one when it is busy or too small): every embedding must read back exactly as
/// written, on plaintext and encrypted tenants, after batches of every size in turn, with and
/// without embeddings, and from concurrent writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_embeddings_read_back_exactly_after_batches_of_every_size() -> percolate::Result<()>
{
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = RocksConfig::new(dir.path());
        if encrypted {
            config.master_key = Some(percolate::rocks::MasterKey::from_bytes([9; 32]));
        }
        let engine = MemoryEngine::new(RocksProvider::open(config)?);
        let tenant =
            engine.create_tenant(&TenantId::new("scratch")?, TenantConfig::default()).await?;
        let data = Dataset::synthetic(6000, 0, 384, 0, 11);
        let batch = |rows: std::ops::Range<usize>, every: usize| -> Vec<NewResource> {
            rows.map(|i| {
                let resource = NewResource::new(format!("row {i}"));
                // Every `every`-th resource has no embedding.
                if i % every == 0 {
                    resource
                } else {
                    resource.with_embedding(data.row(i).to_vec())
                }
            })
            .collect()
        };
        let mut created = Vec::new();
        // Parallel encoding, then a serial small batch, then one over the kept 4 MiB, then
        // mixed ones, then two writers at once.
        for (rows, every) in
            [(0..600, usize::MAX), (600..610, 3), (610..3610, usize::MAX), (3610..4000, 2)]
        {
            created.extend(tenant.batch_create_resources(batch(rows, every)).await?);
        }
        let (a, b) = tokio::join!(
            tenant.batch_create_resources(batch(4000..5000, 5)),
            tenant.batch_create_resources(batch(5000..6000, 7)),
        );
        created.extend(a?);
        created.extend(b?);
        assert_eq!(created.len(), 6000);
        for resource in &created {
            let stored = tenant.get_resource(resource.id).await?;
            assert_eq!(
                stored.embedding, resource.embedding,
                "{} (encrypted {encrypted})",
                resource.content
            );
        }
        let with = created.iter().filter(|r| r.embedding.is_some()).count();
        let hits = tenant.search_resources(&SearchQuery::new(data.row(1).to_vec(), 6000)).await?;
        assert_eq!(hits.len(), with);
    }
    Ok(())
}

/// The child of [`a_killed_process_reopens_from_the_snapshot_its_indexer_wrote`]: active only
/// when `PERCOLATE_SNAPSHOT_CHILD_DIR` is set. It loads a tenant, waits until its indexer has
/// written a snapshot on its own, says so, and waits to be killed (it never closes the tenant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_child() -> percolate::Result<()> {
    let Some(dir) = std::env::var_os("PERCOLATE_SNAPSHOT_CHILD_DIR") else { return Ok(()) };
    let dir = std::path::Path::new(&dir);
    let engine = engine(dir);
    let tenant = engine.create_tenant(&TenantId::new("killed")?, TenantConfig::default()).await?;
    load(&tenant, &Dataset::synthetic(6000, 0, DIMENSION, 0, 17)).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !snapshot_path(dir, "killed").is_file() {
        assert!(std::time::Instant::now() < deadline, "no snapshot from the indexer");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("snapshot written");
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    Ok(())
}

/// A process killed before it closes its tenants (as a phone kills apps) keeps the graph its
/// indexer built: the indexer snapshots a graph that changed enough, and the reopen takes
/// those points from the snapshot instead of inserting every embedding again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_reopens_from_the_snapshot_its_indexer_wrote() -> percolate::Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["snapshot_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("PERCOLATE_SNAPSHOT_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let written = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("snapshot written"));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap the child");
    assert!(written, "the child saw its indexer write a snapshot");
    let engine = engine(dir.path());
    let tenant = engine.tenant(&TenantId::new("killed")?).await?;
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert!(stats.restored >= 4096, "the graph came from the snapshot: {stats:?}");
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!(stats.graph - stats.tombstones, 6000, "every stored embedding indexed: {stats:?}");
    let data = Dataset::synthetic(6000, 0, DIMENSION, 0, 17);
    for i in [0, 2999, 5999] {
        let hits = tenant.search_resources(&SearchQuery::new(data.row(i).to_vec(), 1)).await?;
        assert_eq!(hits[0].resource.content, format!("r{i}"), "row {i} finds itself");
    }
    Ok(())
}
