//! Vector search for the RocksDB provider: an in-memory HNSW index per tenant ([`super::hnsw`]),
//! derived from the `embeddings` column family and kept in step with every commit.
//!
//! Design decisions:
//! - **Read-your-writes without waiting for the graph.** A commit that writes embeddings hands
//!   them to the index before the call returns, into an *inbox*: searched exactly and merged
//!   with the graph's results, superseding whatever the graph holds for the same resources.
//!   A background thread moves them into the graph in small batches, so ingest never waits
//!   for graph insertion and a resource is searchable the moment its write returns.
//! - **Writers never wait for the indexer.** A commit only takes the inbox's lock, never the
//!   graph's: the indexer holds the graph's lock while it links points, and a commit that
//!   waited for it measured 4–17 ms for a batch of 1000 × 384-d on two busy cores (the write
//!   itself takes ~1 ms). The indexer moves the inbox into its own state (`pending`) under both
//!   locks, so a search (which takes both, in the same order) sees every change exactly once.
//! - **Commit order is index order.** Commits that change embeddings apply their changes to the
//!   index under one per-tenant lock held across the RocksDB commit, so two racing updates of a
//!   resource cannot leave the index with the loser's vector.
//! - **Deletes and updates are tombstones.** A removed or re-embedded resource's old point stays
//!   in the graph as a waypoint and never enters a result.
//! - **Filters apply inside the walk.** The filter is evaluated on each point the walk admits
//!   (metadata is cached beside the points), not after a top-k cut; when the walk still finds
//!   fewer than `k` matches — a very selective filter — the search falls back to an exact scan
//!   of every live point, so `k` results come back whenever `k` resources match.
//! - **Small tenants are searched exactly**: below `exact_below` live points an exact scan is
//!   as fast as the graph and has recall 1.
//! - **Derived state, snapshotted.** The graph is persisted to `vectors.hnsw` in the tenant
//!   directory (temporary file, fsync, rename), with a checksum and a hash of every point's
//!   embedding: when the tenant closes, and by the indexer when it is idle and enough of the
//!   graph changed since the last snapshot (see [`VectorIndex::snapshot_if_due`]), so a process
//!   killed before it closes its tenants does not lose the graph it built. On open the
//!   snapshot is checked point by point against the stored embeddings: unchanged points are
//!   reused, changed or vanished ones tombstoned, missing ones indexed in the background. A
//!   missing, damaged or foreign snapshot means a rebuild. So after any crash the index holds
//!   exactly the stored embeddings, without a sequence-number protocol to get wrong, and a
//!   reopen costs one scan of the store instead of a graph build.
//!
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::crypto::TenantCrypto;
use super::hnsw::{Hnsw, HnswParams, InsertPlan, Scored, prepare_in_place, prepared_copy};
use crate::model::{Filter, Metadata, Metric, ResourceId};

/// A change to the searchable set, produced by a write and applied after its commit.
#[derive(Clone, Debug)]
pub(crate) enum VectorChange {
    /// The resource now has this embedding and metadata.
    Upsert { id: ResourceId, vector: Vec<f32>, metadata: Arc<Metadata> },
    /// The resource has no embedding any more (deleted, or its embedding removed).
    Remove { id: ResourceId },
    /// An upsert already hashed and prepared by [`VectorIndex::prepare`], off the commit path.
    Prepared { id: ResourceId, pending: Pending },
}

/// Where a live resource's vector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Graph(u32),
    Pending,
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// Prepared as the graph would store it.
    vector: Vec<f32>,
    metadata: Arc<Fields>,
    /// [`hash_vector`] of the embedding as stored, so a snapshot can be checked against the
    /// store without comparing whole vectors.
    hash: u64,
}

/// A point of the graph.
struct Point {
    id: ResourceId,
    metadata: Arc<Fields>,
    hash: u64,
}

struct State {
    graph: Hnsw,
    /// Point id → resource id, metadata, embedding hash.
    points: Vec<Point>,
    /// Every live resource with an embedding.
    slots: HashMap<ResourceId, Slot>,
    pending: HashMap<ResourceId, Pending>,
    /// Graph points by top-level scalar metadata value: the candidates of an equality filter
    /// without walking or scanning. Deleted points stay listed and are skipped at query time.
    postings: HashMap<String, HashMap<Scalar, Vec<u32>>>,
}

/// A JSON scalar as a posting key. Numbers are keyed by their `f64` value, the way filters
/// compare them (`1 == 1.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Scalar {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
}

impl Scalar {
    fn of(value: &serde_json::Value) -> Option<Scalar> {
        Some(match value {
            serde_json::Value::Null => Scalar::Null,
            serde_json::Value::Bool(b) => Scalar::Bool(*b),
            serde_json::Value::Number(n) => {
                let x = n.as_f64()?;
                Scalar::Number(if x == 0.0 { 0.0f64.to_bits() } else { x.to_bits() })
            }
            serde_json::Value::String(s) => Scalar::String(s.clone()),
            _ => return None,
        })
    }
}

/// A hit: resource and distance under the tenant's metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hit {
    pub(crate) id: ResourceId,
    pub(crate) distance: f32,
}

/// Committed changes not yet moved into [`State`]: the latest change per resource.
#[derive(Default)]
struct Inbox {
    /// `None`: the resource no longer has an embedding.
    changes: HashMap<ResourceId, Option<Pending>>,
}

/// A stored embedding as an index is opened over it: the resource, its vector as stored,
/// and its metadata (for filters).
pub(crate) type Stored = (ResourceId, Vec<f32>, Arc<Metadata>);

/// Where an index writes its snapshots (see [`VectorIndex::snapshot_if_due`]).
pub(crate) struct Persist {
    /// The tenant directory.
    pub(crate) dir: PathBuf,
    /// The tenant's sealing keys, shared with the tenant (one session, one nonce counter).
    pub(crate) crypto: Option<Arc<TenantCrypto>>,
    /// Set when the tenant is being deleted: no snapshot is worth writing then.
    pub(crate) discarded: Arc<AtomicBool>,
}

/// The indexer writes no snapshot for fewer graph changes than this (see
/// [`VectorIndex::snapshot_if_due`]).
const SNAPSHOT_MIN_CHANGES: usize = 4096;

