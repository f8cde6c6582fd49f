//! The conformance suite against the PostgreSQL provider.
//!
//! Needs a server: run through `scripts/with-postgres.sh`, which exports
//! `PERCOLATE_TEST_POSTGRES_URL` (the application role) and
//! `PERCOLATE_TEST_POSTGRES_ADMIN_URL` (the owner role). Without them every test fails: a
//! missing server must never look like a pass.

use percolate::postgres::tenant::SchemaName;
use percolate::postgres::{PgConfig, PgProvider};
use percolate::{
    EntityQuery, Filter, MemoryEngine, Metric, NewEntity, NewResource, Provider, SearchQuery,
    TenantConfig, TenantId, testing,
};

#[path = "postgres/tail.rs"]
mod tail;

struct PgHarness {
    engine: Option<MemoryEngine<PgProvider>>,
}

fn config() -> PgConfig {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PERCOLATE_TEST_POSTGRES_URL is not set: run the PostgreSQL tests through \
             scripts/with-postgres.sh (e.g. scripts/with-postgres.sh cargo test --release \
             --features postgres --test postgres)"
        )
    });
    let config = PgConfig::new(url);
    match std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        Ok(admin) => config.with_admin_url(admin),
        Err(_) => config,
    }
}

async fn open() -> MemoryEngine<PgProvider> {
    let provider = PgProvider::connect(config()).await.unwrap_or_else(|e| panic!("connect: {e:?}"));
    MemoryEngine::new(provider)
}

impl testing::Harness for PgHarness {
    type P = PgProvider;

    async fn new() -> Self {
        Self { engine: Some(open().await) }
    }

    fn engine(&self) -> &MemoryEngine<PgProvider> {
        self.engine.as_ref().expect("engine open")
    }

    async fn reopen(&mut self) {
        // A new provider with new pools; the data is on the server.
        self.engine = None;
        self.engine = Some(open().await);
    }
}

percolate::conformance_suite!(PgHarness);

