//! Vector search for the RocksDB provider: an in-memory HNSW index per tenant ([`super::hnsw`]),
//! derived from the `embeddings` column family and kept in step with every commit.
//!
//! Design decisions:
//! - **Read-your-writes without waiting for the graph.** A commit that writes embeddings hands
//!   them to the index before the call returns, as *pending* points: searched exactly and merged
//!   with the graph's results. A background thread moves pending points into the graph one at
//!   a time (each insert holds the write lock for well under a millisecond), so ingest never
//!   waits for graph insertion and a resource is searchable the moment its write returns.
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
//! - **Derived state.** On open the index is rebuilt from the store (loaded as pending points
//!   and indexed in the background); it is never the only copy of anything. Persisting graph
//!   snapshots so that a reopen need not rebuild is not done yet.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use super::hnsw::{Hnsw, HnswParams, Scored};
use crate::model::{Filter, Metadata, Metric, ResourceId};

/// A change to the searchable set, produced by a write and applied after its commit.
#[derive(Clone, Debug)]
pub(crate) enum VectorChange {
    /// The resource now has this embedding and metadata.
    Upsert { id: ResourceId, vector: Vec<f32>, metadata: Arc<Metadata> },
    /// The resource has no embedding any more (deleted, or its embedding removed).
    Remove { id: ResourceId },
}

/// Where a live resource's vector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Graph(u32),
    Pending,
}

struct Pending {
    /// Prepared as the graph would store it.
    vector: Vec<f32>,
    metadata: Arc<Metadata>,
}

struct State {
    graph: Hnsw,
    /// Point id → resource id and metadata.
    points: Vec<(ResourceId, Arc<Metadata>)>,
    /// Every live resource with an embedding.
    slots: HashMap<ResourceId, Slot>,
    pending: HashMap<ResourceId, Pending>,
}

/// A hit: resource and distance under the tenant's metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hit {
    pub(crate) id: ResourceId,
    pub(crate) distance: f32,
}

/// The vector index of one tenant.
pub(crate) struct VectorIndex {
    state: RwLock<State>,
    metric: Metric,
    params: HnswParams,
    exact_below: usize,
    /// Held across a RocksDB commit that changes embeddings and the index update after it.
    pub(crate) commit_lock: Mutex<()>,
    indexing: AtomicBool,
}

impl VectorIndex {
    pub(crate) fn new(
        dimension: usize,
        metric: Metric,
        params: HnswParams,
        exact_below: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(State {
                graph: Hnsw::new(dimension, metric, params),
                points: Vec::new(),
                slots: HashMap::new(),
                pending: HashMap::new(),
            }),
            metric,
            params,
            exact_below,
            commit_lock: Mutex::new(()),
            indexing: AtomicBool::new(false),
        })
    }

    /// Applies committed changes, then makes sure a background indexer drains them.
    pub(crate) fn apply(self: &Arc<Self>, changes: Vec<VectorChange>) {
        if changes.is_empty() {
            return;
        }
        {
            let mut state = self.state.write();
            for change in changes {
                match change {
                    VectorChange::Upsert { id, vector, metadata } => {
                        state.remove(id);
                        // Stored as the graph stores it (unit length under cosine), so the
                        // exact scan and the graph give the same distances.
                        let vector = state.graph.prepare(&vector);
                        state.pending.insert(id, Pending { vector, metadata });
                        state.slots.insert(id, Slot::Pending);
                    }
                    VectorChange::Remove { id } => state.remove(id),
                }
            }
        }
        self.spawn_indexer();
    }

    fn spawn_indexer(self: &Arc<Self>) {
        if self.indexing.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("percolate-hnsw".into()).spawn(move || {
            loop {
                // The index may be dropped (tenant closed) while we work: then stop.
                let Some(index) = index.upgrade() else { return };
                if !index.index_one() {
                    index.indexing.store(false, Ordering::Release);
                    // A change may have arrived between the last check and the flag reset.
                    if index.state.read().pending.is_empty()
                        || index.indexing.swap(true, Ordering::AcqRel)
                    {
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

    /// Moves one pending point into the graph; false when nothing is pending.
    fn index_one(&self) -> bool {
        let mut state = self.state.write();
        let Some(id) = state.pending.keys().next().copied() else { return false };
        let Some(pending) = state.pending.remove(&id) else { return false };
        let point = state.graph.insert(&pending.vector);
        state.points.push((id, pending.metadata));
        state.slots.insert(id, Slot::Graph(point));
        true
    }

    /// Waits until every pending point is in the graph (tests and benches).
    pub(crate) fn wait_indexed(self: &Arc<Self>) {
        while self.index_one() {}
    }

    /// Points in the graph, pending points, tombstones.
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let state = self.state.read();
        (state.graph.len(), state.pending.len(), state.graph.deleted_count())
    }

    /// Bytes held by the graph (vectors and links).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.state.read().graph.memory_bytes()
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
        let matches = |metadata: &Metadata| filter.is_none_or(|f| f.matches(metadata));
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
        if !exact_graph {
            let found =
                state.graph.search(&prepared, k, ef.unwrap_or(self.params.ef_search), |p| {
                    matches(&state.points[p as usize].1)
                });
            let enough = found.len() >= k.min(state.graph.len() - state.graph.deleted_count());
            if enough || filter.is_none() {
                for scored in found {
                    offer(&mut best, scored.distance, state.points[scored.point as usize].0);
                }
            } else {
                // Too selective for the walk: scan every live graph point exactly.
                state.exact_graph(&prepared, matches, |d, id| offer(&mut best, d, id));
            }
        } else {
            state.exact_graph(&prepared, matches, |d, id| offer(&mut best, d, id));
        }
        for (id, pending) in &state.pending {
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

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - super::simd::dot(a, b),
        Metric::Dot => -super::simd::dot(a, b),
        Metric::L2 => super::simd::squared_l2(a, b),
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
        prepared: &[f32],
        matches: impl Fn(&Metadata) -> bool,
        mut offer: impl FnMut(f32, ResourceId),
    ) {
        for (point, (id, metadata)) in self.points.iter().enumerate() {
            let point = point as u32;
            if !self.graph.is_deleted(point) && matches(metadata) {
                offer(self.graph.distance(prepared, point), *id);
            }
        }
    }
}
