//! A tenant with every kind of record goes RocksDB → export → PostgreSQL import → export →
//! RocksDB import → export: every export is the same bytes, and the same queries give the same
//! answers on every hop. Then the CLI's `migrate` does the RocksDB → PostgreSQL hop itself.
//!
//! Needs a server: run through `scripts/with-postgres.sh`, which exports
//! `PERCOLATE_TEST_POSTGRES_URL` and `PERCOLATE_TEST_POSTGRES_ADMIN_URL`. Without them the tests
//! fail: a missing server must never look like a pass.
#![cfg(feature = "postgres")]

mod portable_fixture;

use std::path::Path;
use std::process::Command;

use percolate::portable::{self, Progress};
use percolate::postgres::{PgConfig, PgProvider};
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{MemoryEngine, Provider, TenantConfig, TenantId};
use portable_fixture::{Fixture, answers, fill};

fn urls() -> (String, Option<String>) {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PERCOLATE_TEST_POSTGRES_URL is not set: run through scripts/with-postgres.sh \
             (e.g. scripts/with-postgres.sh cargo test --release --features postgres --test \
             round_trip)"
        )
    });
    (url, std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL").ok())
}

async fn postgres() -> MemoryEngine<PgProvider> {
    let (url, admin) = urls();
    let mut config = PgConfig::new(url);
    if let Some(admin) = admin {
        config = config.with_admin_url(admin);
    }
    MemoryEngine::new(
        PgProvider::connect(config).await.unwrap_or_else(|e| panic!("connect: {e:?}")),
    )
}

fn rocks(dir: &Path) -> MemoryEngine<RocksProvider> {
    MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir)).expect("open store"))
}

/// A tenant name no earlier run on the same server used (the name is in every export, so all
/// hops use the same one).
fn unique_tenant(prefix: &str) -> TenantId {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    TenantId::new(format!("{prefix}-{}", &suffix[20..])).expect("tenant id")
}

fn quiet(_: Progress) {}

async fn export<P: Provider>(engine: &MemoryEngine<P>, tenant: &TenantId) -> Vec<u8> {
    let handle = engine.tenant(tenant).await.expect("tenant");
    let mut out = Vec::new();
    portable::export(&handle, &mut out, quiet).await.expect("export");
    out
}

async fn import<P: Provider>(engine: &MemoryEngine<P>, bytes: &[u8], dir: &Path) {
    let file = dir.join(format!("{}.jsonl", uuid::Uuid::now_v7()));
    std::fs::write(&file, bytes).expect("write");
    let summary = portable::import(engine, &file, None, quiet).await.expect("import");
    assert_eq!(summary.inserted, summary.header.counts);
}

async fn answers_on<P: Provider>(
    engine: &MemoryEngine<P>,
    tenant: &TenantId,
    fixture: &Fixture,
) -> Vec<String> {
    let handle = engine.tenant(tenant).await.expect("tenant");
    answers(&handle, fixture).await.expect("answers")
}

fn assert_same(a: &[u8], b: &[u8], hop: &str) {
    assert!(
        a == b,
        "{hop}: exports differ\n--- first\n{}\n--- then\n{}",
        String::from_utf8_lossy(a),
        String::from_utf8_lossy(b)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rocksdb_to_postgres_to_rocksdb_is_lossless() {
    let work = tempfile::tempdir().expect("temp dir");
    let tenant = unique_tenant("rt");

    let first = rocks(&work.path().join("first"));
    let handle = first.create_tenant(&tenant, TenantConfig::default()).await.expect("create");
    let fixture = fill(&handle, 60).await.expect("fill");
    drop(handle);
    let expected = answers_on(&first, &tenant, &fixture).await;
    let export_1 = export(&first, &tenant).await;

    let pg = postgres().await;
    import(&pg, &export_1, work.path()).await;
    assert_eq!(answers_on(&pg, &tenant, &fixture).await, expected, "answers on PostgreSQL");
    let export_2 = export(&pg, &tenant).await;
    assert_same(&export_1, &export_2, "RocksDB → PostgreSQL");

    let second = rocks(&work.path().join("second"));
    import(&second, &export_2, work.path()).await;
    assert_eq!(answers_on(&second, &tenant, &fixture).await, expected, "answers back on RocksDB");
    let export_3 = export(&second, &tenant).await;
    assert_same(&export_2, &export_3, "PostgreSQL → RocksDB");

    // Importing into PostgreSQL again is idempotent.
    let file = work.path().join("again.jsonl");
    std::fs::write(&file, &export_3).expect("write");
    let again = portable::import(&pg, &file, None, quiet).await.expect("import again");
    assert_eq!(again.inserted.total(), 0);
    assert_eq!(again.skipped, again.header.counts);
    assert_same(&export_1, &export(&pg, &tenant).await, "PostgreSQL after a second import");

    pg.delete_tenant(&tenant).await.expect("delete tenant");
}

#[test]
fn cli_migrates_a_tenant_from_rocksdb_to_postgres_and_back() {
    let (url, admin) = urls();
    let work = tempfile::tempdir().expect("temp dir");
    let tenant = unique_tenant("cli");
    let percolate = |args: &[&str], rocks: &Path, provider: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
        command
            .args(args)
            .env_remove("PERCOLATE_CONFIG")
            .env("PERCOLATE_STORAGE_PROVIDER", provider)
            .env("PERCOLATE_ROCKSDB_PATH", rocks)
            .env("PERCOLATE_POSTGRES_URL", &url);
        match &admin {
            Some(admin) => command.env("PERCOLATE_POSTGRES_ADMIN_URL", admin),
            None => command.env_remove("PERCOLATE_POSTGRES_ADMIN_URL"),
        };
        let output = command.output().expect("run percolate");
        assert!(
            output.status.success(),
            "percolate {args:?} ({provider}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let source = work.path().join("source");
    let back = work.path().join("back");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let engine = rocks(&source);
        let handle = engine.create_tenant(&tenant, TenantConfig::default()).await.expect("create");
        fill(&handle, 30).await.expect("fill");
    });
    let name = tenant.as_str();
    let export_1 = percolate(&["export", "--tenant", name], &source, "rocksdb");
    percolate(
        &["migrate", "--tenant", name, "--from", "rocksdb", "--to", "postgres"],
        &source,
        "rocksdb",
    );
    let export_2 = percolate(&["export", "--tenant", name], &source, "postgres");
    assert_same(&export_1, &export_2, "CLI migrate RocksDB → PostgreSQL");
    let to = format!("rocksdb:{}", back.display());
    percolate(
        &["migrate", "--tenant", name, "--from", "postgres", "--to", &to],
        &source,
        "rocksdb",
    );
    let export_3 = percolate(&["export", "--tenant", name], &back, "rocksdb");
    assert_same(&export_1, &export_3, "CLI migrate PostgreSQL → RocksDB");
    percolate(&["tenant", "delete", name], &source, "postgres");
}
