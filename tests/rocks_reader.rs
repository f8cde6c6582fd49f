//! A second process reads a RocksDB store while the first writes it: a read-only provider (a
//! RocksDB secondary) sees the writer's commits after it catches up, vector index included;
//! writes through it are refused; it writes nothing in the store; a second writer is refused
//! with an error naming the lock file and the process that holds it.
//!
//! The other processes are real: the `percolate` binary, and this test binary run again as a
//! long-lived reader that takes commands on stdin (`reader_child_process`).

// Helpers here are test code too: a failed setup step should stop the test where it happened.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
use percolate::{
    Edge, Entity, EntityQuery, Error, MemoryEngine, NewEdge, NewEntity, NewMoment, NewResource,
    Record, RecordKind, Resource, ResourceId, SearchQuery, TenantConfig, TenantHandle, TenantId,
    TimeRange, Timestamp, TraverseQuery,
};

const DIMENSION: usize = 8;
const CHILD_ROOT: &str = "PERCOLATE_TEST_READER_ROOT";
const CHILD_WRITES: &str = "PERCOLATE_TEST_CHILD_WRITES";

fn tenant_id() -> TenantId {
    TenantId::new("shared").unwrap()
}

fn config(root: &Path, read_only: bool, key: Option<MasterKey>) -> RocksConfig {
    let mut config = RocksConfig::new(root);
    config.read_only = read_only;
    config.master_key = key;
    // Small memtables, so the writer's data is spread over table files and the log.
    config.write_buffer_bytes = 64 << 10;
    // The graph, not an exact scan, answers searches whenever points are in it.
    config.exact_search_below = 0;
    config
}

fn open(root: &Path, read_only: bool, key: Option<MasterKey>) -> MemoryEngine<RocksProvider> {
    MemoryEngine::new(RocksProvider::open(config(root, read_only, key)).unwrap())
}

/// A unit vector pointing mostly along axis `axis`, made distinct by `seed`.
fn vector(axis: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMENSION).map(|i| ((seed as usize + i) % 7) as f32 * 0.01).collect();
    v[axis % DIMENSION] = 1.0;
    v
}

async fn resource(
    tenant: &TenantHandle<RocksProvider>,
    text: &str,
    embedding: Vec<f32>,
) -> Resource {
    let mut metadata = percolate::Metadata::new();
    metadata.insert("text".into(), text.into());
    tenant
        .create_resource(NewResource::new(text).with_metadata(metadata).with_embedding(embedding))
        .await
        .unwrap()
}

async fn nearest(tenant: &TenantHandle<RocksProvider>, query: Vec<f32>) -> Option<ResourceId> {
    let hits = tenant.search_resources(&SearchQuery::new(query, 1)).await.unwrap();
    hits.first().map(|hit| hit.resource.id)
}

/// What the writer stores before the reader opens: `n` resources on axes 0..n, two entities
/// joined by an edge, a moment.
struct Written {
    resources: Vec<Resource>,
    entities: Vec<Entity>,
    edge: Edge,
}

async fn fill(writer: &MemoryEngine<RocksProvider>, n: usize) -> Written {
    let config = TenantConfig { dimension: Some(DIMENSION as u32), ..TenantConfig::default() };
    let tenant = writer.create_tenant(&tenant_id(), config).await.unwrap();
    let mut resources = Vec::new();
    for i in 0..n {
        resources.push(
            resource(
                &tenant,
                &format!("first {i} {}", "pad ".repeat(200)),
                vector(i % 4, i as u64),
            )
            .await,
        );
    }
    let a = tenant.create_entity(NewEntity::new("Ada Lovelace", "person")).await.unwrap();
    let b = tenant.create_entity(NewEntity::new("Analytical Engine", "machine")).await.unwrap();
    let edge = tenant.create_edge(NewEdge::new(a.id, b.id, "designed")).await.unwrap();
    tenant.create_moment(moment(at(10), at(11), "first")).await.unwrap();
    Written { resources, entities: vec![a, b], edge }
}