/// The vector index of one tenant.
pub(crate) struct VectorIndex {
    /// Lock order: `state` before `inbox`.
    state: RwLock<State>,
    inbox: RwLock<Inbox>,
    metric: Metric,
    params: HnswParams,
    exact_below: usize,
    /// Held across a RocksDB commit that changes embeddings and the index update after it.
    pub(crate) commit_lock: Mutex<()>,
    indexing: AtomicBool,
    /// When the last commit changed embeddings (milliseconds since the index was made): while
    /// writes keep arriving, the indexer plans on one core fewer and leaves it to the writers.
    last_write: std::sync::atomic::AtomicU64,
    created: std::time::Instant,
    /// Writers encoding a batch on every core right now (see [`Self::encoding`]).
    encoders: AtomicUsize,
    /// Serialises graph maintenance (inserting pending points, compaction): a compaction
    /// copies the graph, builds a new one outside the state lock, and must not miss points
    /// inserted meanwhile or race another compaction.
    maintenance: Mutex<()>,
    /// The graph changed since it was loaded or last written.
    dirty: AtomicBool,
    /// Points linked into the graph (or rebuilt by a compaction) since the last snapshot.
    changed: AtomicUsize,
    /// Points the graph took from its snapshot when the index was opened.
    restored: AtomicUsize,
    /// Where snapshots go; `None` for an index of no tenant (unit tests).
    persist: Option<Persist>,
    /// Held while a snapshot is written: the indexer and a closing tenant never write one
    /// together.
    snapshot_lock: Mutex<()>,
}

