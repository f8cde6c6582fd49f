//! Disk full on RocksDB. Each test mounts a small tmpfs (this needs root: without it the test
//! fails, it never skips), runs a store on it, runs out of space during one kind of write, and
//! checks what the engine promises: the write fails with `Error::DiskFull` (exit code 10 from
//! the CLI), every acknowledged write is intact, the vector index holds exactly the stored
//! embeddings, and the store works again once space is freed, without a restart and after one.
//! The last test opens a store whose filesystem was remounted read-only. Helpers live in
//! `tests/faults/mod.rs`.

mod faults;

use faults::{
    Filler, Model, Tmpfs, check, new_resources, open_store, write_until_full, write_when_accepted,
};
use percolate::rocks::RocksProvider;
use percolate::{Error, TenantConfig, TenantId};

fn tenant_id(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant id")
}

/// Batches of resources with embeddings until the disk runs out: the batch that meets it fails
/// with `DiskFull` and leaves nothing behind. Small memtables make RocksDB flush and compact
/// all along, so the device also runs out under background flushes and compactions (their
/// failures reach callers as the `DiskFull` of the next write, and stop nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_meets_a_full_disk_fails_with_disk_full_and_loses_nothing() {
    // Big enough that freeing the filler leaves RocksDB its reserve (the largest memtable)
    // with room to spare.
    let disk = Tmpfs::mount(128);
    let root = disk.path().join("store");
    let engine = open_store(&root);
    let tenant = engine
        .create_tenant(&tenant_id("full"), TenantConfig::default())
        .await
        .expect("create tenant");
    let mut model = Model::default();
    // Leave a little room, so that the store runs out in the middle of the batches below.
    let filler = Filler::fill(disk.path(), 2 << 20);

    let error = write_until_full(&tenant, &mut model, 400).await;
    assert!(matches!(error, Error::DiskFull { .. }), "not DiskFull: {}", error.with_causes());
    assert!(
        error.with_causes().contains("no space left"),
        "the message says the disk is full: {}",
        error.with_causes()
    );
    assert!(!model.resources.is_empty(), "some batches were acknowledged before the disk filled");
    // Reads work while the disk is full, and see exactly the acknowledged writes.
    check(&tenant, &model, "while the disk is full").await;

    drop(filler);
    write_when_accepted(&tenant, &mut model).await;
    check(&tenant, &model, "after space was freed").await;
    drop(tenant);
    drop(engine);

    let engine = open_store(&root);
    let tenant = engine.tenant(&tenant_id("full")).await.expect("reopen");
    check(&tenant, &model, "after a reopen").await;
}

/// A transaction's commit that meets a full disk fails with `DiskFull` and applies nothing;
/// the writes that did not fit are then written by a retry once space is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_meets_a_full_disk_commits_nothing() {
    let disk = Tmpfs::mount(128);
    let root = disk.path().join("store");
    let engine = open_store(&root);
    let tenant = engine
        .create_tenant(&tenant_id("txn"), TenantConfig::default())
        .await
        .expect("create tenant");
    let mut model = Model::default();
    let seed = model.next_seed(1);
    let first = tenant.batch_create_resources(new_resources(seed, 20)).await.expect("first batch");
    model.acknowledge(&first);
    let filler = Filler::fill(disk.path(), 0);

    let mut txn = tenant.begin().await.expect("begin reads no disk");
    let seed = model.next_seed(1);
    let mut staged = Vec::new();
    for new in new_resources(seed, 50) {
        staged.push(txn.create_resource(new).await.expect("staged in memory"));
    }
    let victim = first[0].id;
    txn.delete_resource(victim).await.expect("staged delete");
    let error = txn.commit().await.expect_err("a commit on a full disk fails");
    assert!(matches!(error, Error::DiskFull { .. }), "not DiskFull: {}", error.with_causes());
    check(&tenant, &model, "after the failed commit").await;
    for resource in &staged {
        assert!(
            matches!(tenant.get_resource(resource.id).await, Err(Error::NotFound { .. })),
            "a write of the failed commit is visible"
        );
    }

    drop(filler);
    write_when_accepted(&tenant, &mut model).await;
    let mut txn = tenant.begin().await.expect("begin");
    txn.delete_resource(victim).await.expect("delete");
    txn.commit().await.expect("the retried commit succeeds");
    model.resources.remove(&victim);
    check(&tenant, &model, "after the retried commit").await;
}