fn moment(start: Timestamp, end: Timestamp, content: &str) -> NewMoment {
    let mut moment = NewMoment::new(start, end, "meeting");
    moment.content = content.into();
    moment
}

fn at(hour: i64) -> Timestamp {
    Timestamp::from_micros(1_750_000_000_000_000 + hour * 3_600_000_000)
}

async fn ids_of(tenant: &TenantHandle<RocksProvider>, kind: RecordKind) -> Vec<uuid::Uuid> {
    let records = tenant.scan(kind, None, 1000).await.unwrap();
    records.iter().map(Record::id).collect()
}

/// In one process: a reader provider beside the writer provider on the same root sees what
/// was written before it opened, nothing newer until it catches up, and then everything:
/// records, vector search (new, changed and deleted embeddings), entity search, traversal,
/// scans and time ranges.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_sees_the_writers_commits_after_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), false, None);
    let written = fill(&writer, 40).await;
    let wt = writer.tenant(&tenant_id()).await.unwrap();

    let reader = open(dir.path(), true, None);
    assert!(reader.provider().is_read_only());
    let rt = reader.tenant(&tenant_id()).await.unwrap();
    let first = &written.resources[5];
    assert_eq!(rt.get_resource(first.id).await.unwrap().content, first.content);
    assert_eq!(nearest(&rt, vector(5 % 4, 5)).await, Some(first.id));
    assert_eq!(ids_of(&rt, RecordKind::Resource).await.len(), 40);

    // New writes: a resource far from every other, an entity reached through a new edge, a
    // long moment (it widens the moment span), a deletion and a re-embedding.
    let fresh = resource(&wt, "fresh", vector(6, 1000)).await;
    let c = wt.create_entity(NewEntity::new("Charles Babbage", "person")).await.unwrap();
    wt.create_edge(NewEdge::new(written.entities[1].id, c.id, "built_by")).await.unwrap();
    let long = wt.create_moment(moment(at(-100), at(50), "long")).await.unwrap();
    let deleted = written.resources[6].id;
    wt.delete_resource(deleted).await.unwrap();
    let mut moved = written.resources[7].clone();
    moved.embedding = Some(vector(7, 2000));
    wt.update_resource(moved.clone()).await.unwrap();

    // Until it catches up, the reader's state does not move.
    assert!(matches!(rt.get_resource(fresh.id).await, Err(Error::NotFound { .. })));
    assert!(rt.get_resource(deleted).await.is_ok());
    assert_ne!(nearest(&rt, vector(6, 1000)).await, Some(fresh.id));

    let started = std::time::Instant::now();
    assert_eq!(reader.provider().catch_up().unwrap(), 1);
    eprintln!("catch-up of 40 resources and 6 new writes: {:?}", started.elapsed());

    assert_eq!(rt.get_resource(fresh.id).await.unwrap().content, "fresh");
    assert!(matches!(rt.get_resource(deleted).await, Err(Error::NotFound { .. })));
    assert_eq!(nearest(&rt, vector(6, 1000)).await, Some(fresh.id));
    assert_eq!(nearest(&rt, vector(7, 2000)).await, Some(moved.id));
    let hits = rt.search_resources(&SearchQuery::new(vector(6 % 4, 6), 40)).await.unwrap();
    assert!(hits.iter().all(|hit| hit.resource.id != deleted), "a deleted resource was found");
    let found = rt.search_entities(&EntityQuery::new("babbage")).await.unwrap();
    assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c.id]);
    let reached = rt.traverse(&TraverseQuery::new(written.entities[0].id, 3)).await.unwrap();
    assert_eq!(
        reached.iter().map(|r| r.entity).collect::<Vec<_>>(),
        vec![written.entities[1].id, c.id]
    );
    assert_eq!(rt.get_edge(written.edge.id).await.unwrap().relation, "designed");
    let moments = rt.moments_in_range(&TimeRange::new(at(20), at(21))).await.unwrap();
    assert_eq!(moments.iter().map(|m| m.id).collect::<Vec<_>>(), vec![long.id]);
    let resources = ids_of(&rt, RecordKind::Resource).await;
    assert_eq!(resources.len(), 40);
    assert!(resources.contains(&fresh.id.as_uuid()) && !resources.contains(&deleted.as_uuid()));
    assert_eq!(ids_of(&rt, RecordKind::Entity).await.len(), 3);

    // Nothing new: a catch-up finds nothing.
    assert_eq!(reader.provider().catch_up().unwrap(), 0);
}

