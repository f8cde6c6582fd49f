//! The vector tail of the PostgreSQL provider: embeddings written but not yet in the HNSW
//! graph are searchable on return, filtered, updated and deleted like the rest; a merge cut
//! short leaves every resource exactly once; one tenant's tail rows stay its own. The
//! background merge is off in these tests (`PgConfig::with_background_merge`), so the tail
//! holds what each step expects, and `Provider::flush_vector_index` merges on demand.

use percolate::postgres::tenant::SchemaName;
use percolate::postgres::{PgConfig, PgProvider};
use percolate::{
    Filter, MemoryEngine, Metric, NewResource, Provider, Resource, SearchQuery, TenantConfig,
    TenantHandle, TenantId, testing,
};

use super::{config, fresh_tenant_id, owner_client};

const DIMENSION: usize = 32;

/// An engine whose searches of any tenant go through the index path (graph and tail), wide
/// enough that the graph misses almost nothing, with no background merge.
async fn engine() -> MemoryEngine<PgProvider> {
    let config: PgConfig =
        config().with_exact_below(0).with_ef_search(200).with_background_merge(false);
    MemoryEngine::new(PgProvider::connect(config).await.unwrap_or_else(|e| panic!("{e:?}")))
}

async fn cosine_tenant(
    engine: &MemoryEngine<PgProvider>,
    prefix: &str,
) -> (TenantId, TenantHandle<PgProvider>) {
    let id = fresh_tenant_id(prefix);
    let config = TenantConfig { dimension: Some(DIMENSION as u32), metric: Metric::Cosine };
    let tenant = engine.create_tenant(&id, config).await.expect("tenant");
    (id, tenant)
}

/// Resources `from..to` with embedding `testing::vector(i)` and metadata `i`, `even`, `batch`.
async fn write(tenant: &TenantHandle<PgProvider>, from: u64, to: u64, batch: u64) -> Vec<Resource> {
    let mut written = Vec::new();
    for chunk in (from..to).collect::<Vec<_>>().chunks(1000) {
        let resources = chunk
            .iter()
            .map(|&i| {
                let mut metadata = percolate::Metadata::new();
                metadata.insert("i".into(), serde_json::json!(i));
                metadata.insert("even".into(), serde_json::json!(i % 2 == 0));
                metadata.insert("batch".into(), serde_json::json!(batch));
                NewResource::new(format!("r{i}"))
                    .with_embedding(testing::vector(i, DIMENSION))
                    .with_metadata(metadata)
            })
            .collect();
        written.extend(tenant.batch_create_resources(resources).await.expect("insert"));
    }
    written
}

async fn flush(engine: &MemoryEngine<PgProvider>, tenant: &TenantHandle<PgProvider>) {
    engine.provider().flush_vector_index(tenant.provider_tenant()).await.expect("flush");
}

/// Where `tenant`'s embeddings are, read as the owner role.
#[derive(Debug, PartialEq, Eq)]
struct Census {
    /// Rows in the tail.
    tail: i64,
    /// Entries in the graph table.
    graph: i64,
    /// Graph entries that do not match their record (changed or deleted since).
    stale: i64,
    /// Resources whose embedding is in neither place.
    missing: i64,
    /// Resources whose embedding is in both places.
    twice: i64,
}

fn census_of(tail: i64, graph: i64, stale: i64) -> Census {
    Census { tail, graph, stale, missing: 0, twice: 0 }
}