impl VectorIndex {
    pub(crate) fn new(
        dimension: usize,
        metric: Metric,
        params: HnswParams,
        exact_below: usize,
        persist: Option<Persist>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(State {
                graph: Hnsw::new(dimension, metric, params),
                points: Vec::new(),
                slots: HashMap::new(),
                pending: HashMap::new(),
                postings: HashMap::new(),
            }),
            inbox: RwLock::new(Inbox::default()),
            metric,
            params,
            exact_below,
            commit_lock: Mutex::new(()),
            indexing: AtomicBool::new(false),
            last_write: std::sync::atomic::AtomicU64::new(0),
            created: std::time::Instant::now(),
            encoders: AtomicUsize::new(0),
            maintenance: Mutex::new(()),
            dirty: AtomicBool::new(false),
            changed: AtomicUsize::new(0),
            restored: AtomicUsize::new(0),
            persist,
            snapshot_lock: Mutex::new(()),
        })
    }

    /// Reads the snapshot in `persist`'s directory: `None` when there is none, or none valid
    /// for this dimension and metric (damaged, foreign, of another dimension). The
    /// [`VectorIndex::open`] of a tenant reads it on one core while it reads the stored
    /// embeddings on another.
    pub(crate) fn read_snapshot(
        persist: &Persist,
        dimension: usize,
        metric: Metric,
    ) -> Option<Snapshot> {
        read_snapshot(
            &persist.dir.join(SNAPSHOT_FILE),
            persist.crypto.as_deref(),
            dimension,
            metric,
        )
    }

    /// Opens the index of a tenant whose stored embeddings are `stored`: from `snapshot` (see
    /// [`VectorIndex::read_snapshot`]) when there is one, checked point by point
    /// against the store (a point whose embedding changed or vanished is tombstoned; an
    /// embedding the snapshot lacks becomes pending), else rebuilt from scratch in the
    /// background. The snapshot is only ever a cache: whatever it says, the index ends up
    /// holding exactly the stored embeddings.
    pub(crate) fn open(
        persist: Persist,
        snapshot: Option<Snapshot>,
        dimension: usize,
        metric: Metric,
        params: HnswParams,
        exact_below: usize,
        stored: Vec<Stored>,
    ) -> Arc<Self> {
        let index = Self::new(dimension, metric, params, exact_below, Some(persist));
        let mut changes = Vec::new();
        match snapshot {
            Some(Snapshot { graph, ids, hashes, format_02: upgraded }) => {
                let mut state = index.state.write();
                let mut by_id: HashMap<ResourceId, u32> = HashMap::with_capacity(ids.len());
                for (point, id) in ids.iter().enumerate() {
                    if !graph.is_deleted(point as u32) {
                        by_id.insert(*id, point as u32);
                    }
                }
                state.points = ids
                    .iter()
                    .zip(&hashes)
                    .map(|(id, hash)| Point { id: *id, metadata: Arc::default(), hash: *hash })
                    .collect();
                state.graph = graph;
                // A snapshot of format 02 is checked with its own hash; its points then take
                // this format's hash, and the snapshot is rewritten in this format.
                let snapshot_hash = if upgraded { format_02::hash_vector } else { hash_vector };
                for (id, vector, metadata) in stored {
                    match by_id.remove(&id) {
                        Some(point)
                            if state.points[point as usize].hash == snapshot_hash(&vector) =>
                        {
                            let fields = Fields::of(&metadata);
                            state.post(point, &fields);
                            state.points[point as usize].metadata = Arc::new(fields);
                            if upgraded {
                                state.points[point as usize].hash = hash_vector(&vector);
                            }
                            state.slots.insert(id, Slot::Graph(point));
                        }
                        stale => {
                            if let Some(point) = stale {
                                state.graph.delete(point);
                            }
                            changes.push(VectorChange::Upsert { id, vector, metadata });
                        }
                    }
                }
                // In the snapshot but no longer stored: deleted after the snapshot was taken.
                let vanished = !by_id.is_empty();
                for point in by_id.into_values() {
                    state.graph.delete(point);
                }
                index.dirty.store(upgraded || vanished || !changes.is_empty(), Ordering::Release);
                index.restored.store(state.slots.len(), Ordering::Relaxed);
            }
            None => {
                changes = stored
                    .into_iter()
                    .map(|(id, vector, metadata)| VectorChange::Upsert { id, vector, metadata })
                    .collect();
            }
        }
        index.apply(changes);
        index
    }

    /// Writes the graph (pending points are not in it: they are re-found in the store on
    /// open) to `dir` atomically: a temporary file, fsync, rename, fsync of the directory.
    /// Does nothing when the graph has not changed since it was loaded or last written.
    /// In an encrypted tenant the whole file is one sealed value.
    pub(crate) fn write_snapshot(
        &self,
        dir: &Path,
        crypto: Option<&TenantCrypto>,
    ) -> std::io::Result<()> {
        let _writing = self.snapshot_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut out = Vec::new();
        {
            let state = self.state.read();
            self.changed.store(0, Ordering::Relaxed);
            out.reserve(state.graph.memory_bytes() + state.points.len() * 24 + 64);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            state.graph.encode(&mut out);
            for point in &state.points {
                out.extend_from_slice(point.id.as_bytes());
            }
            for point in &state.points {
                out.extend_from_slice(&point.hash.to_le_bytes());
            }
        }
        let checksum = hash_bytes(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        if let Some(crypto) = crypto {
            out = crypto.seal(SNAPSHOT_FILE, b"", &out);
        }
        let path = dir.join(SNAPSHOT_FILE);
        let temporary = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let result = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&out)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    /// Writes a snapshot now to the tenant's directory, if the graph changed since the last
    /// one and the tenant is not being deleted.
    pub(crate) fn persist_now(&self) -> std::io::Result<()> {
        match &self.persist {
            Some(persist) if !persist.discarded.load(Ordering::Acquire) => {
                self.write_snapshot(&persist.dir, persist.crypto.as_deref())
            }
            _ => Ok(()),
        }
    }

    /// Writes a snapshot from the indexer once it is idle (nothing pending) and enough of the
    /// graph changed since the last one: an eighth of it, and never fewer than
    /// [`SNAPSHOT_MIN_CHANGES`] points. A process killed before it closes its tenants (a phone
    /// kills apps at any moment) then reopens from the last one and inserts only what changed
    /// since, instead of building the whole graph again. A failed write is left for the next
    /// one: the snapshot is only ever a cache.
    ///
    /// Only when idle: a snapshot is the whole graph (80 MB at 50k × 384-d) copied, hashed,
    /// written and synced, and snapshots taken while a load was still being indexed (each
    /// time the graph had doubled) doubled the p50 of single gets measured meanwhile by
    /// `percolate bench` (10-19 µs without, 24-30 µs with, alternating runs).
    fn snapshot_if_due(&self, idle: bool) {
        let changed = self.changed.load(Ordering::Relaxed);
        if !idle || self.persist.is_none() || changed < SNAPSHOT_MIN_CHANGES {
            return;
        }
        if changed >= self.state.read().graph.len() / 8 {
            let _ = self.persist_now();
        }
    }

    /// Points the graph took from its snapshot when the index was opened.
    pub(crate) fn restored(&self) -> usize {
        self.restored.load(Ordering::Relaxed)
    }

    /// Applies committed changes, then makes sure a background indexer drains them.
    pub(crate) fn apply(self: &Arc<Self>, changes: Vec<VectorChange>) {
        if changes.is_empty() {
            return;
        }
        self.last_write.store(self.elapsed_ms().max(1), Ordering::Relaxed);
        // Hashing and normalising happen before the lock is taken, so searches wait only for
        // the map updates.
        let prepared: Vec<(ResourceId, Option<Pending>)> = changes
            .into_iter()
            .map(|change| match change {
                VectorChange::Upsert { id, vector, metadata } => {
                    let hash = hash_vector(&vector);
                    let vector = prepare_in_place(self.metric, vector);
                    let metadata = Arc::new(Fields::of(&metadata));
                    (id, Some(Pending { vector, metadata, hash }))
                }
                VectorChange::Remove { id } => (id, None),
                VectorChange::Prepared { id, pending } => (id, Some(pending)),
            })
            .collect();
        self.inbox.write().changes.extend(prepared);
        self.spawn_indexer();
    }

    /// The upsert of `vector` for resource `id`, hashed and prepared as the graph stores it
    /// (unit length under cosine, so the exact scan and the graph give the same distances).
    /// Callers run it while they encode values, on several cores, so that [`Self::apply`]
    /// only has to hand the change over.
    pub(crate) fn prepare(
        &self,
        id: ResourceId,
        vector: &[f32],
        metadata: &Metadata,
    ) -> VectorChange {
        let hash = hash_vector(vector);
        let vector = prepared_copy(self.metric, vector);
        let metadata = Arc::new(Fields::of(metadata));
        VectorChange::Prepared { id, pending: Pending { vector, metadata, hash } }
    }

    /// Marks a writer encoding a batch on every core until the guard is dropped: the indexer
    /// pauses between points meanwhile (for at most [`MAX_PAUSE`] per point), so the batch has
    /// the cores. The scheduler alone did not give them: a planner or the linker at nice 10
    /// kept a batch's encoding threads waiting for a slice, ~1 ms of a 1000 x 384-d batch.
    pub(crate) fn encoding(&self) -> Encoding<'_> {
        self.encoders.fetch_add(1, Ordering::AcqRel);
        Encoding(&self.encoders)
    }

    /// Waits while a writer encodes a batch, for at most [`MAX_PAUSE`].
    fn pause_for_writers(&self) {
        if self.encoders.load(Ordering::Acquire) == 0 {
            return;
        }
        let started = std::time::Instant::now();
        while self.encoders.load(Ordering::Acquire) > 0 && started.elapsed() < MAX_PAUSE {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Moves the inbox into `state` (the caller holds its write lock, so no search sees a
    /// change twice or not at all).
    fn drain(&self, state: &mut State) {
        let changes = std::mem::take(&mut self.inbox.write().changes);
        for (id, pending) in changes {
            state.remove(id);
            if let Some(pending) = pending {
                state.pending.insert(id, pending);
                state.slots.insert(id, Slot::Pending);
            }
        }
    }

    /// Nothing waits to be put in the graph.
    fn idle(&self) -> bool {
        self.state.read().pending.is_empty() && self.inbox.read().changes.is_empty()
    }

    fn spawn_indexer(self: &Arc<Self>) {
        if self.indexing.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("percolate-hnsw".into()).spawn(move || {
            lower_priority();
            loop {
                // The index may be dropped (tenant closed) while we work: then stop.
                let Some(index) = index.upgrade() else { return };
                // Let writers and searchers at the lock between inserts.
                std::thread::yield_now();
                let busy = index.index_one() || index.compact();
                index.snapshot_if_due(!busy);
                if !busy {
                    index.indexing.store(false, Ordering::Release);
                    // A change may have arrived between the last check and the flag reset.
                    if index.idle() || index.indexing.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
        if spawned.is_err() {
            // No thread: pending points stay searchable exactly; retry on the next change.
            self.indexing.store(false, Ordering::Release);
        }
    }

    /// Moves a batch of pending points into the graph; false when nothing is pending.
    ///
    /// The expensive half of each insert (finding neighbours) runs under the read lock, on
    /// every core, so searches and commits go on meanwhile; only linking takes the write
    /// lock. A point that changed while its insert was planned stays pending for the next
    /// batch.
    fn index_one(&self) -> bool {
        let _maintenance = self.maintenance.lock();
        if !self.inbox.read().changes.is_empty() {
            let mut state = self.state.write();
            self.drain(&mut state);
        }
        let batch: Vec<(ResourceId, Vec<f32>, u64)> = {
            let state = self.state.read();
            // Points planned together cannot link to each other, so batches stay small next
            // to the graph: one at a time while it is young, at most 64.
            let size = (state.graph.len() / 256).clamp(1, 64);
            state.pending.iter().take(size).map(|(id, p)| (*id, p.vector.clone(), p.hash)).collect()
        };
        if batch.is_empty() {
            return false;
        }
        let levels: Vec<usize> = {
            let mut state = self.state.write();
            batch.iter().map(|_| state.graph.draw_level()).collect()
        };
        let plans: Vec<InsertPlan> = {
            let lock = &self.state;
            let cores = super::cores().clamp(1, 4);
            let last_write = self.last_write.load(Ordering::Relaxed);
            let writing = last_write != 0 && self.elapsed_ms().saturating_sub(last_write) < 100;
            let threads = if writing { cores.saturating_sub(1).max(1) } else { cores };
            let chunk = batch.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let workers: Vec<_> = batch
                    .chunks(chunk)
                    .zip(levels.chunks(chunk))
                    .map(|(points, levels)| {
                        scope.spawn(move || {
                            points
                                .iter()
                                .zip(levels)
                                // The read lock is taken per point, not per batch: a commit
                                // waiting for the write lock waits for one plan at most.
                                .map(|((_, v, _), l)| {
                                    self.pause_for_writers();
                                    lock.read().graph.plan(v, *l)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
            })
        };
        // Linked a few points per write lock, handed straight to a waiting searcher between
        // them (`unlock_fair`): the indexer runs at a lower priority, so on a busy machine it
        // may be descheduled while it holds the lock, and a search must not wait for many
        // links then.
        let mut work = batch.into_iter().zip(plans).peekable();
        while work.peek().is_some() {
            self.pause_for_writers();
            let mut state = self.state.write();
            // Changes committed while planning: a point changed since is left out below.
            self.drain(&mut state);
            for ((id, _, hash), plan) in work.by_ref().take(8) {
                let unchanged = state.slots.get(&id) == Some(&Slot::Pending)
                    && state.pending.get(&id).is_some_and(|p| p.hash == hash);
                if !unchanged {
                    continue;
                }
                let Some(pending) = state.pending.remove(&id) else { continue };
                let point = state.graph.commit(plan);
                state.post(point, &pending.metadata);
                state.points.push(Point { id, metadata: pending.metadata, hash: pending.hash });
                state.slots.insert(id, Slot::Graph(point));
                self.changed.fetch_add(1, Ordering::Relaxed);
            }
            self.dirty.store(true, Ordering::Release);
            parking_lot::RwLockWriteGuard::unlock_fair(state);
        }
        true
    }

    /// Rebuilds the graph without its tombstones once they are a quarter of it; true if it
    /// did. The build runs outside the lock, from a copy of the live points, so searches and
    /// commits go on meanwhile; a point that changed during the build is tombstoned in the new
    /// graph (its new version is pending) when the graphs are swapped.
    fn compact(&self) -> bool {
        struct Live {
            old: u32,
            vector: Vec<f32>,
            id: ResourceId,
            metadata: Arc<Fields>,
            hash: u64,
        }
        let _maintenance = self.maintenance.lock();
        let (live, dimension) = {
            let state = self.state.read();
            let size = state.graph.len();
            if size < 1024 || state.graph.deleted_count() * 4 < size {
                return false;
            }
            let live: Vec<Live> = state
                .points
                .iter()
                .enumerate()
                .filter(|(p, _)| !state.graph.is_deleted(*p as u32))
                .map(|(p, info)| Live {
                    old: p as u32,
                    vector: state.graph.vector(p as u32).to_vec(),
                    id: info.id,
                    metadata: Arc::clone(&info.metadata),
                    hash: info.hash,
                })
                .collect();
            (live, state.graph.dimension())
        };
        let mut fresh = Hnsw::new(dimension, self.metric, self.params);
        for point in &live {
            fresh.insert(&point.vector);
        }
        let mut state = self.state.write();
        self.drain(&mut state);
        let mut points = Vec::with_capacity(live.len());
        let mut slots: HashMap<ResourceId, Slot> =
            state.pending.keys().map(|id| (*id, Slot::Pending)).collect();
        state.postings.clear();
        for (new, point) in live.into_iter().enumerate() {
            let new = new as u32;
            if state.slots.get(&point.id) == Some(&Slot::Graph(point.old)) {
                slots.insert(point.id, Slot::Graph(new));
                state.post(new, &point.metadata);
            } else {
                fresh.delete(new);
            }
            points.push(Point { id: point.id, metadata: point.metadata, hash: point.hash });
        }
        self.changed.fetch_add(points.len(), Ordering::Relaxed);
        state.graph = fresh;
        state.points = points;
        state.slots = slots;
        self.dirty.store(true, Ordering::Release);
        true
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Waits until every pending point is in the graph, tombstones are compacted away and the
    /// snapshot the indexer then owes is written (tests and benches, which time what follows
    /// without that background work; searches never need to wait).
    pub(crate) fn wait_indexed(self: &Arc<Self>) {
        while self.index_one() || self.compact() {}
        self.snapshot_if_due(true);
        drop(self.snapshot_lock.lock());
    }

    /// Points in the graph, pending points, tombstones.
    ///
    /// Read locks only, counting the inbox as [`Self::drain`] would apply it, so a stats call
    /// never queues for the write lock (parking_lot lets no reader past a waiting writer, so
    /// every search would queue behind it).
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let state = self.state.read();
        let inbox = self.inbox.read();
        let (mut pending, mut tombstones) = (state.pending.len(), state.graph.deleted_count());
        for (id, change) in &inbox.changes {
            match state.slots.get(id) {
                Some(Slot::Graph(_)) => tombstones += 1,
                Some(Slot::Pending) => pending -= 1,
                None => {}
            }
            pending += usize::from(change.is_some());
        }
        (state.graph.len(), pending, tombstones)
    }

    /// Bytes held by the graph (vectors and links).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.state.read().graph.memory_bytes()
    }

    /// Bytes held beside the graph, estimated from capacities (allocator overhead not
    /// counted): each point's id, hash and metadata (kept for filters), the id map, postings,
    /// and pending vectors.
    pub(crate) fn side_bytes(&self) -> usize {
        use std::mem::size_of;
        let state = self.state.read();
        let arc = |m: &Fields| 2 * size_of::<usize>() + size_of::<Fields>() + m.heap_bytes();
        let points = state.points.capacity() * size_of::<Point>()
            + state.points.iter().map(|p| arc(&p.metadata)).sum::<usize>();
        let slots = state.slots.capacity() * (size_of::<(ResourceId, Slot)>() + 1);
        let pending = state.pending.capacity() * (size_of::<(ResourceId, Pending)>() + 1)
            + state
                .pending
                .values()
                .map(|p| 4 * p.vector.capacity() + arc(&p.metadata))
                .sum::<usize>();
        let postings = state
            .postings
            .iter()
            .map(|(key, values)| {
                key.capacity()
                    + values.capacity() * (size_of::<(Scalar, Vec<u32>)>() + 1)
                    + values.values().map(|ids| 4 * ids.capacity()).sum::<usize>()
            })
            .sum::<usize>();
        points + slots + pending + postings
    }

    /// The `k` nearest live resources that match `filter`, nearest first, ties by id.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&Filter>,
    ) -> Vec<Hit> {
        let state = self.state.read();
        let inbox = self.inbox.read();
        let matches = |fields: &Fields| filter.is_none_or(|f| fields.matches(f));
        // What the inbox holds for a resource supersedes what the graph or `pending` holds.
        let current = |id: &ResourceId| inbox.changes.is_empty() || !inbox.changes.contains_key(id);
        let live = state.slots.len();
        let prepared = state.graph.prepare(query);
        let mut best: BinaryHeap<(Scored, ResourceId)> = BinaryHeap::with_capacity(k + 1);
        let offer = |best: &mut BinaryHeap<(Scored, ResourceId)>, distance: f32, id: ResourceId| {
            // Ties are broken by resource id so every provider orders them the same way.
            let entry = (Scored { distance, point: 0 }, id);
            if best.len() < k {
                best.push(entry);
            } else if best
                .peek()
                .is_some_and(|worst| (entry.0.distance, entry.1) < (worst.0.distance, worst.1))
            {
                best.pop();
                best.push(entry);
            }
        };
        let exact_graph = live <= self.exact_below;
        // An equality filter with few candidates (at most 5% of the tenant): score exactly
        // those and skip the walk. Above that the walk finds k matches quickly anyway.
        let planned = match filter {
            Some(filter) if !exact_graph => {
                state.candidates(filter).filter(|c| c.len() * 20 <= live)
            }
            _ => None,
        };
        if let Some(candidates) = planned {
            for point in candidates {
                let info = &state.points[point as usize];
                if !state.graph.is_deleted(point) && current(&info.id) && matches(&info.metadata) {
                    offer(&mut best, state.graph.distance(&prepared, point), info.id);
                }
            }
        } else if !exact_graph {
            let found =
                state.graph.search(&prepared, k, ef.unwrap_or(self.params.ef_search), |p| {
                    let info = &state.points[p as usize];
                    current(&info.id) && matches(&info.metadata)
                });
            // Fewer than k from the walk while more are live (a selective filter, or points the
            // walk cannot reach): scan exactly, so k results come back whenever k match.
            let enough = found.len() >= k.min(state.graph.len() - state.graph.deleted_count());
            if enough {
                for scored in found {
                    offer(&mut best, scored.distance, state.points[scored.point as usize].id);
                }
            } else {
                state.exact_graph(
                    &prepared,
                    |i| current(&i.id) && matches(&i.metadata),
                    |d, id| {
                        offer(&mut best, d, id);
                    },
                );
            }
        } else {
            state.exact_graph(
                &prepared,
                |i| current(&i.id) && matches(&i.metadata),
                |d, id| {
                    offer(&mut best, d, id);
                },
            );
        }
        let unsettled = state
            .pending
            .iter()
            .filter(|(id, _)| current(id))
            .chain(inbox.changes.iter().filter_map(|(id, p)| Some((id, p.as_ref()?))));
        for (id, pending) in unsettled {
            if matches(&pending.metadata) {
                offer(&mut best, distance(self.metric, &prepared, &pending.vector), *id);
            }
        }
        let mut hits: Vec<Hit> =
            best.into_iter().map(|(s, id)| Hit { id, distance: s.distance }).collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        hits
    }
}

/// The longest the indexer pauses for encoding writers before one point: a stream of
/// batches from many threads must not stop indexing altogether.
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// A writer encoding a batch (see [`VectorIndex::encoding`]).
pub(crate) struct Encoding<'a>(&'a AtomicUsize);

impl Drop for Encoding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lowers the calling thread's CPU priority (and that of the threads it starts) to nice 10:
/// on a busy machine the indexer then takes what writers and searchers leave. (`unsafe` only
/// because libc's bindings are; the calls take no pointers.)
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread, no memory passed.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - super::simd::dot(a, b),
        Metric::Dot => -super::simd::dot(a, b),
        Metric::L2 => super::simd::squared_l2(a, b),
    }
}

impl State {
    /// Lists `point` under each top-level scalar of its metadata.
    fn post(&mut self, point: u32, metadata: &Fields) {
        for (key, value) in metadata.iter() {
            if let Some(scalar) = Scalar::of(value) {
                self.postings
                    .entry(key.to_owned())
                    .or_default()
                    .entry(scalar)
                    .or_default()
                    .push(point);
            }
        }
    }

    /// The graph points that may match `filter`, from the postings, when the filter pins
    /// top-level fields to values (`{"a": 1}`, `$eq`, `$in`, and `$and`/`$or` of those);
    /// `None` when it does not. A superset is fine: candidates are checked against the filter.
    fn candidates(&self, filter: &Filter) -> Option<Vec<u32>> {
        let posted = |path: &[String], value: &serde_json::Value| -> Option<&[u32]> {
            let [key] = path else { return None };
            let scalar = Scalar::of(value)?;
            Some(
                self.postings
                    .get(key)
                    .and_then(|values| values.get(&scalar))
                    .map_or(&[][..], Vec::as_slice),
            )
        };
        match filter {
            Filter::Compare { path, op: crate::model::CmpOp::Eq, value } => {
                posted(path, value).map(<[u32]>::to_vec)
            }
            Filter::In { path, values, negated: false } => {
                let mut all = Vec::new();
                for value in values {
                    all.extend_from_slice(posted(path, value)?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            Filter::And(parts) => {
                parts.iter().filter_map(|part| self.candidates(part)).min_by_key(Vec::len)
            }
            Filter::Or(parts) => {
                let mut all = Vec::new();
                for part in parts {
                    all.extend(self.candidates(part)?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            _ => None,
        }
    }

    fn remove(&mut self, id: ResourceId) {
        match self.slots.remove(&id) {
            Some(Slot::Graph(point)) => self.graph.delete(point),
            Some(Slot::Pending) => {
                self.pending.remove(&id);
            }
            None => {}
        }
    }

    fn exact_graph(
        &self,
        prepared: &[f32],
        admit: impl Fn(&Point) -> bool,
        mut offer: impl FnMut(f32, ResourceId),
    ) {
        for (point, info) in self.points.iter().enumerate() {
            let point = point as u32;
            if !self.graph.is_deleted(point) && admit(info) {
                offer(self.graph.distance(prepared, point), info.id);
            }
        }
    }
}

/// The snapshot's file name inside the tenant directory.
pub(crate) const SNAPSHOT_FILE: &str = "vectors.hnsw";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PCHNSW03";
/// Format 02: as 03, with the single-chain hashes of [`format_02`].
const SNAPSHOT_MAGIC_02: &[u8; 8] = b"PCHNSW02";

/// A snapshot as read: the graph, each point's resource id and embedding hash, and whether
/// it is of format 02 (its hashes made by [`format_02::hash_vector`]).
pub(crate) struct Snapshot {
    graph: Hnsw,
    ids: Vec<ResourceId>,
    hashes: Vec<u64>,
    format_02: bool,
}

/// Reads and checks a snapshot (format 03, or 02 as earlier builds wrote it): magic,
/// checksum, a consistent graph, ids and hashes for every point, the expected dimension and
/// metric. `None` for anything else, never a panic.
fn read_snapshot(
    path: &Path,
    crypto: Option<&TenantCrypto>,
    dimension: usize,
    metric: Metric,
) -> Option<Snapshot> {
    let mut bytes = std::fs::read(path).ok()?;
    if let Some(crypto) = crypto {
        bytes = crypto.open(SNAPSHOT_FILE, b"", &bytes).ok()?;
    }
    let body_len = bytes.len().checked_sub(8)?;
    let (body, checksum) = bytes.split_at(body_len);
    let checksum = u64::from_le_bytes(checksum.try_into().ok()?);
    let format_02 = if body.starts_with(SNAPSHOT_MAGIC) {
        (checksum == hash_bytes(body)).then_some(false)?
    } else if body.starts_with(SNAPSHOT_MAGIC_02) {
        (checksum == format_02::hash_bytes(body)).then_some(true)?
    } else {
        return None;
    };
    let (graph, used) = Hnsw::decode(&body[SNAPSHOT_MAGIC.len()..])?;
    if graph.dimension() != dimension || graph.metric() != metric {
        return None;
    }
    let rest = &body[SNAPSHOT_MAGIC.len() + used..];
    let count = graph.len();
    if rest.len() != count * 24 {
        return None;
    }
    let (id_bytes, hash_bytes_) = rest.split_at(count * 16);
    let ids = id_bytes
        .chunks_exact(16)
        .map(|c| ResourceId::from_bytes(c.try_into().unwrap_or([0; 16])))
        .collect();
    let hashes = hash_bytes_
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    Some(Snapshot { graph, ids, hashes, format_02 })
}

/// A point's metadata as the index keeps it for filters: the top-level fields sorted by key in
/// one allocation. `serde_json`'s own map is a `BTreeMap` whose node alone is ~630 bytes even
/// for two small fields: on the bench's 50k points that was 1.97x the raw vectors for the whole
/// index against 1.44x for the graph.
#[derive(Debug, Default)]
pub(crate) struct Fields(Box<[(Box<str>, serde_json::Value)]>);

impl Fields {
    pub(crate) fn of(metadata: &Metadata) -> Self {
        // The map iterates in key order (byte order, as `str` compares), so the slice is sorted.
        Self(metadata.iter().map(|(key, value)| (key.as_str().into(), value.clone())).collect())
    }

    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        let found = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[found].1)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(key, value)| (&**key, value))
    }

    fn matches(&self, filter: &Filter) -> bool {
        filter.matches_fields(&|key: &str| self.get(key))
    }

    /// Heap bytes, estimated (allocator overhead not counted).
    fn heap_bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<(Box<str>, serde_json::Value)>()
            + self.iter().map(|(key, value)| key.len() + value_heap_bytes(value)).sum::<usize>()
    }
}

/// Heap bytes of a JSON map and what it holds, estimated: `serde_json`'s map is a `BTreeMap`
/// whose nodes hold up to 11 entries, so even a map of two small fields costs a whole node
/// (~630 bytes).
fn map_heap_bytes(map: &Metadata) -> usize {
    use std::mem::size_of;
    const CAPACITY: usize = 11;
    let node =
        2 * size_of::<usize>() + CAPACITY * (size_of::<String>() + size_of::<serde_json::Value>());
    map.len().div_ceil(CAPACITY) * node
        + map.iter().map(|(key, value)| key.capacity() + value_heap_bytes(value)).sum::<usize>()
}

fn value_heap_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => text.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => map_heap_bytes(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

const HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Four independent multiply-xorshift chains over consecutive 8-byte words (word `i` feeds
/// chain `i % 4`), combined at the end. One chain waits ~6 cycles on each multiply; four keep
/// the multiplier busy. The single chain of snapshot format 02 took ~0.3-0.4 us of every
/// embedding written, and again of every embedding checked against a snapshot on open.
struct Lanes([u64; 4]);

impl Lanes {
    fn new(seed: u64, len: usize) -> Self {
        Self(std::array::from_fn(|i| seed ^ (len as u64 + i as u64).wrapping_mul(HASH_K)))
    }

    #[inline(always)]
    fn step(lane: u64, word: u64) -> u64 {
        let lane = (lane ^ word).wrapping_mul(HASH_K);
        lane ^ lane >> 29
    }

    /// Four consecutive words, the first at a multiple of four.
    #[inline(always)]
    fn group(&mut self, words: [u64; 4]) {
        let [a, b, c, d] = self.0;
        let [w, x, y, z] = words;
        self.0 = [Self::step(a, w), Self::step(b, x), Self::step(c, y), Self::step(d, z)];
    }

    /// The last (at most three) words, after the groups.
    fn finish(mut self, tail: impl Iterator<Item = u64>) -> u64 {
        for (lane, word) in self.0.iter_mut().zip(tail) {
            *lane = Self::step(*lane, word);
        }
        let [mut h, rest @ ..] = self.0;
        for (i, lane) in rest.into_iter().enumerate() {
            h = (h ^ lane.rotate_left(16 * (i as u32 + 1))).wrapping_mul(HASH_K);
            h ^= h >> 29;
        }
        h ^= h >> 32;
        h.wrapping_mul(HASH_K) ^ (h >> 29)
    }
}

/// [`Lanes`] over `items`, `per_word` of them to a word (`word` makes it; the last one may
/// get fewer).
#[inline(always)]
fn hash_items<T>(seed: u64, items: &[T], per_word: usize, word: impl Fn(&[T]) -> u64) -> u64 {
    let mut lanes = Lanes::new(seed, items.len());
    let groups = items.chunks_exact(4 * per_word);
    let tail = groups.remainder();
    for group in groups {
        lanes.group(std::array::from_fn(|i| word(&group[per_word * i..per_word * (i + 1)])));
    }
    lanes.finish(tail.chunks(per_word).map(word))
}

/// A fast 64-bit hash (not cryptographic: it detects damage and change, not attacks): the
/// checksum of a snapshot. Little-endian words, the last one zero-padded.
fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_items(0xcbf2_9ce4_8422_2325, bytes, 8, |b| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    })
}

/// The hash of an embedding (of its bits, so it agrees with the stored bytes): two floats
/// to a word, the last one alone when the dimension is odd.
fn hash_vector(vector: &[f32]) -> u64 {
    hash_items(0x8422_2325_cbf2_9ce4, vector, 2, |pair| {
        let low = u64::from(pair[0].to_bits());
        let high = pair.get(1).map_or(0, |x| u64::from(x.to_bits()));
        low | high << 32
    })
}

/// The hashes of snapshot format 02, one chain each: read to open such snapshots, never
/// written.
mod format_02 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (bytes.len() as u64).wrapping_mul(K);
        let words = bytes.chunks_exact(8);
        let tail = words.remainder();
        for word in words {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            h = (h ^ w).wrapping_mul(K);
            h ^= h >> 29;
        }
        for (i, b) in tail.iter().enumerate() {
            h = (h ^ (u64::from(*b) << (8 * i))).wrapping_mul(K);
        }
        h ^= h >> 32;
        h.wrapping_mul(K) ^ (h >> 29)
    }

    pub(super) fn hash_vector(vector: &[f32]) -> u64 {
        let mut h: u64 = 0x8422_2325_cbf2_9ce4 ^ (vector.len() as u64).wrapping_mul(K);
        for pair in vector.chunks(2) {
            let low = u64::from(pair[0].to_bits());
            let high = pair.get(1).map_or(0, |x| u64::from(x.to_bits()));
            h = (h ^ (low | high << 32)).wrapping_mul(K);
            h ^= h >> 29;
        }
        h ^= h >> 32;
        h.wrapping_mul(K) ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u64) -> Vec<f32> {
        crate::dataset::Dataset::synthetic(1, 0, 16, 0, seed).row(0).to_vec()
    }

    #[test]
    fn changes_waiting_in_the_inbox_supersede_the_graph() {
        let index = VectorIndex::new(16, Metric::Cosine, HnswParams::default(), 0, None);
        let ids: Vec<ResourceId> = (0..300).map(|_| ResourceId::new()).collect();
        let upsert = |id: ResourceId, seed: u64, tag: i64| VectorChange::Upsert {
            id,
            vector: vector(seed),
            metadata: Arc::new(serde_json::json!({ "tag": tag }).as_object().unwrap().clone()),
        };
        index.apply(ids.iter().enumerate().map(|(i, id)| upsert(*id, i as u64, 0)).collect());
        index.wait_indexed();
        // Without letting the indexer run: hold its maintenance lock, so the changes stay in
        // the inbox while we search.
        let _hold = index.maintenance.lock();
        let tag_two = Arc::new(serde_json::json!({ "tag": 2 }).as_object().unwrap().clone());
        index.apply(vec![
            upsert(ids[0], 1000, 1),
            VectorChange::Remove { id: ids[1] },
            // Prepared off the commit path, as a batch does.
            index.prepare(ids[2], &vector(2), &tag_two),
        ]);
        assert!(!index.inbox.read().changes.is_empty());
        // Stats count the inbox as a drain would apply it: three graph points superseded,
        // two of them pending again.
        assert_eq!(index.stats(), (300, 2, 3));
        // ids[0] moved: its old vector no longer finds it, its new one does.
        assert!(index.search(&vector(0), 5, None, None).iter().all(|h| h.id != ids[0]));
        assert_eq!(index.search(&vector(1000), 1, None, None)[0].id, ids[0]);
        // ids[1] is gone, under every search path.
        let filter = Filter::parse(&serde_json::json!({ "tag": 0 })).unwrap();
        for filter in [None, Some(&filter)] {
            assert!(index.search(&vector(1), 300, None, filter).iter().all(|h| h.id != ids[1]));
        }
        // ids[2] kept its vector but changed its metadata: filters see the new metadata.
        let two = Filter::parse(&serde_json::json!({ "tag": 2 })).unwrap();
        let hits = index.search(&vector(2), 10, None, Some(&two));
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![ids[2]]);
        let zero = index.search(&vector(2), 300, None, Some(&filter));
        assert!(zero.iter().all(|h| h.id != ids[2] && h.id != ids[0]));
        assert_eq!(zero.len(), 297);
        index.drain(&mut index.state.write());
        assert!(index.inbox.read().changes.is_empty());
        assert_eq!(index.stats(), (300, 2, 3));
    }

    #[test]
    fn compaction_keeps_every_live_point_findable() {
        let index = VectorIndex::new(16, Metric::Cosine, HnswParams::default(), 0, None);
        let ids: Vec<ResourceId> = (0..2000).map(|_| ResourceId::new()).collect();
        index.apply(
            ids.iter()
                .enumerate()
                .map(|(i, id)| VectorChange::Upsert {
                    id: *id,
                    vector: vector(i as u64),
                    metadata: Arc::default(),
                })
                .collect(),
        );
        index.wait_indexed();
        index.apply(ids.iter().step_by(2).map(|id| VectorChange::Remove { id: *id }).collect());
        index.wait_indexed();
        let (graph, pending, tombstones) = index.stats();
        assert_eq!((graph, pending, tombstones), (1000, 0, 0));
        for (i, id) in ids.iter().enumerate().skip(1).step_by(2).take(50) {
            let hits = index.search(&vector(i as u64), 1, None, None);
            assert_eq!(hits.first().map(|h| h.id), Some(*id), "point {i}");
        }
    }

    /// The hashes are stored in snapshots: a change to them must come with a new format.
    #[test]
    fn hashes_are_pinned() {
        let v: Vec<f32> = (0..7).map(|i| i as f32 * 0.5 - 1.0).collect();
        assert_eq!(hash_vector(&v), PINNED_VECTOR_HASH);
        assert_eq!(hash_bytes(b"percolate snapshot"), PINNED_BYTES_HASH);
        // Every word counts, in place, whichever lane it lands in.
        let mut swapped = v.clone();
        swapped.swap(0, 2);
        assert_ne!(hash_vector(&swapped), hash_vector(&v));
        assert_ne!(hash_vector(&v[..6]), hash_vector(&v));
        assert_ne!(hash_bytes(b"percolate snapshoT"), PINNED_BYTES_HASH);
    }

    const PINNED_VECTOR_HASH: u64 = 5_563_758_725_442_807_478;
    const PINNED_BYTES_HASH: u64 = 3_547_941_887_860_245_957;

    /// The indexer writes a snapshot by itself once enough of the graph changed, and only
    /// then; a tenant being deleted gets none.
    #[test]
    fn the_indexer_snapshots_a_graph_that_changed_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        let discarded = Arc::new(AtomicBool::new(false));
        let persist = Persist {
            dir: dir.path().to_path_buf(),
            crypto: None,
            discarded: Arc::clone(&discarded),
        };
        let index =
            VectorIndex::open(persist, None, 16, Metric::Cosine, HnswParams::default(), 0, vec![]);
        let upserts = |range: std::ops::Range<u64>| -> Vec<VectorChange> {
            range
                .map(|i| VectorChange::Upsert {
                    id: ResourceId::new(),
                    vector: vector(i),
                    metadata: Arc::default(),
                })
                .collect()
        };
        index.apply(upserts(0..SNAPSHOT_MIN_CHANGES as u64 - 1));
        index.wait_indexed();
        index.snapshot_if_due(true);
        assert!(!path.exists(), "too few changes for a snapshot");
        index.apply(upserts(SNAPSHOT_MIN_CHANGES as u64..SNAPSHOT_MIN_CHANGES as u64 + 2));
        index.wait_indexed();
        // The background indexer may have written it already (or be writing it: the lock
        // waits for that); if not, this call does.
        index.snapshot_if_due(true);
        drop(index.snapshot_lock.lock());
        assert!(path.exists(), "a snapshot once enough changed");
        assert_eq!(index.changed.load(Ordering::Relaxed), 0);
        std::fs::remove_file(&path).unwrap();
        discarded.store(true, Ordering::Release);
        index.apply(upserts(100_000..100_000 + SNAPSHOT_MIN_CHANGES as u64));
        index.wait_indexed();
        index.snapshot_if_due(true);
        drop(index.snapshot_lock.lock());
        assert!(!path.exists(), "no snapshot for a tenant being deleted");
    }

    /// A snapshot written by an earlier build (format 02) opens as it is: its points are
    /// checked with that format's hash, nothing is re-inserted, and the next snapshot is
    /// written in the current format.
    #[test]
    fn snapshots_of_format_02_open_without_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::new(16, Metric::Cosine, HnswParams::default(), 0, None);
        let stored: Vec<(ResourceId, Vec<f32>, Arc<Metadata>)> =
            (0..500).map(|i| (ResourceId::new(), vector(i), Arc::default())).collect();
        index.apply(
            stored
                .iter()
                .map(|(id, vector, metadata)| VectorChange::Upsert {
                    id: *id,
                    vector: vector.clone(),
                    metadata: Arc::clone(metadata),
                })
                .collect(),
        );
        index.wait_indexed();
        index.write_snapshot(dir.path(), None).unwrap();
        drop(index);
        // Rewrite it as format 02: magic, point hashes and checksum.
        let path = dir.path().join(SNAPSHOT_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let mut body = bytes[..bytes.len() - 8].to_vec();
        body[..8].copy_from_slice(SNAPSHOT_MAGIC_02);
        let (_, used) = Hnsw::decode(&body[8..]).unwrap();
        let hashes_at = 8 + used + 16 * stored.len();
        let by_id: HashMap<ResourceId, &Vec<f32>> =
            stored.iter().map(|(id, vector, _)| (*id, vector)).collect();
        for point in 0..stored.len() {
            let id_at = 8 + used + 16 * point;
            let id = ResourceId::from_bytes(body[id_at..id_at + 16].try_into().unwrap());
            let old = format_02::hash_vector(by_id[&id]);
            body[hashes_at + 8 * point..hashes_at + 8 * point + 8]
                .copy_from_slice(&old.to_le_bytes());
        }
        let checksum = format_02::hash_bytes(&body);
        body.extend_from_slice(&checksum.to_le_bytes());
        std::fs::write(&path, &body).unwrap();

        let open = |stored: &[(ResourceId, Vec<f32>, Arc<Metadata>)]| {
            let persist =
                Persist { dir: dir.path().to_path_buf(), crypto: None, discarded: Arc::default() };
            let snapshot = VectorIndex::read_snapshot(&persist, 16, Metric::Cosine);
            VectorIndex::open(
                persist,
                snapshot,
                16,
                Metric::Cosine,
                HnswParams::default(),
                0,
                stored.to_vec(),
            )
        };
        let reopened = open(&stored);
        // Every point came from the snapshot: none pending, none tombstoned.
        assert_eq!(reopened.stats(), (500, 0, 0));
        assert_eq!(reopened.restored(), 500);
        assert!(reopened.dirty.load(Ordering::Acquire), "an 02 snapshot is rewritten");
        assert_eq!(reopened.search(&vector(7), 1, None, None)[0].id, stored[7].0);
        reopened.write_snapshot(dir.path(), None).unwrap();
        drop(reopened);
        assert!(std::fs::read(&path).unwrap().starts_with(SNAPSHOT_MAGIC));
        assert_eq!(open(&stored).stats(), (500, 0, 0));
        // A changed embedding is still caught through the old hashes.
        let mut changed = stored.clone();
        changed[3].1 = vector(9999);
        std::fs::write(&path, &body).unwrap();
        let (graph, pending, tombstones) = open(&changed).stats();
        assert_eq!((graph, pending, tombstones), (500, 1, 1));
    }

    /// The index's compact metadata answers every filter as the metadata itself does.
    #[test]
    fn fields_match_filters_as_the_metadata_does() {
        let maps = [
            serde_json::json!({}),
            serde_json::json!({"a": 1, "b": "x", "c": {"d": [1, 2]}, "z": null}),
            serde_json::json!({"b": "y", "a": 2.0, "aa": true, "": 0}),
        ];
        let filters = [
            serde_json::json!({"a": 1}),
            serde_json::json!({"a": {"$gte": 1.5}}),
            serde_json::json!({"b": {"$in": ["x", "q"]}}),
            serde_json::json!({"c.d": {"$exists": true}}),
            serde_json::json!({"z": {"$exists": false}}),
            serde_json::json!({"$or": [{"aa": true}, {"b": {"$ne": "x"}}]}),
            serde_json::json!({"$not": {"missing": 1}}),
        ];
        for map in &maps {
            let metadata = map.as_object().unwrap();
            let fields = Fields::of(metadata);
            assert_eq!(fields.iter().count(), metadata.len());
            for (key, value) in metadata {
                assert_eq!(fields.get(key), Some(value), "{key}");
            }
            assert_eq!(fields.get("absent"), None);
            for filter in &filters {
                let filter = Filter::parse(filter).unwrap();
                assert_eq!(fields.matches(&filter), filter.matches(metadata), "{map} {filter:?}");
            }
        }
    }
}
