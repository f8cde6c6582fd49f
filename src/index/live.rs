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
//!   graph's: the indexer holds the graph's lock while it links points, which takes longer
//!   than the write itself. The indexer moves the inbox into its own state (`pending`) under both
//!   locks, so a search (which takes both, in the same order) sees every change exactly once.
//! - **Commit order is index order.** Commits that change embeddings apply their changes to the
//!   index under one per-tenant lock held across the RocksDB commit, so two racing updates of a
//!   resource cannot leave the index with the loser's vector.
//! - **Deletes and updates are tombstones.** A removed or re-embedded resource's old point stays
//!   in the graph as a waypoint and never enters a result.
//! - **Filters apply inside the walk.** A filtered search walks the graph scoring only the
//!   points the filter admits, reaching them through rejected points two hops at a time
//!   ([`super::hnsw`]'s filtered walk), so its cost follows the admitted points it scores,
//!   not the rejected ones it passes. Each point's verdict is decided once per search: from
//!   the postings when the filter is equalities they answer exactly (metadata is then never
//!   read), else by matching the metadata cached beside the points. An equality filter with
//!   few candidates (at most 5% of the tenant) skips the walk and scores them all. When the
//!   walk finds fewer than `k` matches — a filter matching fewer than `k`, or points the walk
//!   cannot reach — the search scores exactly every candidate (or every live point, with no
//!   postings), so `k` results come back whenever `k` resources match.
//! - **Small tenants are searched exactly**: below `exact_below` live points an exact scan is
//!   as fast as the graph and has recall 1.
//! - **Compact vectors, exact answers.** Under [`VectorPrecision::F16`] or
//!   [`VectorPrecision::Int8`] the graph's vectors are approximate ([`super::quant`]): every
//!   search path (walk, planned filter, exact scan) keeps the best `k ·` [`RERANK_FACTOR`]
//!   graph candidates by their approximate distance (the walk's beam is still `ef`), then
//!   re-scores them with the full embeddings its caller reads from the store
//!   ([`FullVectors`]), outside the index's locks, and returns the best `k` by exact
//!   distance. Pending points are held in f32 and scored exactly from the start.
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

use super::fields::{Fields, Postings};
use super::hnsw::{Hnsw, HnswParams, InsertPlan, Scored, prepare_in_place, prepared_copy};
use super::quant::{Query, VectorPrecision, metric_distance};
use super::snapshot::{
    SNAPSHOT_FILE, SNAPSHOT_MAGIC, Snapshot, hash_bytes, hash_vector, read_snapshot,
};
use crate::crypto::TenantCrypto;
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
    /// Graph points by top-level scalar metadata value (see [`Postings`]).
    postings: Postings,
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

/// Reads the full-precision embeddings an index over compact vectors re-scores its candidates
/// with: the index's caller supplies them from its store. Kept to one call per search so a
/// store can read them in one batched lookup.
pub(crate) trait FullVectors {
    /// The stored embedding of each of `ids`, in order; `None` for one that is gone or cannot
    /// be read (its candidate keeps its approximate distance; the caller's read of the hits
    /// then reports or drops it).
    fn full_vectors(&self, ids: &[ResourceId]) -> Vec<Option<Vec<f32>>>;
}

impl<F: Fn(&[ResourceId]) -> Vec<Option<Vec<f32>>>> FullVectors for F {
    fn full_vectors(&self, ids: &[ResourceId]) -> Vec<Option<Vec<f32>>> {
        self(ids)
    }
}

/// Over compact vectors, a search re-scores this many candidates per result wanted: on real
/// 384-d embeddings int8 and f16 then reach the f32 graph's recall (docs/benchmarks.md), and
/// re-scoring more buys nothing measurable while each candidate is one more embedding read
/// from the store.
pub(crate) const RERANK_FACTOR: usize = 3;

