//! The embedded RocksDB provider: a database directory per tenant.
//!
//! Design decisions:
//! - **A database per tenant** (`root/<tenant id>/`): tenants share nothing on disk, deleting a
//!   tenant is deleting a directory, and a tenant's files can be moved or backed up alone.
//!   `tenants.rs` keeps a bounded cache of open databases so thousands of tenants do not exhaust
//!   file handles, and shares one block cache among them.
//! - **Optimistic transactions for every write** (`store.rs`): each write, auto-commit or not,
//!   is one atomic RocksDB batch whose read-for-update keys are validated at commit. Writers
//!   never block each other; a lost race is [`crate::Error::Conflict`] (auto-commit calls retry
//!   it themselves).
//! - **Durability**: every write goes through the write-ahead log. By default the WAL is not
//!   fsynced per write (a process crash loses nothing; a power loss may lose the last writes);
//!   [`RocksConfig::sync_writes`] fsyncs every commit.
//! - **Encryption at rest** (`src/crypto/`): with [`RocksConfig::master_key`] set, new tenants get
//!   their own data key and every value is sealed with AES-256-GCM under per-open session keys
//!   bound to the tenant and column family; relation names and name prefixes in keys become
//!   keyed tokens; deleting a tenant shreds its key first.
//! - **Blocking**: point reads and writes take microseconds and run inline on the calling task;
//!   scans whose cost grows with the tenant (vector search, entity search, export pages, time
//!   ranges) run on tokio's blocking pool.

pub(crate) mod cf;
pub(crate) mod codec;
mod graph;
pub(crate) mod keys;
mod lock;
#[cfg(feature = "testing")]
mod probe;
mod query;
mod store;
mod tenants;
mod text;
mod txn;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::crypto::{MasterKey, SEAL_OVERHEAD};
pub use crate::index::{HnswParams, VectorPrecision};
#[cfg(feature = "testing")]
pub use probe::SealedNonce;
pub use tenants::TenantDb;
pub use txn::RocksTxn;

use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, Moment, MomentId, Reached, Record,
    RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId, TextHit,
    TextQuery, TimeRange, TraverseQuery,
};
use crate::provider::{Capabilities, Provider, VectorIndexKind};
use store::View;
use tenants::TenantCache;

pub(crate) const NAME: &str = "rocksdb";

/// Settings of the RocksDB provider.
///
/// Memory: the provider's tenants share one block cache ([`RocksConfig::block_cache_bytes`],
/// which also holds the SST index and filter blocks) and one write-buffer budget
/// ([`RocksConfig::write_buffer_budget_bytes`], past which RocksDB flushes memtables whichever
/// tenant they belong to), so what RocksDB holds does not grow with the number of open
/// tenants. Each tenant's vector index is held beside that, for as long as the tenant is open
/// (about dimension x 4 bytes per embedding, plus the graph's links). [`RocksConfig::new`] fits
/// a desktop app; [`RocksConfig::mobile`] a phone or an app extension.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RocksConfig {
    /// The directory holding one database directory per tenant.
    pub root: PathBuf,
    /// At most this many tenant databases stay open while idle.
    pub open_tenants: usize,
    /// RocksDB's `max_open_files` for each tenant database.
    pub max_open_files_per_tenant: i32,
    /// The block cache shared by every tenant, in bytes: data blocks, and the index and filter
    /// blocks of every table (those of the newest level stay pinned while their table is
    /// open).
    pub block_cache_bytes: usize,
    /// The size at which one column family's memtable is flushed, in bytes.
    pub write_buffer_bytes: usize,
    /// What the memtables of all open tenants may hold together, in bytes: past it RocksDB
    /// flushes the largest ones (writes never stall on it).
    pub write_buffer_budget_bytes: usize,
    /// Fsync the write-ahead log on every commit (survives power loss; slower writes).
    pub sync_writes: bool,
    /// HNSW parameters of every tenant's vector index.
    pub hnsw: HnswParams,
    /// How each tenant's vector index keeps its vectors in memory (f32 by default; f16 halves
    /// them, int8 quarters them, and searches re-score their best candidates with the stored
    /// embeddings). Chosen per open: nothing stored depends on it.
    pub vector_precision: VectorPrecision,
    /// Tenants with at most this many embeddings are searched exactly (recall 1, and as fast
    /// as the graph at that size).
    pub exact_search_below: usize,
    /// The master key. When set, every tenant created is encrypted at rest, and encrypted
    /// tenants can be opened; when unset, opening an encrypted tenant is [`Error::Crypto`].
    pub master_key: Option<MasterKey>,
    /// With a master key set, whether a tenant without a key file (created before the key
    /// was configured) may still be opened, its writes landing in plaintext. Off by default:
    /// such a tenant is refused with [`Error::Crypto`], so a key file that went missing never
    /// silently turns an encrypted store into a plaintext one.
    pub allow_plaintext_tenants: bool,
    /// Whether the background indexer lowers its own thread priority (nice 10) so that on a
    /// busy machine it takes what writers and searchers leave. Off by default: an app that
    /// embeds the store decides how its threads are scheduled.
    pub lower_indexer_priority: bool,
    /// Open the store to read only, beside the process that writes it (see
    /// [`RocksProvider::catch_up`]): no lock is taken and nothing is written under the root;
    /// every write is [`Error::ReadOnly`]. Off by default: the provider is the store's one
    /// writer, and a second writer is refused with [`Error::Locked`].
    pub read_only: bool,
}