/// Every write through a reader is refused with `Error::ReadOnly`, never attempted.
#[tokio::test(flavor = "multi_thread")]
async fn writes_through_a_reader_are_refused_as_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), false, None);
    let written = fill(&writer, 3).await;
    let reader = open(dir.path(), true, None);
    let rt = reader.tenant(&tenant_id()).await.unwrap();
    let read_only = |result: percolate::Result<()>| match result {
        Err(Error::ReadOnly { .. }) => {}
        other => panic!("expected a read-only error, got {other:?}"),
    };
    let other = TenantId::new("other").unwrap();
    read_only(reader.create_tenant(&other, TenantConfig::default()).await.map(drop));
    read_only(reader.delete_tenant(&tenant_id()).await);
    read_only(rt.create_resource(NewResource::new("no")).await.map(drop));
    read_only(rt.delete_resource(written.resources[0].id).await);
    read_only(rt.create_entity(NewEntity::new("no", "no")).await.map(drop));
    read_only(rt.create_moment(NewMoment::new(at(0), at(1), "no")).await.map(drop));
    read_only(rt.begin().await.map(drop));
    read_only(RocksProvider::write_snapshot(rt.provider_tenant()));
    let message = rt.create_resource(NewResource::new("no")).await.unwrap_err().to_string();
    assert!(message.contains("read-only"), "{message}");
    assert!(rt.get_resource(written.resources[0].id).await.is_ok());
}

/// Every file under `root` with its size and modification time.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), (metadata.len(), metadata.modified().unwrap()));
            }
        }
    }
    out
}

/// An encrypted tenant is read with the master key, values sealed by a writer session that
/// began after the reader opened included; and the reader writes nothing in the store (no
/// sealing session of its own, no index snapshot, no log), whether or not a writer is open.
#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_tenant_is_read_with_the_master_key_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = || Some(MasterKey::from_bytes([0x33; 32]));
    let written = {
        let writer = open(dir.path(), false, key());
        fill(&writer, 30).await
    };
    let before = listing(dir.path());

    let reader = open(dir.path(), true, key());
    let rt = reader.tenant(&tenant_id()).await.unwrap();
    assert!(RocksProvider::is_encrypted(rt.provider_tenant()));
    let first = &written.resources[2];
    assert_eq!(rt.get_resource(first.id).await.unwrap().content, first.content);
    assert_eq!(nearest(&rt, vector(2, 2)).await, Some(first.id));
    assert_eq!(reader.provider().catch_up().unwrap(), 0);
    drop(rt);
    reader.provider().close_idle();
    assert_eq!(listing(dir.path()), before, "the reader changed files in the store");

    // A writer session that began after the reader opened seals values with keys the reader
    // learns when it catches up.
    let rt = reader.tenant(&tenant_id()).await.unwrap();
    let writer = open(dir.path(), false, key());
    let wt = writer.tenant(&tenant_id()).await.unwrap();
    let fresh = resource(&wt, "sealed by a later session", vector(5, 77)).await;
    assert_eq!(reader.provider().catch_up().unwrap(), 1);
    assert_eq!(rt.get_resource(fresh.id).await.unwrap().content, "sealed by a later session");
    assert_eq!(nearest(&rt, vector(5, 77)).await, Some(fresh.id));

    // Without the key, the reader cannot open it.
    let keyless = open(dir.path(), true, None);
    assert!(matches!(keyless.tenant(&tenant_id()).await, Err(Error::Crypto(_))));
}

// ---- other processes ------------------------------------------------------------------------