async fn census(tenant: &TenantId) -> Census {
    let mut client = owner_client().await;
    let schema = SchemaName::of(tenant);
    let txn = client.transaction().await.expect("begin");
    txn.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.as_str()])
        .await
        .expect("tenant");
    let places = format!(
        "(EXISTS (SELECT 1 FROM {schema}.resource_vec_tail t
                  WHERE t.id = r.id AND t.embedding = r.embedding))::int
         + (EXISTS (SELECT 1 FROM {schema}.resource_vectors v
                    WHERE v.id = r.id AND v.embedding = r.embedding))::int"
    );
    let row = txn
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.resource_vec_tail),
                    (SELECT count(*) FROM {schema}.resource_vectors),
                    (SELECT count(*) FROM {schema}.resource_vectors v WHERE NOT EXISTS (
                        SELECT 1 FROM {schema}.resources r
                        WHERE r.id = v.id AND r.embedding = v.embedding)),
                    (SELECT count(*) FROM {schema}.resources r
                     WHERE r.embedding IS NOT NULL AND {places} = 0),
                    (SELECT count(*) FROM {schema}.resources r
                     WHERE r.embedding IS NOT NULL AND {places} = 2)"
            ),
            &[],
        )
        .await
        .expect("census");
    txn.commit().await.expect("commit");
    Census {
        tail: row.get(0),
        graph: row.get(1),
        stale: row.get(2),
        missing: row.get(3),
        twice: row.get(4),
    }
}

/// The `k` nearest of `resources` to `query` among those `keep` admits, by brute force.
fn brute_force(
    resources: &[Resource],
    query: &[f32],
    k: usize,
    keep: impl Fn(&Resource) -> bool,
) -> Vec<percolate::ResourceId> {
    let mut scored: Vec<(f64, percolate::ResourceId)> = resources
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| {
            let distance = testing::brute_distance(Metric::Cosine, r.embedding.as_deref()?, query);
            Some((distance, r.id))
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

async fn nearest(
    tenant: &TenantHandle<PgProvider>,
    query: &[f32],
    filter: Option<serde_json::Value>,
) -> Vec<percolate::ResourceId> {
    let mut search = SearchQuery::new(query.to_vec(), 10);
    if let Some(filter) = filter {
        search = search.with_filter(Filter::parse(&filter).expect("filter"));
    }
    let hits = tenant.search_resources(&search).await.expect("search");
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "nearest first");
    hits.iter().map(|hit| hit.resource.id).collect()
}

/// A batch that lands in the tail is found by the very next search, unfiltered and filtered
/// (a filter pushed into SQL, one that is not, one only tail rows match), next to the rows
/// already in the graph, with the brute-force neighbours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_in_the_tail_are_searchable_on_return_and_filtered_like_the_rest() {
    let engine = engine().await;
    let (id, tenant) = cosine_tenant(&engine, "tailsearch").await;
    let mut all = write(&tenant, 0, 800, 1).await;
    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 800, 0), "the first batch is in the graph");
    let tail = write(&tenant, 800, 1600, 2).await;
    assert_eq!(census(&id).await, census_of(800, 800, 0), "the second batch is in the tail");
    all.extend(tail.iter().cloned());

    for probe in tail.iter().step_by(97).chain(all.iter().step_by(211)) {
        let query = probe.embedding.clone().expect("embedding");
        assert_eq!(nearest(&tenant, &query, None).await[0], probe.id, "finds itself first");
    }
    // Each filter beside the predicate it means, to count the matches by hand.
    type Predicate = fn(&Resource) -> bool;
    let filters: [(serde_json::Value, Predicate); 3] = [
        (serde_json::json!({"even": true}), |r| r.metadata["even"] == serde_json::json!(true)),
        (serde_json::json!({"i": {"$gte": 1200}}), |r| {
            r.metadata["i"].as_u64().is_some_and(|i| i >= 1200)
        }),
        (serde_json::json!({"batch": 2}), |r| r.metadata["batch"] == serde_json::json!(2)),
    ];
    let (mut found, mut expected) = (0, 0);
    for q in 0..20 {
        let query = testing::vector(1_000_000 + q, DIMENSION);
        let truth = brute_force(&all, &query, 10, |_| true);
        let hits = nearest(&tenant, &query, None).await;
        assert_eq!(hits.len(), 10);
        found += hits.iter().filter(|id| truth.contains(id)).count();
        expected += truth.len();
        for (filter, keep) in &filters {
            let truth = brute_force(&all, &query, 10, keep);
            let hits = nearest(&tenant, &query, Some(filter.clone())).await;
            assert_eq!(hits.len(), 10, "{filter}: k results when k match");
            for hit in &hits {
                let resource = all.iter().find(|r| r.id == *hit).expect("a written resource");
                assert!(keep(resource), "{filter} admitted {}", resource.content);
            }
            found += hits.iter().filter(|id| truth.contains(id)).count();
            expected += truth.len();
        }
    }
    let recall = found as f64 / expected as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// An update puts the new embedding in the tail wherever the old one was (the graph or the