impl RocksConfig {
    /// Defaults for a desktop app or a server, with a store rooted at `root`: a 64 MiB block
    /// cache, 64 MiB of memtables in all (16 MiB each), 64 idle tenants kept open.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open_tenants: 64,
            max_open_files_per_tenant: 64,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 16 << 20,
            write_buffer_budget_bytes: 64 << 20,
            sync_writes: false,
            hnsw: HnswParams::default(),
            vector_precision: VectorPrecision::F32,
            exact_search_below: 1024,
            master_key: None,
            allow_plaintext_tenants: false,
            lower_indexer_priority: false,
            read_only: false,
        }
    }

    /// A small footprint for a phone or an app extension, with a store rooted at `root`: an
    /// 8 MiB block cache, 8 MiB of memtables in all (2 MiB each), 4 idle tenants kept open and
    /// 32 files per tenant. Point reads of a tenant larger than the cache go to the file
    /// system more often; ingest flushes smaller files more often.
    pub fn mobile(root: impl Into<PathBuf>) -> Self {
        Self {
            open_tenants: 4,
            max_open_files_per_tenant: 32,
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 2 << 20,
            write_buffer_budget_bytes: 8 << 20,
            ..Self::new(root)
        }
    }
}

/// The embedded RocksDB provider.
pub struct RocksProvider {
    tenants: TenantCache,
    /// The writer lock, `None` in a reader. Declared after the tenants: it is released only
    /// once their databases have closed.
    _lock: Option<Arc<lock::StoreLock>>,
}

impl RocksProvider {
    /// Opens (creating if needed) a store rooted at `config.root`, as its writer, or as a
    /// reader with [`RocksConfig::read_only`].
    ///
    /// # Errors
    /// [`Error::Locked`] when another process writes the store; [`Error::Backend`] if the
    /// root directory cannot be created or the lock file cannot be written.
    pub fn open(config: RocksConfig) -> Result<Self> {
        let read_only = config.read_only;
        let tenants = TenantCache::new(config)?;
        let lock = match read_only {
            true => None,
            false => Some(lock::StoreLock::acquire(&tenants.config().root)?),
        };
        Ok(Self { tenants, _lock: lock })
    }

    /// Opens the store at `config.root` to read only (see [`RocksConfig::read_only`]).
    ///
    /// # Errors
    /// As [`RocksProvider::open`].
    pub fn open_read_only(mut config: RocksConfig) -> Result<Self> {
        config.read_only = true;
        Self::open(config)
    }