/// The conformance suite's tenants are small, so they are searched exactly: this one is
/// searched through the HNSW index (`exact_below` 0), and every answer is checked against
/// brute force: recall@10 at least 0.95 at `ef_search` 200 (the index is approximate, but at
/// that width on 3000 points it misses almost nothing), exact distances, nearest first. The
/// database's own statistics confirm the index was scanned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_searches_of_a_large_tenant_find_the_brute_force_neighbours() {
    const ROWS: u64 = 3000;
    const DIMENSION: usize = 32;
    const QUERIES: u64 = 20;
    let provider = PgProvider::connect(config().with_exact_below(0).with_ef_search(200))
        .await
        .unwrap_or_else(|e| panic!("connect: {e:?}"));
    let engine = MemoryEngine::new(provider);
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    let id = TenantId::new(format!("hnsw{}", &uuid[uuid.len() - 20..])).expect("tenant id");
    let config = TenantConfig { dimension: Some(DIMENSION as u32), metric: Metric::Cosine };
    let tenant = engine.create_tenant(&id, config).await.expect("tenant");
    let mut created = Vec::new();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                NewResource::new(format!("r{i}")).with_embedding(testing::vector(i, DIMENSION))
            })
            .collect();
        created.extend(tenant.batch_create_resources(batch).await.expect("insert"));
    }
    let mut found = 0;
    for q in 0..QUERIES {
        let query = testing::vector(1_000_000 + q, DIMENSION);
        let hits =
            tenant.search_resources(&SearchQuery::new(query.clone(), 10)).await.expect("search");
        assert_eq!(hits.len(), 10);
        let mut truth: Vec<(f64, _)> = created
            .iter()
            .map(|r| {
                (
                    testing::brute_distance(
                        Metric::Cosine,
                        r.embedding.as_deref().expect("embedding"),
                        &query,
                    ),
                    r.id,
                )
            })
            .collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let truth: Vec<_> = truth[..10].iter().map(|(_, id)| *id).collect();
        found += hits.iter().filter(|hit| truth.contains(&hit.resource.id)).count();
        for hit in &hits {
            let expected = testing::brute_distance(
                Metric::Cosine,
                hit.resource.embedding.as_deref().expect("embedding"),
                &query,
            );
            assert!((f64::from(hit.distance) - expected).abs() < 1e-4, "distance {hit:?}");
        }
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "nearest first");
    }
    let recall = found as f64 / (QUERIES * 10) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
    assert_eq!(engine.provider().index_searches(), QUERIES, "searches sent to the index");

    // The server counts the index scans (its statistics reach the view within seconds).
    let admin = std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| std::env::var("PERCOLATE_TEST_POSTGRES_URL").expect("url"));
    let (client, connection) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let schema = SchemaName::of(&id);
    let mut scans = 0;
    for _ in 0..300 {
        scans = client
            .query_one(
                "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
                 WHERE schemaname = $1 AND indexrelname = 'resources_embedding'",
                &[&schema.as_str()],
            )
            .await
            .expect("statistics")
            .get::<_, i64>(0);
        if scans >= QUERIES as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(scans >= QUERIES as i64, "the index was scanned {scans} times for {QUERIES} searches");
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// A raw connection as the owner role, for reading the server's statistics.
async fn owner_client() -> tokio_postgres::Client {
    let admin = std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL").expect("admin url");
    let (client, connection) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Rows of `table` in `tenant`'s schema read so far by sequential scans and fetched by index
/// scans, as the server's statistics report them.
async fn rows_read(client: &tokio_postgres::Client, tenant: &TenantId, table: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint
             FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
            &[&SchemaName::of(tenant).as_str(), &table],
        )
        .await
        .expect("statistics")
        .get(0)
}

/// How many rows of `table` `work` makes the server read. A session reports its statistics
/// about a second after its transaction ends: this waits for at least `at_least` to arrive,
/// then long enough for anything later to arrive too.
async fn reads_of(
    tenant: &TenantId,
    table: &str,
    at_least: i64,
    work: impl std::future::Future<Output = ()>,
) -> i64 {
    let client = owner_client().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = rows_read(&client, tenant, table).await;
    work.await;
    for _ in 0..150 {
        if rows_read(&client, tenant, table).await - before >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    rows_read(&client, tenant, table).await - before
}

fn fresh_tenant_id(prefix: &str) -> TenantId {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    TenantId::new(format!("{prefix}{}", &uuid[uuid.len() - 20..])).expect("tenant id")
}

/// Resources `0..rows` at L2 distance `i` from the query `[0, 1]` (row `i` has embedding
/// `[i, 1]`), with metadata `{"i": i}`.
async fn distance_ladder(
    engine: &MemoryEngine<PgProvider>,
    rows: u64,
) -> (TenantId, percolate::TenantHandle<PgProvider>) {
    let id = fresh_tenant_id("ladder");
    // The dimension is fixed up front, so the index is built on the empty table.
    let config = TenantConfig { dimension: Some(2), metric: Metric::L2 };
    let tenant = engine.create_tenant(&id, config).await.expect("tenant");
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let mut metadata = percolate::Metadata::new();
                metadata.insert("i".into(), serde_json::json!(i));
                NewResource::new(format!("r{i}"))
                    .with_embedding(vec![i as f32, 1.0])
                    .with_metadata(metadata)
            })
            .collect();
        tenant.batch_create_resources(batch).await.expect("insert");
    }
    // Everything in the graph: the reads counted below are the index's and the scan's.
    let provider = engine.provider();
    provider.flush_vector_index(tenant.provider_tenant()).await.expect("flush");
    (id, tenant)
}