/// `percolate import` into a store whose disk fills exits with code 10 and says so; the
/// batches written before are kept, and running it again once space is freed completes the
/// import: the tenant then exports to the very same bytes as the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_meets_a_full_disk_exits_with_code_10_and_a_rerun_completes_it() {
    let source = tempfile::tempdir().expect("temp dir");
    let export = faults::exported_tenant(source.path(), "imported", 9000).await;

    let disk = Tmpfs::mount(48);
    let root = disk.path().join("store");
    let filler = Filler::fill(disk.path(), 1 << 20);
    let run = faults::cli(&root, &["import", "--tenant", "imported", "--in"], &export);
    assert_eq!(run.code, 10, "exit code of an import on a full disk; stderr: {}", run.stderr);
    assert!(run.stderr.contains("no space left"), "stderr says why: {}", run.stderr);

    drop(filler);
    let run = faults::cli(&root, &["import", "--tenant", "imported", "--in"], &export);
    assert_eq!(run.code, 0, "the rerun succeeds; stderr: {}", run.stderr);
    let again = disk.path().join("again.jsonl");
    let run = faults::cli(&root, &["export", "--tenant", "imported", "--out"], &again);
    assert_eq!(run.code, 0, "export; stderr: {}", run.stderr);
    assert!(
        std::fs::read(&export).expect("source export") == std::fs::read(&again).expect("export"),
        "the completed import exports to the bytes of its source"
    );

    // The vector index of the imported tenant holds exactly its embeddings.
    let engine = open_store(&root);
    let tenant = engine.tenant(&tenant_id("imported")).await.expect("open");
    let model = Model::read(&tenant).await;
    assert_eq!(model.resources.len(), 9000);
    check(&tenant, &model, "after the completed import").await;
}

/// Writing the vector index snapshot on a full disk fails with `DiskFull`, leaves no
/// temporary file and the previous snapshot in place; once space is back the next write
/// succeeds, and a reopen serves everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_write_on_a_full_disk_fails_with_disk_full_and_the_next_succeeds() {
    let disk = Tmpfs::mount(32);
    let root = disk.path().join("store");
    let engine = open_store(&root);
    let tenant = engine
        .create_tenant(&tenant_id("snap"), TenantConfig::default())
        .await
        .expect("create tenant");
    let mut model = Model::default();
    let seed = model.next_seed(1);
    model.acknowledge(
        &tenant.batch_create_resources(new_resources(seed, 300)).await.expect("batch"),
    );
    RocksProvider::wait_for_index(tenant.provider_tenant());
    RocksProvider::write_snapshot(tenant.provider_tenant()).expect("first snapshot");
    let snapshot = root.join("snap").join("vectors.hnsw");
    let first = std::fs::read(&snapshot).expect("the first snapshot is on disk");

    let seed = model.next_seed(1);
    model.acknowledge(
        &tenant.batch_create_resources(new_resources(seed, 300)).await.expect("batch"),
    );
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let filler = Filler::fill(disk.path(), 0);
    let error = RocksProvider::write_snapshot(tenant.provider_tenant())
        .expect_err("a snapshot write on a full disk fails");
    assert!(matches!(error, Error::DiskFull { .. }), "not DiskFull: {}", error.with_causes());
    assert!(!root.join("snap").join("vectors.hnsw.tmp").exists(), "no temporary file is left");
    assert!(std::fs::read(&snapshot).expect("snapshot") == first, "the old snapshot is intact");
    check(&tenant, &model, "after the failed snapshot").await;

    drop(filler);
    RocksProvider::write_snapshot(tenant.provider_tenant()).expect("the next snapshot succeeds");
    assert!(std::fs::read(&snapshot).expect("snapshot") != first, "a new snapshot was written");
    drop(tenant);
    drop(engine);
    let engine = open_store(&root);
    let tenant = engine.tenant(&tenant_id("snap")).await.expect("reopen");
    check(&tenant, &model, "after a reopen from the new snapshot").await;
}