    /// Whether this provider only reads (see [`RocksConfig::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.tenants.config().read_only
    }

    /// In a reader, catches every open tenant up with the writer's commits so far, vector
    /// index included, and returns how many tenants had new commits; a writer is always
    /// current and returns 0. A reader sees a tenant as of its opening and its last catch-up
    /// (opening a tenant again through [`Provider::open_tenant`] catches it up as well).
    ///
    /// # Errors
    /// [`Error::Backend`] when the writer's files cannot be read.
    pub fn catch_up(&self) -> Result<usize> {
        self.tenants.catch_up()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.tenants.config().root
    }

    /// Re-wraps every encrypted tenant's data key under `new` instead of the configured master
    /// key, without rewriting data, and returns how many tenants it re-wrapped. Each key file
    /// is replaced atomically; an interrupted rotation is finished by running it again. Open
    /// this store with `new` afterwards.
    ///
    /// # Errors
    /// [`Error::Crypto`] when no master key is configured or a key file does not open under it.
    pub fn rotate_master_key(&self, new: &MasterKey) -> Result<usize> {
        self.tenants.rotate_master_key(new)
    }

    /// Whether the tenant's values are sealed (it was created with a master key configured).
    pub fn is_encrypted(tenant: &TenantDb) -> bool {
        tenant.is_encrypted()
    }

    /// Closes every tenant database that no handle holds.
    pub fn close_idle(&self) {
        self.tenants.close_idle();
    }

    /// What the provider holds in memory now (see [`MemoryUsage`]).
    pub fn memory_usage(&self) -> MemoryUsage {
        let open = self.tenants.open_now();
        let memory = self.tenants.memory();
        MemoryUsage {
            open_tenants: open.len(),
            block_cache: memory.cache.get_usage(),
            block_cache_pinned: memory.cache.get_pinned_usage(),
            write_buffers: memory.write_buffers.get_usage(),
            vector_indexes: open
                .iter()
                .filter_map(|tenant| tenant.vector_index())
                .map(|index| index.memory_bytes() + index.side_bytes())
                .sum(),
        }
    }

    /// Blocks until every embedding of the tenant is in its HNSW graph and the snapshot the
    /// indexer then owes is written, so what a caller times next does not overlap that
    /// background work (searches never need this: pending embeddings are searched exactly).
    /// For benches and tests.
    pub fn wait_for_index(tenant: &TenantDb) {
        if let Some(index) = tenant.vector_index() {
            index.wait_indexed();
        }
    }

    /// Writes the tenant's vector index snapshot now; it is also written when the tenant's
    /// database closes. Reopening reads it instead of rebuilding the graph.
    ///
    /// # Errors
    /// [`Error::Backend`] if the file cannot be written.
    pub fn write_snapshot(tenant: &TenantDb) -> Result<()> {
        tenants::write_snapshot(tenant)
    }

    /// Points in the tenant's HNSW graph, embeddings pending insertion, tombstones, and the
    /// bytes the graph holds.
    pub fn index_stats(tenant: &TenantDb) -> IndexStats {
        match tenant.vector_index() {
            Some(index) => {
                let (graph, pending, tombstones) = index.stats();
                IndexStats {
                    graph,
                    pending,
                    tombstones,
                    bytes: index.memory_bytes(),
                    side_bytes: index.side_bytes(),
                    restored: index.restored(),
                }
            }
            None => IndexStats::default(),
        }
    }

    /// The ids and distances of the `k` nearest resources, from the index alone (no records
    /// are read): what an index library returns, for benches that compare with one.
    pub fn nearest_ids(
        tenant: &TenantDb,
        query: &SearchQuery,
        ef: usize,
    ) -> Vec<(ResourceId, f32)> {
        match tenant.vector_index() {
            Some(index) => index
                .search(&query.vector, query.k, Some(ef), query.filter.as_ref(), tenant)
                .into_iter()
                .map(|hit| (hit.id, hit.distance))
                .collect(),
            None => Vec::new(),
        }
    }

    /// A vector search with an explicit HNSW beam width, for benches that sweep it.
    ///
    /// # Errors
    /// As [`Provider::search_resources`].
    pub fn search_with_ef(
        tenant: &TenantDb,
        query: &SearchQuery,
        ef: usize,
    ) -> Result<Vec<ScoredResource>> {
        search(tenant, query, Some(ef))
    }
}

/// What a [`RocksProvider`] holds in memory, in bytes: RocksDB's share is bounded by
/// [`RocksConfig::block_cache_bytes`] and [`RocksConfig::write_buffer_budget_bytes`]; the
/// vector indexes grow with the embeddings of the open tenants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Tenant databases open now (in use, or idle and kept for reuse).
    pub open_tenants: usize,
    /// Blocks in the shared block cache.
    pub block_cache: usize,
    /// The part of `block_cache` pinned by open tables or readers (not evictable now).
    pub block_cache_pinned: usize,
    /// Memtables of every open tenant.
    pub write_buffers: usize,
    /// The vector indexes of the open tenants: graphs, vectors and what they keep beside
    /// (see [`IndexStats`]).
    pub vector_indexes: usize,
}

/// The state of a tenant's vector index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Points in the graph, tombstones included.
    pub graph: usize,
    /// Embeddings searchable by exact scan while waiting for the graph.
    pub pending: usize,
    /// Deleted points still in the graph.
    pub tombstones: usize,
    /// Bytes held by the graph's vectors (in the configured [`VectorPrecision`], with an int8
    /// quantizer's ranges and per-point norms) and links.
    pub bytes: usize,
    /// Bytes held beside the graph, estimated: point ids and hashes, each point's metadata
    /// (kept in memory for filters; a `BTreeMap` node of ~630 bytes even for two small
    /// fields), the id map, postings and pending vectors.
    pub side_bytes: usize,
    /// Points the graph took from its snapshot when the tenant was opened; the rest of the
    /// stored embeddings were (or are being) inserted since.
    pub restored: usize,
}

