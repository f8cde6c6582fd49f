//! The soak on PostgreSQL: 16 tasks on one tenant for `PERCOLATE_SOAK_SECONDS` (default 20),
//! then the end state compared with every acknowledged call (`tests/load/mod.rs`). Needs the
//! server `scripts/with-postgres.sh` starts; without it the test fails.

mod load;

use percolate::MemoryEngine;
use percolate::postgres::{PgConfig, PgProvider};

fn config() -> PgConfig {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PERCOLATE_TEST_POSTGRES_URL is not set: run through scripts/with-postgres.sh \
             (scripts/with-postgres.sh cargo test --release --features cli,postgres --test \
             postgres_soak)"
        )
    });
    let config = PgConfig::new(url);
    match std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        Ok(admin) => config.with_admin_url(admin),
        Err(_) => config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_one_postgres_tenant_lose_and_duplicate_nothing() {
    let provider = PgProvider::connect(config()).await.unwrap_or_else(|e| panic!("connect: {e:?}"));
    let engine = MemoryEngine::new(provider);
    load::run(&engine, load::duration(20)).await;
}