/// tail), and a delete removes the resource from whichever part holds it; searches follow
/// each step, never finding a resource at its old place or after its delete, and a flush
/// leaves every embedding in the graph once, with no stale entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_reach_an_embedding_in_the_tail_or_the_graph() {
    let engine = engine().await;
    let (id, tenant) = cosine_tenant(&engine, "tailupdate").await;
    let graph = write(&tenant, 0, 600, 1).await;
    flush(&engine, &tenant).await;
    let tail = write(&tenant, 600, 610, 2).await;
    assert_eq!(census(&id).await, census_of(10, 600, 0));

    let moved = |r: &Resource, seed: u64| {
        let mut r = r.clone();
        r.embedding = Some(testing::vector(seed, DIMENSION));
        r
    };
    // A graph row and a tail row get new embeddings: both are then in the tail.
    let (in_graph, in_tail) = (moved(&graph[5], 2_000_001), moved(&tail[3], 2_000_002));
    tenant.update_resource(in_graph.clone()).await.expect("update graph row");
    tenant.update_resource(in_tail.clone()).await.expect("update tail row");
    // The graph row's old entry stays, stale, until a flush sweeps it.
    assert_eq!(census(&id).await, census_of(11, 600, 1));
    for (updated, old) in [(&in_graph, &graph[5]), (&in_tail, &tail[3])] {
        let new = updated.embedding.clone().expect("embedding");
        assert_eq!(nearest(&tenant, &new, None).await[0], updated.id, "found at its new place");
        let old_place = old.embedding.clone().expect("embedding");
        let hits = tenant.search_resources(&SearchQuery::new(old_place, 1)).await.expect("search");
        assert!(hits[0].distance > 1e-3, "not at its old place: {hits:?}");
    }

    // Deletes: one row of each part; an embedding removed leaves both parts.
    tenant.delete_resource(graph[7].id).await.expect("delete graph row");
    tenant.delete_resource(tail[4].id).await.expect("delete tail row");
    let mut bare = tail[5].clone();
    bare.embedding = None;
    tenant.update_resource(bare).await.expect("remove an embedding");
    // Each delete takes the graph entry or tail row with it, and so does removing an
    // embedding; the graph row updated above keeps its stale entry until its tail row merges.
    assert_eq!(census(&id).await, census_of(9, 599, 1));
    for gone in [&graph[7], &tail[4], &tail[5]] {
        let query = gone.embedding.clone().expect("embedding");
        assert!(!nearest(&tenant, &query, None).await.contains(&gone.id), "{} found", gone.content);
    }

    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 607, 0));
    let new = in_tail.embedding.clone().expect("embedding");
    assert_eq!(nearest(&tenant, &new, None).await[0], in_tail.id, "found after the merge");
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// A merge killed mid-statement (its backend terminated, as a crash would) or abandoned
/// mid-statement (its future dropped, which closes the connection) moves nothing twice and
/// loses nothing: each resource is in exactly one part, each is still found, and merging
/// again, twice, empties the tail once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_cut_short_moves_nothing_twice_and_loses_nothing() {
    let engine = engine().await;
    let (id, tenant) = cosine_tenant(&engine, "tailcrash").await;
    let written = write(&tenant, 0, 3000, 1).await;
    assert_eq!(census(&id).await, census_of(3000, 0, 0));

    let superuser = std::env::var("PERCOLATE_TEST_POSTGRES_SUPERUSER_URL").expect("superuser url");
    let (killer, connection) =
        tokio_postgres::connect(&superuser, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let flushing = {
        let (provider, handle) = (engine.provider(), tenant.clone());
        async move { provider.flush_vector_index(handle.provider_tenant()).await }
    };
    let schema = SchemaName::of(&id);
    let kill = async {
        for _ in 0..2000 {
            let killed = killer
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE state = 'active' AND query LIKE '%SKIP LOCKED%'
                       AND query LIKE '%' || $1 || '%'",
                    &[&schema.as_str()],
                )
                .await
                .expect("terminate");
            if !killed.is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        false
    };
    let (flushed, killed) = tokio::join!(flushing, kill);
    assert!(killed, "the merge was seen running and killed");
    assert!(flushed.is_err(), "the killed merge reports its failure");
    let after = census(&id).await;
    assert_eq!(after, census_of(after.tail, 3000 - after.tail, 0), "after the kill");
    assert!(after.tail > 0, "the kill came before the tail was empty");

    // Abandoned: the future is dropped while a merge statement runs.
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(30),
        engine.provider().flush_vector_index(tenant.provider_tenant()),
    );
    assert!(abandoned.await.is_err(), "the flush was cut short");
    let after = census(&id).await;
    assert_eq!(after, census_of(after.tail, 3000 - after.tail, 0), "after the abandoned merge");

    for probe in written.iter().step_by(101) {
        let query = probe.embedding.clone().expect("embedding");
        assert_eq!(nearest(&tenant, &query, None).await[0], probe.id, "each is still found");
    }
    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 3000, 0), "merged once");
    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 3000, 0), "a second merge moves nothing");
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// A tenant's tail rows are found by its own searches only: another tenant searching for the
/// same vectors gets its own resources, and a flush of one tenant leaves the other's tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_tail_rows_are_invisible_to_another() {
    let engine = engine().await;
    let (a_id, a) = cosine_tenant(&engine, "taila").await;
    let (b_id, b) = cosine_tenant(&engine, "tailb").await;
    let a_rows = write(&a, 0, 50, 1).await;
    let b_rows = write(&b, 10_000, 10_020, 1).await;
    for probe in &a_rows {
        let query = probe.embedding.clone().expect("embedding");
        let hits = nearest(&b, &query, None).await;
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|hit| b_rows.iter().any(|r| r.id == *hit)), "only b's rows");
    }
    flush(&engine, &b).await;
    assert_eq!(census(&a_id).await, census_of(50, 0, 0), "a's tail is a's to merge");
    assert_eq!(census(&b_id).await, census_of(0, 20, 0));
    engine.delete_tenant(&a_id).await.expect("delete tenant");
    engine.delete_tenant(&b_id).await.expect("delete tenant");
}