/// Vector search: the index finds ids and distances, the store supplies the records. A hit
/// whose record vanished in between (a concurrent delete) is dropped.
fn search(
    tenant: &TenantDb,
    query: &SearchQuery,
    ef: Option<usize>,
) -> Result<Vec<ScoredResource>> {
    let Some(index) = tenant.vector_index() else { return Ok(Vec::new()) };
    let hits = index.search(&query.vector, query.k, ef, query.filter.as_ref(), tenant);
    let ids: Vec<ResourceId> = hits.iter().map(|hit| hit.id).collect();
    let resources = View::Db(tenant).resources(&ids)?;
    // A hit deleted since the index answered is left out.
    Ok(hits
        .into_iter()
        .zip(resources)
        .filter_map(|(hit, resource)| {
            Some(ScoredResource { resource: resource?, distance: hit.distance })
        })
        .collect())
}

/// Runs CPU-bound work (a search) on the calling task without starving the runtime: on a
/// multi-threaded runtime the worker hands its other tasks off first.
fn cpu_bound<T>(op: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(op),
        _ => op(),
    }
}

/// Runs `op` on tokio's blocking pool when inside a runtime, inline otherwise.
async fn blocking_all<T: Send + 'static>(
    op: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(op)
            .await
            .map_err(|e| Error::Backend { provider: NAME, source: Box::new(e) })?,
        Err(_) => op(),
    }
}

/// Runs a scan on tokio's blocking pool when inside a runtime, inline otherwise.
async fn blocking<T: Send + 'static>(
    tenant: &Arc<TenantDb>,
    op: impl FnOnce(&TenantDb) -> Result<T> + Send + 'static,
) -> Result<T> {
    let tenant = Arc::clone(tenant);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(move || op(&tenant))
            .await
            .map_err(|e| Error::Backend { provider: NAME, source: Box::new(e) })?,
        Err(_) => op(&tenant),
    }
}

impl Provider for RocksProvider {
    type Tenant = Arc<TenantDb>;
    type Txn<'p> = RocksTxn<'p>;
    const NAME: &'static str = NAME;

    fn capabilities(&self) -> Capabilities {
        Capabilities { vector_index: VectorIndexKind::Hnsw, persistent: true }
    }

    async fn create_tenant(&self, id: &TenantId, config: &TenantConfig) -> Result<()> {
        self.tenants.create(id, config)
    }

