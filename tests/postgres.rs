//! The conformance suite against the PostgreSQL provider.
//!
//! Needs a server: run through `scripts/with-postgres.sh`, which exports
//! `PERCOLATE_TEST_POSTGRES_URL` (the application role) and
//! `PERCOLATE_TEST_POSTGRES_ADMIN_URL` (the owner role). Without them every test fails: a
//! missing server must never look like a pass.

use percolate::postgres::tenant::SchemaName;
use percolate::postgres::{PgConfig, PgProvider};
use percolate::{MemoryEngine, Metric, NewResource, SearchQuery, TenantConfig, TenantId, testing};

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