/// The vector tail is guarded like every table: set to tenant a, the application role sees
/// none of b's tail rows (b's resources wait there, unmerged) and can put none into b's tail,
/// tagged as either tenant; b's own search still finds its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_vector_tail_is_hidden_from_and_closed_to_another_tenant() {
    let engine = engine().await;
    let a = engine.create_tenant(&fresh_tenant_id("ta"), TenantConfig::default()).await.expect("a");
    let b = engine.create_tenant(&fresh_tenant_id("tb"), TenantConfig::default()).await.expect("b");
    let resources =
        (0..5).map(|i| NewResource::new(format!("b{i}")).with_embedding(vec![1.0, i as f32]));
    let written = b.batch_create_resources(resources.collect()).await.expect("b's resources");
    let b_schema = SchemaName::of(b.id());
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").expect("application url");
    let (mut client, connection) =
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let count = format!("SELECT count(*) FROM {b_schema}.resource_vec_tail");
    for (set, visible) in [(a.id(), 0), (b.id(), 5)] {
        let txn = client.transaction().await.expect("begin");
        txn.execute("SELECT set_config('app.current_tenant', $1, true)", &[&set.as_str()])
            .await
            .expect("set");
        let seen: i64 = txn.query_one(&count, &[]).await.expect("count").get(0);
        assert_eq!(seen, visible, "b's tail rows seen when set to {set}");
        txn.commit().await.expect("commit");
    }
    for tag in [a.id(), b.id()] {
        let txn = client.transaction().await.expect("begin");
        txn.execute("SELECT set_config('app.current_tenant', $1, true)", &[&a.id().as_str()])
            .await
            .expect("set");
        let error = txn
            .execute(
                &format!(
                    "INSERT INTO {b_schema}.resource_vec_tail (tenant_id, id, embedding) \
                     VALUES ($1, gen_random_uuid(), '[1,0]')"
                ),
                &[&tag.as_str()],
            )
            .await
            .expect_err("a tail row went into b's schema");
        assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    }
    let hits = b.search_resources(&SearchQuery::new(vec![1.0, 0.0], 5)).await.expect("search");
    assert_eq!(hits.len(), written.len(), "b finds its own tail rows");
    assert!(
        a.search_resources(&SearchQuery::new(vec![1.0, 0.0], 5)).await.expect("search").is_empty()
    );
    engine.delete_tenant(a.id()).await.expect("delete tenant");
    engine.delete_tenant(b.id()).await.expect("delete tenant");
}

