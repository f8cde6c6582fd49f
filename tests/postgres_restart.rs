//! The PostgreSQL server goes away under load and comes back: calls fail with a backend error
//! naming the cause while it is down, the pools recover by themselves once it is back, and no
//! transaction is half applied. Needs the server `scripts/with-postgres.sh` starts (run this
//! file in an invocation of its own: it stops and restarts that server through `pg_ctl`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use percolate::postgres::{PgConfig, PgProvider};
use percolate::{
    Direction, EntityId, Error, MemoryEngine, NewEdge, NewEntity, NewResource, Record, RecordKind,
    TenantConfig, TenantHandle, TenantId,
};

const WRITERS: usize = 8;

fn url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run through scripts/with-postgres.sh (scripts/with-postgres.sh \
             cargo test --release --features postgres --test postgres_restart)"
        )
    })
}

/// The running server as `pg_ctl` sees it: its binaries, data directory, the options it was
/// started with, and the system user that owns it (initdb refuses root).
struct Server {
    pg_ctl: String,
    data: String,
    options: String,
    uid: u32,
    gid: u32,
}

impl Server {
    async fn find() -> Self {
        let (client, connection) = tokio_postgres::connect(
            &url("PERCOLATE_TEST_POSTGRES_SUPERUSER_URL"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect as the superuser");
        let connection = tokio::spawn(connection);
        let data: String =
            client.query_one("SHOW data_directory", &[]).await.expect("data dir").get(0);
        let bin: String = client
            .query_one("SELECT setting FROM pg_config WHERE name = 'BINDIR'", &[])
            .await
            .expect("bindir")
            .get(0);
        drop(client);
        let _ = connection.await;
        // `postmaster.opts` holds the command line the server was started with: the binary,
        // then each argument in double quotes. `pg_ctl start -o` takes them all but `-D`.
        let opts = std::fs::read_to_string(format!("{data}/postmaster.opts")).expect("opts");
        let arguments: Vec<&str> = opts.split('"').skip(1).step_by(2).collect();
        let mut options = Vec::new();
        let mut skip = false;
        for argument in arguments {
            if std::mem::take(&mut skip) {
                continue;
            }
            if argument == "-D" {
                skip = true;
                continue;
            }
            options.push(if argument.contains(' ') {
                format!("'{argument}'")
            } else {
                argument.to_string()
            });
        }
        let owner = std::fs::metadata(&data).expect("data dir metadata");
        Self {
            pg_ctl: format!("{bin}/pg_ctl"),
            data,
            options: options.join(" "),
            uid: owner.uid(),
            gid: owner.gid(),
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut command = if self.uid == 0 {
            Command::new(&self.pg_ctl)
        } else {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.gid))
                .args(["--clear-groups", "--"])
                .arg(&self.pg_ctl);
            command
        };
        command.args(["-D", &self.data]).args(args);
        let output = command.output().expect("run pg_ctl");
        assert!(
            output.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    fn start(&self) {
        let log = format!("{}/../restart.log", self.data);
        self.pg_ctl(&["-w", "-t", "60", "-l", &log, "-o", &self.options, "start"]);
    }
}

/// What one writer saw: transactions acknowledged, and those that failed (their outcome is
/// unknown when the connection broke during `COMMIT`, but it is all or nothing).
#[derive(Default)]
struct Outcomes {
    acknowledged: BTreeSet<u64>,
    failed: BTreeSet<u64>,
    errors: Vec<String>,
}

/// Transaction `n` of a writer: a resource, an entity and an edge from the writer's anchor
/// to that entity, all named `w{writer} n{n}`.
async fn write(
    tenant: &TenantHandle<PgProvider>,
    writer: usize,
    anchor: EntityId,
    n: u64,
) -> percolate::Result<()> {
    let name = format!("w{writer} n{n}");
    let mut txn = tenant.begin().await?;
    txn.create_resource(NewResource::new(name.clone()).with_embedding(vec![n as f32, 1.0, 0.5]))
        .await?;
    let entity = txn.create_entity(NewEntity::new(name.clone(), "event")).await?;
    txn.create_edge(NewEdge::new(anchor, entity.id, "saw")).await?;
    txn.commit().await
}

async fn writer_loop(
    tenant: TenantHandle<PgProvider>,
    writer: usize,
    anchor: EntityId,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match write(&tenant, writer, anchor, n).await {
            Ok(()) => {
                outcomes.acknowledged.insert(n);
            }
            Err(error) => {
                assert!(
                    matches!(error, Error::Backend { .. } | Error::Conflict(_)),
                    "a server that went away is a backend error: {}",
                    error.with_causes()
                );
                outcomes.failed.insert(n);
                if outcomes.errors.len() < 3 {
                    outcomes.errors.push(error.with_causes());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    outcomes
}

async fn names(tenant: &TenantHandle<PgProvider>, kind: RecordKind) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = tenant.scan(kind, after, 1000).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(last.id());
        for record in page {
            let name = match record {
                Record::Resource(r) => r.content,
                Record::Entity(e) => e.name,
                _ => continue,
            };
            *out.entry(name).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_under_load_fails_calls_clearly_and_half_applies_nothing() {
    let server = Server::find().await;
    let config = PgConfig::new(url("PERCOLATE_TEST_POSTGRES_URL"))
        .with_admin_url(url("PERCOLATE_TEST_POSTGRES_ADMIN_URL"));
    let engine = MemoryEngine::new(PgProvider::connect(config).await.expect("connect"));
    let id = TenantId::new(format!("restart-{}", uuid::Uuid::now_v7().simple())).expect("id");
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("tenant");
    let mut anchors = Vec::new();
    for writer in 0..WRITERS {
        let anchor = NewEntity::new(format!("anchor {writer}"), "anchor");
        anchors.push(tenant.create_entity(anchor).await.expect("anchor").id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer_loop(tenant.clone(), w, anchors[w], Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.stop();
    // While the server is down every call fails, and says why.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = tenant.get_entity(anchors[0]).await.expect_err("a read with the server down");
    assert!(matches!(down, Error::Backend { .. }), "not a backend error: {}", down.with_causes());
    println!("with the server down: {}", down.with_causes());
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start();

    // The pools recover by themselves: the same engine serves calls again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tenant.get_entity(anchors[0]).await {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                println!("waiting for the pool: {}", error.with_causes());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the pool did not recover: {}", error.with_causes()),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for writer in writers {
        all.push(writer.await.expect("writer task"));
    }

    let resources = names(&tenant, RecordKind::Resource).await;
    let entities = names(&tenant, RecordKind::Entity).await;
    let mut failed = 0;
    let mut after_restart = 0;
    for (w, outcomes) in all.iter().enumerate() {
        println!(
            "writer {w}: {} acknowledged, {} failed, e.g. {:?}",
            outcomes.acknowledged.len(),
            outcomes.failed.len(),
            outcomes.errors.first()
        );
        failed += outcomes.failed.len();
        if let Some(last_failure) = outcomes.failed.last() {
            after_restart += outcomes.acknowledged.range(last_failure..).count();
        }
        let targets: BTreeSet<EntityId> = tenant
            .get_edges(anchors[w], Direction::Out, None)
            .await
            .expect("edges")
            .iter()
            .map(|e| e.to)
            .collect();
        let max = outcomes.acknowledged.iter().chain(&outcomes.failed).max().copied().unwrap_or(0);
        let mut applied = 0;
        for n in 1..=max {
            let name = format!("w{w} n{n}");
            let resource = resources.get(&name).copied().unwrap_or(0);
            let entity = entities.get(&name).copied().unwrap_or(0);
            assert!(resource <= 1 && entity <= 1, "{name} written twice");
            assert_eq!(resource, entity, "{name}: a transaction half applied");
            if outcomes.acknowledged.contains(&n) {
                assert_eq!(resource, 1, "{name}: an acknowledged transaction is missing");
            }
            applied += entity;
        }
        assert_eq!(targets.len(), applied, "writer {w}: one edge per applied transaction");
    }
    assert!(failed > 0, "no call failed while the server was down");
    assert!(after_restart > 0, "no transaction was acknowledged after the restart");
    drop(tenant);
    engine.delete_tenant(&id).await.expect("delete tenant");
}