/// A filter that matches fewer than `k` rows, and none of it can be pushed into SQL: the
/// search streams candidates from one sorted scan of the tenant and fetches the winners'
/// rows only. It must not re-read the table in growing windows (which read it four times
/// here), and it still finds every match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_matching_fewer_than_k_reads_the_tenant_once() {
    const ROWS: u64 = 3000;
    // No exact-size shortcut: the search goes where a large tenant's goes.
    let provider = PgProvider::connect(config().with_exact_below(0))
        .await
        .unwrap_or_else(|e| panic!("connect: {e:?}"));
    let engine = MemoryEngine::new(provider);
    let (id, tenant) = distance_ladder(&engine, ROWS).await;
    let query = SearchQuery::new(vec![0.0, 1.0], 5);

    let nothing = Filter::parse(&serde_json::json!({"i": {"$gt": ROWS}})).expect("filter");
    let search = query.clone().with_filter(nothing);
    let read = reads_of(&id, "resources", ROWS as i64, async {
        assert!(tenant.search_resources(&search).await.expect("search").is_empty());
    })
    .await;
    assert!(
        (ROWS as i64..2 * ROWS as i64).contains(&read),
        "the search read {read} rows of a {ROWS}-row tenant"
    );

    // Three matches, spread over the table: all three come back, nearest first.
    let three = Filter::parse(&serde_json::json!({"i": {"$in": [2999, 7, 1500]}})).expect("filter");
    let hits = tenant.search_resources(&query.clone().with_filter(three)).await.expect("search");
    let found: Vec<_> = hits.iter().map(|hit| hit.resource.content.clone()).collect();
    assert_eq!(found, ["r7", "r1500", "r2999"]);
    assert_eq!(hits[0].resource.embedding.as_deref(), Some(&[7.0, 1.0][..]), "full rows");
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// `filter_scan_limit` bounds what a filtered search reads: past it the search returns what
/// it found, here nothing, where an unbounded one would scan on to the matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_stops_at_its_scan_limit() {
    let bounded = PgProvider::connect(config().with_exact_below(0).with_filter_scan_limit(100))
        .await
        .unwrap_or_else(|e| panic!("connect: {e:?}"));
    let engine = MemoryEngine::new(bounded);
    let (id, tenant) = distance_ladder(&engine, 1000).await;
    let far = Filter::parse(&serde_json::json!({"i": {"$gte": 500}})).expect("filter");
    let query = SearchQuery::new(vec![0.0, 1.0], 5).with_filter(far);
    assert!(tenant.search_resources(&query).await.expect("search").is_empty());
    let unbounded = MemoryEngine::new(
        PgProvider::connect(config().with_exact_below(0))
            .await
            .unwrap_or_else(|e| panic!("connect: {e:?}")),
    );
    let hits = unbounded.tenant(&id).await.expect("open").search_resources(&query).await;
    let found: Vec<_> = hits.expect("search").iter().map(|h| h.resource.content.clone()).collect();
    assert_eq!(found, ["r500", "r501", "r502", "r503", "r504"]);
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// Entity search with a properties filter reads pages in name order through the name index
/// and stops when `limit` entities match, rather than fetching every name match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_search_with_a_properties_filter_reads_only_the_pages_it_needs() {
    const ENTITIES: u64 = 2000;
    let engine = open().await;
    let id = fresh_tenant_id("entities");
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("tenant");
    for i in 0..ENTITIES {
        let mut entity = NewEntity::new(format!("item {i:05}"), "thing");
        entity.properties.insert("n".into(), serde_json::json!(i));
        tenant.create_entity(entity).await.expect("entity");
    }
    let mut query = EntityQuery::new("item");
    query.limit = 5;
    query.properties = Some(Filter::parse(&serde_json::json!({"n": {"$gte": 3}})).expect("filter"));
    let read = reads_of(&id, "entities", 5, async {
        let found = tenant.search_entities(&query).await.expect("search");
        let names: Vec<_> = found.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["item 00003", "item 00004", "item 00005", "item 00006", "item 00007"]);
    })
    .await;
    assert!(read < ENTITIES as i64 / 4, "the search read {read} of {ENTITIES} entities");

    // A filter that matches few, far apart: the pages go on until the matches are found.
    query.properties =
        Some(Filter::parse(&serde_json::json!({"n": {"$in": [1999, 0, 1000]}})).expect("filter"));
    let found = tenant.search_entities(&query).await.expect("search");
    let names: Vec<_> = found.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["item 00000", "item 01000", "item 01999"]);
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// A tenant schema made before full text (no `text_terms` columns) is given them when a
/// provider opens it: its existing resources and moments are then found by their content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_made_before_full_text_gains_it_on_open() {
    let engine = open().await;
    let id = fresh_tenant_id("textmig");
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("create");
    let contents = ["the contract with Acme", "an apple pie", "Acme renewed it"];
    let written = tenant
        .batch_create_resources(contents.iter().map(|c| NewResource::new(*c)).collect())
        .await
        .expect("write");
    drop(tenant);
    drop(engine);
    let schema = SchemaName::of(&id);
    let owner = owner_client().await;
    for table in ["resources", "moments"] {
        let drop = format!("ALTER TABLE {schema}.{table} DROP COLUMN text_terms");
        owner.batch_execute(&drop).await.expect("drop text_terms");
    }
    let engine = open().await;
    let tenant = engine.tenant(&id).await.expect("open");
    let hits = tenant.text_search(&percolate::TextQuery::new("apple", 5)).await.expect("search");
    let ids: Vec<uuid::Uuid> = hits.iter().map(|hit| hit.record.id()).collect();
    assert_eq!(ids, vec![written[1].id.as_uuid()]);
    let hits = tenant.text_search(&percolate::TextQuery::new("acme", 5)).await.expect("search");
    assert_eq!(hits.len(), 2);
    // Opening it again finds the columns and changes nothing.
    drop(tenant);
    let tenant = open().await.tenant(&id).await.expect("reopen");
    assert_eq!(tenant.text_search(&percolate::TextQuery::new("pie", 5)).await.expect("s").len(), 1);
    engine.delete_tenant(&id).await.expect("delete tenant");
}