/// Row `i` of a clustered set: one of 16 centres plus noise, so that nearest neighbours share
/// a centre as real embeddings share a topic.
fn clustered(i: u64) -> Vec<f32> {
    let centre = testing::vector(i % 16, DIMENSION);
    let noise = testing::vector(10_000_000 + i, DIMENSION);
    centre.iter().zip(&noise).map(|(c, n)| c + 0.35 * n).collect()
}

/// A tail long enough to be read through its IVF index (trained by the flush from the graph)
/// still finds each of its rows first by the row's own vector, and the nearest neighbours of
/// graph and tail together; the training leaves no row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tail_is_searched_through_its_index() {
    let engine = engine().await;
    let (id, tenant) = cosine_tenant(&engine, "tailcells").await;
    let batch = |from: u64, to: u64| -> Vec<NewResource> {
        (from..to).map(|i| NewResource::new(format!("r{i}")).with_embedding(clustered(i))).collect()
    };
    let mut all = Vec::new();
    for start in (0..6000).step_by(1000) {
        all.extend(tenant.batch_create_resources(batch(start, start + 1000)).await.expect("put"));
    }
    // A tail longer than the graph: the flush rebuilds the index, then trains the tail's.
    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 6000, 0), "no training copy left behind");
    let owner = owner_client().await;
    let schema = SchemaName::of(&id);
    let indexed: bool = owner
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1
             AND indexname = 'resource_vec_tail_cells' AND indexdef LIKE '%ivfflat%')",
            &[&schema.as_str()],
        )
        .await
        .expect("catalog")
        .get(0);
    assert!(indexed, "the flush trained the tail index");

    let tail = tenant.batch_create_resources(batch(6000, 7500)).await.expect("put tail");
    assert_eq!(census(&id).await, census_of(1500, 6000, 0));
    all.extend(tail.iter().cloned());
    for probe in tail.iter().step_by(53) {
        let query = probe.embedding.clone().expect("embedding");
        assert_eq!(nearest(&tenant, &query, None).await[0], probe.id, "finds itself first");
    }
    let (mut found, mut from_tail, mut expected) = (0, 0, 0);
    for q in 0..40 {
        let query = clustered(20_000_000 + q);
        let truth = brute_force(&all, &query, 10, |_| true);
        let hits = nearest(&tenant, &query, None).await;
        assert_eq!(hits.len(), 10);
        found += hits.iter().filter(|id| truth.contains(id)).count();
        from_tail += hits.iter().filter(|id| tail.iter().any(|r| r.id == **id)).count();
        expected += truth.len();
    }
    let recall = found as f64 / expected as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
    assert!(from_tail >= 40, "a fifth of the rows are in the tail, {from_tail} of 400 hits");
    flush(&engine, &tenant).await;
    assert_eq!(census(&id).await, census_of(0, 7500, 0));
    engine.delete_tenant(&id).await.expect("delete tenant");
}
