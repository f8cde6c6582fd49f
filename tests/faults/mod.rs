//! What the fault tests share: a size-limited tmpfs that is always unmounted, a filler file
//! that takes the space left on it, a model of the acknowledged resources, and the check that
//! a tenant holds exactly them with a vector index that agrees.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use percolate::bench::dataset::XorShift;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{
    Error, MemoryEngine, NewResource, Record, RecordKind, Resource, ResourceId, SearchQuery,
    TenantConfig, TenantHandle, TenantId,
};

/// The dimension of every embedding the fault tests write.
pub const DIMENSION: usize = 64;

/// A tmpfs of a fixed size mounted on a fresh temporary directory. Dropping it unmounts it
/// (lazily if something still holds it), also when the test panics, so no run leaves a mount
/// behind. Mounting needs root; without it the test fails with the reason.
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes` MiB.
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount(8)");
        assert!(
            status.success(),
            "mounting a {megabytes} MiB tmpfs failed ({status}): the disk-full tests need root \
             and mount(8); they fail rather than skip"
        );
        Self { dir: Some(dir) }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("mounted").path()
    }

    /// Remounts it read-only or read-write. Linux refuses to make it read-only while a file
    /// on it is open for writing (an open store holds its log), so close the store first.
    pub fn remount(&self, writable: bool) {
        let mode = if writable { "remount,rw" } else { "remount,ro" };
        let status = Command::new("mount")
            .args(["-o", mode])
            .arg(self.path())
            .status()
            .expect("run mount(8)");
        assert!(status.success(), "mount -o {mode} failed ({status})");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let unmounted = Command::new("umount").arg(dir.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
        drop(dir);
    }
}

/// A file that takes all the space of a filesystem but `headroom` bytes; dropping it deletes
/// it, which frees the space.
pub struct Filler {
    path: PathBuf,
}

impl Filler {
    /// Writes to `dir/filler` until the filesystem is full, then gives `headroom` bytes back.
    pub fn fill(dir: &Path, headroom: u64) -> Self {
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; 1 << 16];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
        file.set_len(written.saturating_sub(headroom)).expect("give the headroom back");
        Self { path }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A store on `root` with small memtables, so RocksDB flushes and compacts often, and an HNSW
/// graph from the first embedding on.
pub fn open_store(root: &Path) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(root);
    config.exact_search_below = 0;
    config.write_buffer_bytes = 256 << 10;
    config.write_buffer_budget_bytes = 4 << 20;
    config.block_cache_bytes = 4 << 20;
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

/// A deterministic embedding for `seed`.
pub fn vector(seed: u64) -> Vec<f32> {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..DIMENSION).map(|_| rng.unit() as f32 - 0.5).collect()
}

/// `count` resources with embeddings, numbered from `seed`.
pub fn new_resources(seed: u64, count: u64) -> Vec<NewResource> {
    (seed..seed + count)
        .map(|n| NewResource::new(format!("resource {n}")).with_embedding(vector(n)))
        .collect()
}

/// The resources a tenant must hold: every acknowledged write, nothing else.
#[derive(Default)]
pub struct Model {
    /// Every acknowledged resource by id.
    pub resources: BTreeMap<ResourceId, Resource>,
    next: u64,
}

impl Model {
    /// Reserves `count` seeds for a batch and returns the first.
    pub fn next_seed(&mut self, count: u64) -> u64 {
        let seed = self.next;
        self.next += count.max(1_000);
        seed
    }

    /// Records resources whose write returned `Ok`.
    pub fn acknowledge(&mut self, written: &[Resource]) {
        for resource in written {
            self.resources.insert(resource.id, resource.clone());
        }
    }

    /// What a tenant holds now, as a model.
    pub async fn read(tenant: &TenantHandle<RocksProvider>) -> Self {
        let mut model = Self::default();
        model.acknowledge(&stored_resources(tenant).await);
        model
    }
}

/// Every resource of the tenant, by scan pages.
pub async fn stored_resources(tenant: &TenantHandle<RocksProvider>) -> Vec<Resource> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = tenant.scan(RecordKind::Resource, after, 1000).await.expect("scan");
        let Some(Record::Resource(last)) = page.last() else { return out };
        after = Some(last.id.as_uuid());
        out.extend(page.into_iter().filter_map(|record| match record {
            Record::Resource(resource) => Some(resource),
            _ => None,
        }));
    }
}

/// Writes batches of `batch` resources until one fails, and returns its error; the batches
/// that succeeded go into the model. Fails the test if the disk never fills.
pub async fn write_until_full(
    tenant: &TenantHandle<RocksProvider>,
    model: &mut Model,
    batch: u64,
) -> Error {
    for _ in 0..10_000 {
        let seed = model.next_seed(batch);
        match tenant.batch_create_resources(new_resources(seed, batch)).await {
            Ok(written) => model.acknowledge(&written),
            Err(error) => return error,
        }
    }
    panic!("10,000 batches fitted on a disk that was meant to fill");
}

/// After space was freed: retries a small batch until RocksDB has resumed by itself, and
/// records it. RocksDB polls for free space every five seconds and resumes once the free space
/// reaches its reserve, the largest memtable size of any column family (64 MiB: the `default`
/// family, which percolate does not use, keeps RocksDB's default): the disks of the tests
/// that resume are big enough for that. While it waits, every refusal must be `DiskFull`.
/// Fails the test if the store is still refusing after a minute.
pub async fn write_when_accepted(tenant: &TenantHandle<RocksProvider>, model: &mut Model) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let seed = model.next_seed(10);
    loop {
        match tenant.batch_create_resources(new_resources(seed, 10)).await {
            Ok(written) => {
                model.acknowledge(&written);
                return;
            }
            Err(Error::DiskFull { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!(
                "the store did not take writes again once space was freed: {}",
                error.with_causes()
            ),
        }
    }
}

/// The tenant holds exactly the model's resources; its vector index holds exactly their
/// embeddings: a search for every point returns each of them once and nothing else, and a
/// sample of embeddings each finds itself first.
pub async fn check(tenant: &TenantHandle<RocksProvider>, model: &Model, when: &str) {
    let stored: BTreeMap<ResourceId, Resource> =
        stored_resources(tenant).await.into_iter().map(|r| (r.id, r)).collect();
    let missing: Vec<_> = model.resources.keys().filter(|id| !stored.contains_key(id)).collect();
    let extra: Vec<_> = stored.keys().filter(|id| !model.resources.contains_key(id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{when}: {} acknowledged resources missing, {} unacknowledged ones stored",
        missing.len(),
        extra.len()
    );
    for (id, resource) in &model.resources {
        assert_eq!(&stored[id], resource, "{when}: resource {id} changed");
    }

    RocksProvider::wait_for_index(tenant.provider_tenant());
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!(
        stats.graph - stats.tombstones + stats.pending,
        model.resources.len(),
        "{when}: the index holds other embeddings than the store: {stats:?}"
    );
    if model.resources.is_empty() {
        return;
    }
    assert!(model.resources.len() <= percolate::MAX_K, "the check searches the whole tenant");
    let hits = tenant
        .search_resources(&SearchQuery::new(vector(u64::MAX), model.resources.len()))
        .await
        .expect("search");
    let mut found: Vec<ResourceId> = hits.iter().map(|hit| hit.resource.id).collect();
    found.sort();
    let expected: Vec<ResourceId> = model.resources.keys().copied().collect();
    assert!(found == expected, "{when}: search does not return exactly the stored embeddings");
    for resource in model.resources.values().step_by(37) {
        let query = SearchQuery::new(resource.embedding.clone().expect("embedding"), 1);
        let hit = tenant.search_resources(&query).await.expect("search");
        assert_eq!(hit[0].resource.id, resource.id, "{when}: an embedding does not find itself");
    }
}

/// Writes a tenant `name` of `count` resources into a store under `dir` and exports it;
/// returns the export file.
pub async fn exported_tenant(dir: &Path, name: &str, count: u64) -> PathBuf {
    let engine = open_store(&dir.join("store"));
    let id = TenantId::new(name).expect("tenant id");
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("create");
    for seed in (0..count).step_by(500) {
        let batch = new_resources(seed, 500.min(count - seed));
        tenant.batch_create_resources(batch).await.expect("batch");
    }
    let path = dir.join(format!("{name}.jsonl"));
    let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("export file"));
    percolate::portable::export(&tenant, file, |_| {}).await.expect("export");
    path
}

/// How a run of the `percolate` binary ended.
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// Runs `percolate ARGS FILE` on the RocksDB store at `root`, settings from nowhere else.
pub fn cli(root: &Path, args: &[&str], file: &Path) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_percolate"));
    command.args(args).arg(file);
    for key in [
        "PERCOLATE_STORAGE_PROVIDER",
        "PERCOLATE_POSTGRES_URL",
        "PERCOLATE_CONFIG",
        "PERCOLATE_MASTER_KEY",
        "PERCOLATE_MASTER_KEY_FILE",
    ] {
        command.env_remove(key);
    }
    command.env("PERCOLATE_ROCKSDB_PATH", root);
    let output = command.output().expect("run percolate");
    Run {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