/// A row the text fold cannot take (another transaction holds it) is still found, analysed by
/// the search itself; the next search after the lock is gone indexes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_text_fold_skips_is_still_found() {
    let engine = open().await;
    let id = fresh_tenant_id("textlock");
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("create");
    let held = tenant.create_resource(NewResource::new("a locked apple")).await.expect("write");
    let schema = SchemaName::of(&id);
    let mut owner = owner_client().await;
    let lock = owner.transaction().await.expect("begin");
    let tenant_setting = "SELECT set_config('app.current_tenant', $1, true)";
    lock.execute(tenant_setting, &[&id.as_str()]).await.expect("as the tenant");
    let select = format!("SELECT 1 FROM {schema}.resources WHERE id = $1 FOR UPDATE");
    lock.execute(&select, &[&held.id.as_uuid()]).await.expect("lock");
    let pending = format!("SELECT count(*) FROM {schema}.resources WHERE text_terms IS NULL");
    let found = tenant.text_search(&percolate::TextQuery::new("apple", 5)).await.expect("search");
    assert_eq!(found.iter().map(|h| h.record.id()).collect::<Vec<_>>(), [held.id.as_uuid()]);
    let still: i64 = lock.query_one(&pending, &[]).await.expect("count").get(0);
    assert_eq!(still, 1, "the fold skipped the locked row");
    lock.rollback().await.expect("rollback");
    tenant.text_search(&percolate::TextQuery::new("apple", 5)).await.expect("search");
    let check = owner.transaction().await.expect("begin");
    check.execute(tenant_setting, &[&id.as_str()]).await.expect("as the tenant");
    let left: i64 = check.query_one(&pending, &[]).await.expect("count").get(0);
    check.commit().await.expect("commit");
    assert_eq!(left, 0, "the next search indexed it");
    engine.delete_tenant(&id).await.expect("delete tenant");
}