/// Where an index writes its snapshots (see [`VectorIndex::snapshot_if_due`]).
pub(crate) struct Persist {
    /// The tenant directory.
    pub(crate) dir: PathBuf,
    /// The tenant's sealing keys, shared with the tenant (one session, one nonce counter).
    pub(crate) crypto: Option<Arc<TenantCrypto>>,
    /// Set when the tenant is being deleted: no snapshot is worth writing then.
    pub(crate) discarded: Arc<AtomicBool>,
    /// Whether the indexer thread lowers its own priority (the embedding app's choice).
    pub(crate) lower_priority: bool,
    /// A reader's index: it reads the snapshot and never writes one (the writer owns it).
    pub(crate) read_only: bool,
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
        precision: VectorPrecision,
        exact_below: usize,
        persist: Option<Persist>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(State {
                graph: Hnsw::with_precision(dimension, metric, params, precision),
                points: Vec::new(),
                slots: HashMap::new(),
                pending: HashMap::new(),
                postings: Postings::default(),
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
    /// for this dimension, metric and precision (damaged, foreign, of another dimension). The
    /// [`VectorIndex::open`] of a tenant reads it on one core while it reads the stored
    /// embeddings on another.
    pub(crate) fn read_snapshot(
        persist: &Persist,
        dimension: usize,
        metric: Metric,
        precision: VectorPrecision,
    ) -> Option<Snapshot> {
        read_snapshot(
            &persist.dir.join(SNAPSHOT_FILE),
            persist.crypto.as_deref(),
            dimension,
            metric,
            precision,
        )
    }

    /// Opens the index of a tenant whose stored embeddings are `stored`: from `snapshot` (see
    /// [`VectorIndex::read_snapshot`]) when there is one, checked point by point
    /// against the store (a point whose embedding changed or vanished is tombstoned; an
    /// embedding the snapshot lacks becomes pending), else rebuilt from scratch in the
    /// background. The snapshot is only ever a cache: whatever it says, the index ends up
    /// holding exactly the stored embeddings.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        persist: Persist,
        snapshot: Option<Snapshot>,
        dimension: usize,
        metric: Metric,
        params: HnswParams,
        precision: VectorPrecision,
        exact_below: usize,
        stored: Vec<Stored>,
    ) -> Arc<Self> {
        let index = Self::new(dimension, metric, params, precision, exact_below, Some(persist));
        let mut changes = Vec::new();
        match snapshot {
            Some(Snapshot { graph, ids, hashes }) => {
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
                for (id, vector, metadata) in stored {
                    match by_id.remove(&id) {
                        Some(point)
                            if state.points[point as usize].hash == hash_vector(&vector) =>
                        {
                            let fields = Fields::of(&metadata);
                            state.postings.post(point, &fields);
                            state.points[point as usize].metadata = Arc::new(fields);
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
                index.dirty.store(vanished || !changes.is_empty(), Ordering::Release);
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

    /// Brings the index to exactly `stored` (every stored embedding, as [`Self::open`] takes
    /// them) by the changes that differ from what it holds: an embedding or metadata that is
    /// new or changed is upserted, a resource absent from `stored` is removed. Used by a reader,
    /// which sees another process's commits only through the store.
    pub(crate) fn reconcile(self: &Arc<Self>, stored: Vec<Stored>) {
        let mut changes = Vec::new();
        {
            let state = self.state.read();
            let inbox = self.inbox.read();
            let held = |id: &ResourceId| -> Option<(u64, Arc<Fields>)> {
                if let Some(change) = inbox.changes.get(id) {
                    return change.as_ref().map(|p| (p.hash, Arc::clone(&p.metadata)));
                }
                match state.slots.get(id)? {
                    Slot::Graph(point) => {
                        state.points.get(*point as usize).map(|p| (p.hash, Arc::clone(&p.metadata)))
                    }
                    Slot::Pending => {
                        state.pending.get(id).map(|p| (p.hash, Arc::clone(&p.metadata)))
                    }
                }
            };
            let mut live: std::collections::HashSet<ResourceId> =
                state.slots.keys().copied().collect();
            for (id, change) in &inbox.changes {
                match change {
                    Some(_) => live.insert(*id),
                    None => live.remove(id),
                };
            }
            for (id, vector, metadata) in stored {
                live.remove(&id);
                let same = held(&id).is_some_and(|(hash, fields)| {
                    hash == hash_vector(&vector) && *fields == Fields::of(&metadata)
                });
                if !same {
                    changes.push(VectorChange::Upsert { id, vector, metadata });
                }
            }
            changes.extend(live.into_iter().map(|id| VectorChange::Remove { id }));
        }
        self.apply(changes);
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
        let nice = self.persist.as_ref().is_some_and(|persist| persist.lower_priority);
        let spawned = std::thread::Builder::new().name("percolate-hnsw".into()).spawn(move || {
            if nice {
                lower_priority();
            }
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
            let cores = crate::host::cores().clamp(1, 4);
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
                state.postings.post(point, &pending.metadata);
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
        let (mut live, mut fresh) = {
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
                    vector: state.graph.vector(p as u32).into_owned(),
                    id: info.id,
                    metadata: Arc::clone(&info.metadata),
                    hash: info.hash,
                })
                .collect();
            (live, state.graph.empty_like())
        };
        for point in &mut live {
            fresh.insert_prepared(std::mem::take(&mut point.vector));
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
                state.postings.post(new, &point.metadata);
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
        points + slots + pending + state.postings.heap_bytes()
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

impl State {
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
        prepared: &Query<'_>,
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

mod persist;
mod search;
#[cfg(test)]
mod tests;