fn cli(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
    for key in [
        "PERCOLATE_STORAGE_PROVIDER",
        "PERCOLATE_CONFIG",
        "PERCOLATE_MASTER_KEY",
        "PERCOLATE_MASTER_KEY_FILE",
        "PERCOLATE_ROCKSDB_READ_ONLY",
    ] {
        command.env_remove(key);
    }
    command.env("PERCOLATE_ROCKSDB_PATH", root).args(args).stdin(Stdio::null());
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_vector(v: &[f32]) -> String {
    serde_json::to_string(v).unwrap()
}

/// The CLI's read commands run beside a process that holds the store for writing, and see
/// its commits (each command opens the store, which is its catch-up); its write commands
/// are refused with exit code 8 and a message naming the lock file and this process.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reads_beside_a_writing_process_and_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let writer = open(root, false, None);
    let written = fill(&writer, 20).await;
    let wt = writer.tenant(&tenant_id()).await.unwrap();
    let tenant = tenant_id();
    let t = tenant.as_str();

    let (code, out, err) =
        cli(root, &["search", "--tenant", t, "--vector", &json_vector(&vector(3, 3)), "--k", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&written.resources[3].id.to_string()), "{out}");

    let fresh = resource(&wt, "written while the CLI reads", vector(6, 500)).await;
    let (code, out, err) = cli(
        root,
        &["search", "--tenant", t, "--vector", &json_vector(&vector(6, 500)), "--k", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hits[0]["resource"]["id"], fresh.id.to_string());
    let (code, out, err) = cli(root, &["get", "resource", "--tenant", t, &fresh.id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("written while the CLI reads"));
    let start = written.entities[0].id.to_string();
    let (code, out, err) = cli(root, &["traverse", "--tenant", t, &start]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&written.entities[1].id.to_string()), "{out}");
    let (code, out, err) = cli(root, &["moments", "--tenant", t]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("first"), "{out}");
    let (code, out, err) = cli(root, &["export", "--tenant", t]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("written while the CLI reads"));
    let (code, out, err) = cli(root, &["tenant", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(t), "{out}");

    let lock = root.canonicalize().unwrap().join("percolate.lock");
    let pid = format!("process {}", std::process::id());
    for args in [
        vec!["put", "entity", "--tenant", t, "--in", "/dev/null"],
        vec!["tenant", "create", "another"],
        vec!["delete", "resource", "--tenant", t, &written.resources[0].id.to_string()],
    ] {
        let (code, _, err) = cli(root, &args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert_eq!(code, 8, "{args:?}: {err}");
        assert!(err.contains(&lock.display().to_string()), "{err}");
        assert!(err.contains(&pid), "{err}");
        assert!(err.contains("read-only"), "{err}");
    }

    // Once the writer closes, the lock is free again.
    drop(wt);
    drop(writer);
    let (code, _, err) = cli(root, &["tenant", "create", "another"]);
    assert_eq!(code, 0, "{err}");
}

/// A long-lived reader in another process (this test binary run again, see
/// [`reader_child_process`]) follows the writer: a new embedding is found by vector search
/// only after the reader catches up, a deleted resource is gone after the next.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_in_another_process_follows_the_writer_by_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let writer = open(root, false, None);
    let written = fill(&writer, 20).await;
    let wt = writer.tenant(&tenant_id()).await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reader_child_process", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ROOT, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // A reader that stops answering fails the test instead of hanging it.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = Command::new("kill").arg(&pid).status();
    });
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |line: String| -> String {
        writeln!(input, "{line}").unwrap();
        input.flush().unwrap();
        loop {
            let mut reply = String::new();
            assert!(output.read_line(&mut reply).unwrap() > 0, "the reader process ended");
            // The harness may have begun the line ("test reader_child_process ... ").
            if let Some((_, reply)) = reply.trim().split_once("READER ") {
                return reply.to_string();
            }
        }
    };
    let search = |v: Vec<f32>| format!("search {}", json_vector(&v));
    assert_eq!(ask(search(vector(2, 2))), written.resources[2].id.to_string());

    let fresh = resource(&wt, "fresh", vector(6, 900)).await;
    assert_ne!(ask(search(vector(6, 900))), fresh.id.to_string(), "seen before catching up");
    assert_eq!(ask("catch-up".into()), "1");
    assert_eq!(ask(search(vector(6, 900))), fresh.id.to_string());
    assert_eq!(ask(format!("get {}", fresh.id)), "fresh");

    wt.delete_resource(fresh.id).await.unwrap();
    assert_eq!(ask(format!("get {}", fresh.id)), "fresh");
    assert_eq!(ask("catch-up".into()), "1");
    assert_eq!(ask(format!("get {}", fresh.id)), "missing");
    assert_ne!(ask(search(vector(6, 900))), fresh.id.to_string());
    assert_eq!(ask("catch-up".into()), "0");
    drop(input);
    assert!(child.wait().unwrap().success());
}