    async fn open_tenant(&self, id: &TenantId) -> Result<Self::Tenant> {
        self.tenants.get(id)
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>> {
        self.tenants.list()
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        self.tenants.delete(id)
    }

    /// Flushes every open tenant's memtables and writes its vector index snapshot if it
    /// changed, closes the tenants no handle holds, and empties the block cache (blocks
    /// pinned by open tables stay). A tenant a handle holds keeps its vector
    /// index in memory: drop the handles to release those too.
    async fn release_memory(&self) -> Result<()> {
        let tenants = self.tenants.open_now();
        let flushed =
            blocking_all(move || tenants.iter().try_for_each(|tenant| tenant.flush())).await;
        self.tenants.close_idle();
        self.tenants.empty_block_cache();
        flushed
    }

    /// Nothing to move: every write queues its embeddings for the background indexer
    /// (`RocksProvider::wait_for_index` waits for it).
    async fn flush_vector_index(&self, _: &Self::Tenant) -> Result<()> {
        Ok(())
    }

    fn tenant_id(tenant: &Self::Tenant) -> &TenantId {
        &tenant.id
    }

    async fn tenant_config(&self, tenant: &Self::Tenant) -> Result<TenantConfig> {
        Ok(tenant.config())
    }

    async fn fix_dimension(&self, tenant: &Self::Tenant, dimension: u32) -> Result<u32> {
        tenant.fix_dimension(dimension)
    }

    async fn insert_resources(&self, tenant: &Self::Tenant, resources: &[Resource]) -> Result<()> {
        tenant.write(|ops| ops.insert_resources(resources))
    }

    async fn create_resources(&self, tenant: &Self::Tenant, resources: &[Resource]) -> Result<()> {
        tenant.write_fresh_resources(resources)
    }

    async fn get_resource(&self, tenant: &Self::Tenant, id: ResourceId) -> Result<Resource> {
        View::Db(tenant).resource(id)
    }

    async fn update_resource(
        &self,
        tenant: &Self::Tenant,
        resource: &Resource,
    ) -> Result<Resource> {
        tenant.write(|ops| ops.update_resource(resource))
    }

    async fn delete_resource(&self, tenant: &Self::Tenant, id: ResourceId) -> Result<()> {
        tenant.write(|ops| ops.delete_resource(id))
    }

    async fn insert_entity(&self, tenant: &Self::Tenant, entity: &Entity) -> Result<()> {
        tenant.write(|ops| ops.insert_entity(entity))
    }

    async fn insert_entities(&self, tenant: &Self::Tenant, entities: &[Entity]) -> Result<()> {
        tenant.write(|ops| ops.insert_entities(entities))
    }

    async fn get_entity(&self, tenant: &Self::Tenant, id: EntityId) -> Result<Entity> {
        View::Db(tenant).entity(id)
    }

    async fn update_entity(&self, tenant: &Self::Tenant, entity: &Entity) -> Result<Entity> {
        tenant.write(|ops| ops.update_entity(entity))
    }

    async fn delete_entity(&self, tenant: &Self::Tenant, id: EntityId) -> Result<()> {
        tenant.write(|ops| ops.delete_entity(id))
    }

    async fn insert_edge(&self, tenant: &Self::Tenant, edge: &Edge) -> Result<()> {
        tenant.write(|ops| ops.insert_edge(edge))
    }

    async fn insert_edges(&self, tenant: &Self::Tenant, edges: &[Edge]) -> Result<()> {
        tenant.write(|ops| ops.insert_edges(edges))
    }

    async fn get_edge(&self, tenant: &Self::Tenant, id: EdgeId) -> Result<Edge> {
        View::Db(tenant).edge(id)
    }

    async fn get_edges(
        &self,
        tenant: &Self::Tenant,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        View::Db(tenant).edges(entity, direction, relation)
    }

    async fn delete_edge(&self, tenant: &Self::Tenant, id: EdgeId) -> Result<()> {
        tenant.write(|ops| ops.delete_edge(id))
    }

    async fn insert_moment(&self, tenant: &Self::Tenant, moment: &Moment) -> Result<()> {
        tenant.write(|ops| ops.insert_moment(moment))
    }

    async fn insert_moments(&self, tenant: &Self::Tenant, moments: &[Moment]) -> Result<()> {
        tenant.write(|ops| ops.insert_moments(moments))
    }

    async fn get_moment(&self, tenant: &Self::Tenant, id: MomentId) -> Result<Moment> {
        View::Db(tenant).moment(id)
    }

    async fn update_moment(&self, tenant: &Self::Tenant, moment: &Moment) -> Result<Moment> {
        tenant.write(|ops| ops.update_moment(moment))
    }

    async fn delete_moment(&self, tenant: &Self::Tenant, id: MomentId) -> Result<()> {
        tenant.write(|ops| ops.delete_moment(id))
    }

    async fn search_resources(
        &self,
        tenant: &Self::Tenant,
        query: &SearchQuery,
    ) -> Result<Vec<ScoredResource>> {
        cpu_bound(|| search(tenant, query, None))
    }

    async fn text_search(&self, tenant: &Self::Tenant, query: &TextQuery) -> Result<Vec<TextHit>> {
        let query = query.clone();
        blocking(tenant, move |t| text::text_search(t, &query)).await
    }

    async fn search_entities(
        &self,
        tenant: &Self::Tenant,
        query: &EntityQuery,
    ) -> Result<Vec<Entity>> {
        let query = query.clone();
        blocking(tenant, move |t| query::search_entities(t, &query)).await
    }

    async fn traverse(&self, tenant: &Self::Tenant, query: &TraverseQuery) -> Result<Vec<Reached>> {
        graph::traverse(tenant, query)
    }

    async fn moments_in_range(
        &self,
        tenant: &Self::Tenant,
        range: &TimeRange,
    ) -> Result<Vec<Moment>> {
        let range = *range;
        blocking(tenant, move |t| query::moments_in_range(t, &range)).await
    }

    async fn scan(
        &self,
        tenant: &Self::Tenant,
        kind: RecordKind,
        after: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        blocking(tenant, move |t| query::scan(t, kind, after, limit)).await
    }

    async fn begin<'p>(&'p self, tenant: &Self::Tenant) -> Result<RocksTxn<'p>> {
        RocksTxn::begin(Arc::clone(tenant))
    }
}