/// Creating a tenant on a full disk fails with `DiskFull` and leaves no trace (no tenant, no
/// staging directory); once space is back the same id can be created, and the tenants that
/// existed are intact throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_tenant_on_a_full_disk_fails_with_disk_full_and_leaves_no_trace() {
    let disk = Tmpfs::mount(32);
    let root = disk.path().join("store");
    let engine = open_store(&root);
    let tenant = engine
        .create_tenant(&tenant_id("old"), TenantConfig::default())
        .await
        .expect("create tenant");
    let mut model = Model::default();
    let seed = model.next_seed(1);
    model.acknowledge(
        &tenant.batch_create_resources(new_resources(seed, 100)).await.expect("batch"),
    );
    let filler = Filler::fill(disk.path(), 0);

    let error = engine
        .create_tenant(&tenant_id("new"), TenantConfig::default())
        .await
        .expect_err("creating a tenant on a full disk fails");
    assert!(matches!(error, Error::DiskFull { .. }), "not DiskFull: {}", error.with_causes());
    assert_eq!(engine.list_tenants().await.expect("list"), vec![tenant_id("old")]);
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .expect("root")
        .map(|entry| entry.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "staging directories left behind: {leftovers:?}");
    check(&tenant, &model, "beside the failed create").await;

    drop(filler);
    let created = engine
        .create_tenant(&tenant_id("new"), TenantConfig::default())
        .await
        .expect("the same id can be created once space is back");
    let mut fresh = Model::default();
    let seed = fresh.next_seed(1);
    fresh.acknowledge(
        &created.batch_create_resources(new_resources(seed, 10)).await.expect("batch"),
    );
    check(&created, &fresh, "the new tenant").await;
    check(&tenant, &model, "the old tenant").await;
}

/// A store whose filesystem turned read-only: a writer refuses to open with an error that
/// names the cause (never a panic), a reader opens and serves every acknowledged write, and
/// once the filesystem is writable again the writer opens and holds everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_read_only_filesystem_opens_to_read_and_refuses_a_writer() {
    let disk = Tmpfs::mount(128);
    let root = disk.path().join("store");
    let engine = open_store(&root);
    let tenant = engine
        .create_tenant(&tenant_id("ro"), TenantConfig::default())
        .await
        .expect("create tenant");
    let mut model = Model::default();
    let seed = model.next_seed(1);
    model.acknowledge(
        &tenant.batch_create_resources(new_resources(seed, 200)).await.expect("batch"),
    );
    drop(tenant);
    drop(engine);

    disk.remount(false);
    let mut config = percolate::rocks::RocksConfig::new(&root);
    config.exact_search_below = 0;
    let refused = match RocksProvider::open(config.clone()) {
        Ok(_) => panic!("a writer opened a store on a read-only filesystem"),
        Err(error) => error,
    };
    assert!(
        refused.with_causes().contains("Read-only file system"),
        "the error names the cause: {}",
        refused.with_causes()
    );
    let reader = percolate::MemoryEngine::new(
        RocksProvider::open_read_only(config).expect("a reader opens on a read-only filesystem"),
    );
    let tenant = reader.tenant(&tenant_id("ro")).await.expect("tenant");
    check(&tenant, &model, "through a reader on a read-only filesystem").await;
    drop(tenant);
    drop(reader);

    disk.remount(true);
    let engine = open_store(&root);
    let tenant = engine.tenant(&tenant_id("ro")).await.expect("reopen once writable");
    check(&tenant, &model, "after the filesystem is writable again").await;
    write_when_accepted(&tenant, &mut model).await;
    check(&tenant, &model, "after a write").await;
}

/// A snapshot that cannot be renamed into place (a directory holds its name) fails with a
/// backend error and leaves no temporary file; nothing else is lost: the store serves
/// everything, and reopens (the directory still in the way) with the index rebuilt from the
/// store, since the snapshot is only a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_renamed_into_place_fails_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("store");
    let engine = open_store(&root);
    let tenant =
        engine.create_tenant(&tenant_id("rename"), TenantConfig::default()).await.expect("create");
    let mut model = Model::default();
    let seed = model.next_seed(1);
    model.acknowledge(
        &tenant.batch_create_resources(new_resources(seed, 300)).await.expect("batch"),
    );
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let snapshot = root.join("rename").join("vectors.hnsw");
    std::fs::create_dir_all(snapshot.join("occupied")).expect("a directory in the way");

    let error = RocksProvider::write_snapshot(tenant.provider_tenant())
        .expect_err("renaming onto a non-empty directory fails");
    assert!(matches!(error, Error::Backend { .. }), "not a backend error: {}", error.with_causes());
    assert!(!root.join("rename").join("vectors.hnsw.tmp").exists(), "no temporary file is left");
    check(&tenant, &model, "after the failed snapshot").await;
    drop(tenant);
    drop(engine);

    let engine = open_store(&root);
    let tenant = engine.tenant(&tenant_id("rename")).await.expect("reopen");
    check(&tenant, &model, "after a reopen with the snapshot's name taken").await;
}