/// The reader process of [`a_reader_in_another_process_follows_the_writer_by_catching_up`]:
/// runs only when that test starts it. Answers each line on stdin with one `READER ` line.
#[tokio::test(flavor = "multi_thread")]
async fn reader_child_process() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else { return };
    if std::env::var_os(CHILD_WRITES).is_some() {
        // The writer of `a_writer_that_dies_leaves_the_store_to_the_next`: holds the store
        // until it is killed.
        let _writer = open(Path::new(&root), false, None);
        let mut stdout = std::io::stdout();
        writeln!(stdout, "READER {}", std::process::id()).unwrap();
        stdout.flush().unwrap();
        let _ = std::io::stdin().lock().lines().count();
        return;
    }
    let reader = open(Path::new(&root), true, None);
    let tenant = reader.tenant(&tenant_id()).await.unwrap();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let reply = match line.split_once(' ') {
            Some(("search", v)) => {
                let v: Vec<f32> = serde_json::from_str(v).unwrap();
                nearest(&tenant, v).await.map(|id| id.to_string()).unwrap_or_default()
            }
            Some(("get", id)) => match tenant.get_resource(id.parse().unwrap()).await {
                Ok(resource) => resource.content,
                Err(Error::NotFound { .. }) => "missing".into(),
                Err(e) => panic!("{e}"),
            },
            _ if line == "catch-up" => reader.provider().catch_up().unwrap().to_string(),
            _ => panic!("unknown command {line}"),
        };
        // Written to the process's stdout itself: the test harness captures `println!`.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "READER {reply}").unwrap();
        stdout.flush().unwrap();
    }
}

/// A writer in another process is named by its pid in the lock error; killed, it leaves the
/// lock to the next writer (the kernel drops a dead process's `flock`, whatever pid the file
/// still holds).
#[test]
fn a_writer_that_dies_leaves_the_store_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reader_child_process", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ROOT, root)
        .env(CHILD_WRITES, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let pid = loop {
        let mut line = String::new();
        assert!(output.read_line(&mut line).unwrap() > 0, "the writer process ended");
        if let Some((_, pid)) = line.trim().split_once("READER ") {
            break pid.to_string();
        }
    };
    assert_eq!(pid, child.id().to_string());
    let (code, _, err) = cli(root, &["tenant", "create", "late"]);
    assert_eq!(code, 8, "{err}");
    assert!(err.contains(&format!("locked by process {pid}")), "{err}");
    let config = config(root, false, None);
    match RocksProvider::open(config) {
        Err(Error::Locked { holder_pid, path }) => {
            assert_eq!(holder_pid.map(|p| p.to_string()), Some(pid.clone()));
            assert_eq!(path, root.canonicalize().unwrap().join("percolate.lock"));
        }
        Err(other) => panic!("expected Error::Locked, got {other}"),
        Ok(_) => panic!("a second writer opened the store"),
    }

    child.kill().unwrap();
    child.wait().unwrap();
    let lock = std::fs::read_to_string(root.join("percolate.lock")).unwrap();
    assert_eq!(lock.trim(), pid, "the dead writer's pid stays in the file");
    let (code, _, err) = cli(root, &["tenant", "create", "late"]);
    assert_eq!(code, 0, "{err}");
}
