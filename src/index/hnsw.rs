//! An in-memory HNSW graph (Malkov & Yashunin), built for this engine.
//!
//! Why not `hnsw_rs`: the measurements on 100k real 384-d embeddings put `hnsw_rs`
//! 0.3.5 at p50 ≈ 0.59 ms for recall@10 ≥ 0.95 against hnswlib's ≈ 0.20 ms, and switching its
//! metric gained only ~15%: the cost is its layout (a vector per point behind `Arc`s, neighbour
//! lists as vectors of structs, a fresh visited set per query), not the distance function.
//! It also cannot delete. This graph is laid out for the cache and for deletes:
//! - every vector in one arena of chunked rows, normalised at insert under the cosine metric,
//!   so cosine distance is `1 - dot`; in f32, f16 or int8 ([`super::quant`]);
//! - level-0 neighbours in one flat `u32` array (`1 + m0` slots per point: count, then ids);
//!   the few upper-level lists per point in a small side vector;
//! - a reusable, generation-stamped visited set per search thread (no clearing, no allocation);
//! - tombstones designed in: a deleted point stays in the graph as a waypoint (so the graph
//!   stays connected) but never enters a result; the owner rebuilds when they pile up;
//! - SIMD distances (`simd`).
//!
//! Neighbour selection uses the paper's heuristic (keep a candidate only if it is nearer to the
//! new point than to every neighbour already kept), which keeps the graph navigable on
//! clustered data. Search takes an `accept` predicate: rejected points are walked through but
//! never returned, so filters apply inside the walk rather than after the top-k cut; a filter
//! that rejects many points takes the filtered walk ([`filtered`]), which scores only the
//! admitted ones.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use std::borrow::Cow;

use super::distance;
use super::quant::{Query, VectorPrecision, Vectors};
use super::rows::Rows;
use crate::model::Metric;

/// HNSW parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Neighbours per point on upper levels (twice this on level 0).
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Default beam width while searching (raised to `k` when smaller).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 128, ef_search: 64 }
    }
}

/// `vector` as the graph stores it under `metric`: unit length under cosine, unchanged
/// otherwise.
pub(crate) fn prepare_in_place(metric: Metric, mut vector: Vec<f32>) -> Vec<f32> {
    if metric == Metric::Cosine {
        let norm = distance::dot(&vector, &vector).sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
    }
    vector
}

/// A copy of `vector` as the graph stores it under `metric` (what [`prepare_in_place`] makes
/// of a copy, to the bit), written in one pass instead of a copy and a pass over it.
pub(crate) fn prepared_copy(metric: Metric, vector: &[f32]) -> Vec<f32> {
    if metric == Metric::Cosine {
        let norm = distance::dot(vector, vector).sqrt();
        if norm > 0.0 {
            return vector.iter().map(|x| x / norm).collect();
        }
    }
    vector.to_vec()
}

/// An insert planned against the graph (see [`Hnsw::plan`]).
pub(crate) struct InsertPlan {
    vector: Vec<f32>,
    level: usize,
    /// Candidates found on each level the point joins (index = level), nearest first.
    layers: Vec<Vec<Scored>>,
}

/// A point id and its distance to the query, ordered by distance then id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) point: u32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.point.cmp(&other.point))
    }
}

struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    fn reset(&mut self, points: usize) {
        if self.marks.len() < points {
            self.marks.resize(points, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Whether `point` is marked in this generation.
    #[inline]
    fn contains(&self, point: u32) -> bool {
        self.marks[point as usize] == self.generation
    }

    /// Marks `point`; true if it was not marked in this generation.
    #[inline]
    fn insert(&mut self, point: u32) -> bool {
        let slot = &mut self.marks[point as usize];
        if *slot == self.generation {
            false
        } else {
            *slot = self.generation;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0 }) };
}

/// The graph.
pub(crate) struct Hnsw {
    dimension: usize,
    metric: Metric,
    params: HnswParams,
    m0: usize,
    level_factor: f64,
    vectors: Vectors,
    links0: Rows<u32>,
    upper: Vec<Vec<u32>>,
    levels: Vec<u8>,
    deleted: Vec<bool>,
    deleted_count: usize,
    entry: Option<u32>,
    max_level: usize,
    rng: u64,
}

impl Hnsw {
    /// An empty graph keeping its vectors in f32.
    pub(crate) fn new(dimension: usize, metric: Metric, params: HnswParams) -> Self {
        Self::with_precision(dimension, metric, params, VectorPrecision::F32)
    }

    /// An empty graph keeping its vectors in `precision`.
    pub(crate) fn with_precision(
        dimension: usize,
        metric: Metric,
        params: HnswParams,
        precision: VectorPrecision,
    ) -> Self {
        let m = params.m.max(2);
        Self {
            dimension,
            metric,
            params: HnswParams { m, ..params },
            m0: 2 * m,
            level_factor: 1.0 / (m as f64).ln(),
            vectors: Vectors::new(dimension, precision),
            links0: Rows::new(2 * m + 1),
            upper: Vec::new(),
            levels: Vec::new(),
            deleted: Vec::new(),
            deleted_count: 0,
            entry: None,
            max_level: 0,
            rng: 0x2545_F491_4F6C_DD1D,
        }
    }

    pub(crate) fn dimension(&self) -> usize {
        self.dimension
    }

    pub(crate) fn metric(&self) -> Metric {
        self.metric
    }

    pub(crate) fn precision(&self) -> VectorPrecision {
        self.vectors.precision()
    }

    /// Whether distances to graph points are approximate (the vectors are f16 or int8), so
    /// the caller re-scores candidates with full vectors.
    pub(crate) fn is_compact(&self) -> bool {
        self.vectors.is_compact()
    }

    /// An empty graph with this one's settings, precision and quantizer.
    pub(crate) fn empty_like(&self) -> Self {
        let mut graph = Self::new(self.dimension, self.metric, self.params);
        graph.vectors = self.vectors.empty_like();
        graph
    }

    /// Points in the graph, deleted ones included.
    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    /// Deleted points still in the graph.
    pub(crate) fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    pub(crate) fn is_deleted(&self, point: u32) -> bool {
        self.deleted.get(point as usize).copied().unwrap_or(true)
    }

    /// Bytes held, for memory accounting.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.vectors.capacity_bytes()
            + self.links0.capacity_bytes()
            + self.upper.iter().map(|u| u.capacity() * 4 + 24).sum::<usize>()
            + self.levels.capacity()
            + self.deleted.capacity()
    }

    /// The query as the graph scores it: prepared as stored (unit length under the cosine
    /// metric), with what the vectors' precision needs.
    pub(crate) fn prepare(&self, vector: &[f32]) -> Query<'static> {
        self.vectors.query(Cow::Owned(prepared_copy(self.metric, vector)))
    }

    /// A point's vector as stored (unit length under cosine), decoded to f32.
    pub(crate) fn vector(&self, point: u32) -> Cow<'_, [f32]> {
        self.vectors.decoded(point as usize)
    }

    /// Distance between a prepared query and a point (approximate when the vectors are
    /// compact).
    #[inline]
    pub(crate) fn distance(&self, query: &Query<'_>, point: u32) -> f32 {
        self.vectors.distance(self.metric, query, point as usize)
    }

    #[inline]
    fn neighbours(&self, point: u32, level: usize) -> &[u32] {
        if level == 0 {
            let list = self.links0.row(point as usize);
            &list[1..1 + list[0] as usize]
        } else {
            let m = self.params.m;
            let list = &self.upper[point as usize];
            let start = (level - 1) * (m + 1);
            let count = list[start] as usize;
            &list[start + 1..start + 1 + count]
        }
    }

    fn set_neighbours(&mut self, point: u32, level: usize, neighbours: &[u32]) {
        let (list, start, capacity) = if level == 0 {
            (self.links0.row_mut(point as usize), 0, self.m0)
        } else {
            let m = self.params.m;
            (&mut self.upper[point as usize][..], (level - 1) * (m + 1), m)
        };
        let count = neighbours.len().min(capacity);
        list[start] = count as u32;
        list[start + 1..start + 1 + count].copy_from_slice(&neighbours[..count]);
    }

    fn random_level(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = ((self.rng >> 11) as f64 / (1u64 << 53) as f64).max(f64::MIN_POSITIVE);
        ((-unit.ln() * self.level_factor) as usize).min(31)
    }

    /// Greedy descent on one upper level.
    fn greedy(&self, query: &Query<'_>, mut current: Scored, level: usize) -> Scored {
        loop {
            let mut improved = false;
            for &n in self.neighbours(current.point, level) {
                let d = self.distance(query, n);
                if d < current.distance {
                    current = Scored { distance: d, point: n };
                    improved = true;
                }
            }
            if !improved {
                return current;
            }
        }
    }

    /// Beam search on one level from `entries`; returns up to `ef` accepted points, nearest
    /// first. Rejected points are expanded but never returned.
    fn search_level(
        &self,
        query: &Query<'_>,
        entries: &[Scored],
        ef: usize,
        level: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.reset(self.len());
            let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            for &entry in entries {
                if visited.insert(entry.point) {
                    candidates.push(Reverse(entry));
                    if accept(entry.point) {
                        results.push(entry);
                    }
                }
            }
            while results.len() > ef {
                results.pop();
            }
            while let Some(Reverse(candidate)) = candidates.pop() {
                if results.len() >= ef
                    && results.peek().is_some_and(|worst| candidate.distance > worst.distance)
                {
                    break;
                }
                // The neighbours not seen yet; start loading each one's vector before scoring
                // the first: each is a cache miss, and overlapping them is what hnswlib's
                // prefetching buys too. (Prefetching the seen ones as well, most of a
                // neighbourhood late in a walk, spent memory bandwidth on vectors never read.)
                let fresh: smallvec::SmallVec<[u32; 64]> = self
                    .neighbours(candidate.point, level)
                    .iter()
                    .copied()
                    .filter(|&n| visited.insert(n))
                    .collect();
                for &n in &fresh {
                    self.vectors.prefetch(n as usize);
                }
                for &n in &fresh {
                    let distance = self.distance(query, n);
                    let bound = results.peek().map_or(f32::INFINITY, |w| w.distance);
                    if results.len() < ef || distance < bound {
                        let scored = Scored { distance, point: n };
                        if level == 0 {
                            // Its links are read if it is expanded, from another array than
                            // its vector (hnswlib keeps both in one block per point): start
                            // loading them now rather than miss when it is.
                            distance::prefetch(self.links0.row(n as usize));
                        }
                        candidates.push(Reverse(scored));
                        if accept(n) {
                            results.push(scored);
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            results.into_sorted_vec()
        })
    }

    /// The paper's neighbour-selection heuristic over `candidates` (nearest first).
    fn select(&self, candidates: &[Scored], limit: usize) -> Vec<u32> {
        let mut kept: Vec<Scored> = Vec::with_capacity(limit);
        for &candidate in candidates {
            if kept.len() >= limit {
                break;
            }
            let candidate_query = self.vectors.point_query(candidate.point as usize);
            let diverse =
                kept.iter().all(|k| candidate.distance < self.distance(&candidate_query, k.point));
            if diverse {
                kept.push(candidate);
            }
        }
        kept.into_iter().map(|s| s.point).collect()
    }

    /// Adds a point; returns its id (ids are dense, in insertion order).
    pub(crate) fn insert(&mut self, vector: &[f32]) -> u32 {
        let level = self.random_level();
        let plan = self.plan(vector, level);
        self.commit(plan)
    }

    /// [`Hnsw::insert`] of a vector already prepared as the graph stores it.
    pub(crate) fn insert_prepared(&mut self, vector: Vec<f32>) -> u32 {
        let level = self.random_level();
        let plan = self.plan_prepared(vector, level);
        self.commit(plan)
    }

    /// A level for a new point, from the graph's own generator.
    pub(crate) fn draw_level(&mut self) -> usize {
        self.random_level()
    }

    /// The read-only half of an insert: finds the new point's neighbour candidates on every
    /// level it will join. Plans for many points can be made in parallel (they only read the
    /// graph); [`Hnsw::commit`] then links them one by one. Points planned together do not see
    /// each other as candidates, which costs nothing measurable when a batch is small next to
    /// the graph: later inserts link to them.
    pub(crate) fn plan(&self, vector: &[f32], level: usize) -> InsertPlan {
        self.plan_prepared(prepared_copy(self.metric, vector), level)
    }

    /// [`Hnsw::plan`] for a vector already prepared as the graph stores it (a point copied
    /// from another graph of the same metric).
    pub(crate) fn plan_prepared(&self, vector: Vec<f32>, level: usize) -> InsertPlan {
        let prepared = self.vectors.query(Cow::Owned(vector));
        let mut layers = Vec::new();
        if let Some(entry) = self.entry {
            let mut current = Scored { distance: self.distance(&prepared, entry), point: entry };
            for l in (level + 1..=self.max_level).rev() {
                current = self.greedy(&prepared, current, l);
            }
            let top = level.min(self.max_level);
            layers = vec![Vec::new(); top + 1];
            let mut entries = vec![current];
            for l in (0..=top).rev() {
                let found =
                    self.search_level(&prepared, &entries, self.params.ef_construction, l, |_| {
                        true
                    });
                layers[l] = found.clone();
                entries = found;
            }
        }
        InsertPlan { vector: prepared.vector.into_owned(), level, layers }
    }

    /// The writing half of an insert: adds the planned point and links it.
    pub(crate) fn commit(&mut self, plan: InsertPlan) -> u32 {
        let InsertPlan { vector: prepared, level, layers } = plan;
        let point = self.len() as u32;
        self.vectors.push(&prepared);
        self.levels.push(level as u8);
        self.deleted.push(false);
        self.links0.push_zeroed();
        self.upper.push(vec![0; level * (self.params.m + 1)]);
        if self.entry.is_none() {
            self.entry = Some(point);
            self.max_level = level;
            return point;
        }
        for (l, found) in layers.iter().enumerate().rev() {
            let limit = if l == 0 { self.m0 } else { self.params.m };
            let chosen = self.select(found, self.params.m);
            self.set_neighbours(point, l, &chosen);
            for &n in &chosen {
                let mut list: Vec<u32> = self.neighbours(n, l).to_vec();
                if list.len() < limit {
                    list.push(point);
                    self.set_neighbours(n, l, &list);
                } else {
                    let base = self.vectors.point_query(n as usize);
                    let mut scored: Vec<Scored> = list
                        .iter()
                        .chain(std::iter::once(&point))
                        .map(|&p| Scored { distance: self.distance(&base, p), point: p })
                        .collect();
                    scored.sort_unstable();
                    let kept = self.select(&scored, limit);
                    self.set_neighbours(n, l, &kept);
                }
            }
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(point);
        }
        point
    }

    /// Appends the graph's bytes (little-endian) to `out`; [`Hnsw::decode`] reads them back.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let put32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        put32(out, self.dimension as u32);
        out.push(match self.metric {
            Metric::Cosine => 0,
            Metric::L2 => 1,
            Metric::Dot => 2,
        });
        put32(out, self.params.m as u32);
        put32(out, self.params.ef_construction as u32);
        put32(out, self.params.ef_search as u32);
        put32(out, self.len() as u32);
        put32(out, self.entry.unwrap_or(u32::MAX));
        put32(out, self.max_level as u32);
        out.extend_from_slice(&self.rng.to_le_bytes());
        self.vectors.encode(out);
        for x in self.links0.elements() {
            put32(out, *x);
        }
        out.extend_from_slice(&self.levels);
        out.extend(self.deleted.iter().map(|d| u8::from(*d)));
        for list in &self.upper {
            put32(out, list.len() as u32);
            for x in list {
                put32(out, *x);
            }
        }
    }

    /// Reads a graph written by [`Hnsw::encode`] from the front of `bytes`; returns it and the
    /// bytes it used, or `None` if the bytes are not a consistent graph (never panics).
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Self, usize)> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(slice)
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let dimension = u32_at(take(4)?) as usize;
        let metric = match take(1)?[0] {
            0 => Metric::Cosine,
            1 => Metric::L2,
            2 => Metric::Dot,
            _ => return None,
        };
        let m = u32_at(take(4)?) as usize;
        let ef_construction = u32_at(take(4)?) as usize;
        let ef_search = u32_at(take(4)?) as usize;
        let count = u32_at(take(4)?) as usize;
        let entry = u32_at(take(4)?);
        let max_level = u32_at(take(4)?) as usize;
        let rng = u64::from_le_bytes(take(8)?.try_into().ok()?);
        if dimension == 0 || !(2..=1024).contains(&m) || max_level > 31 {
            return None;
        }
        let mut graph = Hnsw::new(dimension, metric, HnswParams { m, ef_construction, ef_search });
        graph.rng = rng;
        graph.max_level = max_level;
        let (vectors, used) = Vectors::decode(bytes.get(at..)?, dimension, count)?;
        graph.vectors = vectors;
        at += used;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(slice)
        };
        graph.links0 = Rows::from_le_bytes(
            graph.m0 + 1,
            4,
            take(count.checked_mul(graph.m0 + 1)?.checked_mul(4)?)?,
            u32_at,
        );
        graph.levels = take(count)?.to_vec();
        graph.deleted = take(count)?.iter().map(|d| *d != 0).collect();
        graph.deleted_count = graph.deleted.iter().filter(|d| **d).count();
        for point in 0..count {
            let len = u32_at(take(4)?) as usize;
            if len != graph.levels[point] as usize * (m + 1) {
                return None;
            }
            graph.upper.push(take(len.checked_mul(4)?)?.chunks_exact(4).map(u32_at).collect());
        }
        // Every link must name a point, and every count must fit its list.
        let valid = |list: &[u32], width: usize, capacity: usize| {
            list.chunks_exact(width).all(|chunk| {
                (chunk[0] as usize) <= capacity && chunk[1..].iter().all(|&p| (p as usize) < count)
            })
        };
        if !graph.links0.chunks.iter().all(|c| valid(c, graph.m0 + 1, graph.m0))
            || !graph.upper.iter().all(|u| valid(u, m + 1, m))
        {
            return None;
        }
        // A link on level l must reach a point that has level l: search reads that point's
        // level-l list next (the `hnsw_snapshot` fuzz target found the panic otherwise).
        let levels = &graph.levels;
        let reaches_its_level = graph.upper.iter().all(|u| {
            u.chunks_exact(m + 1).enumerate().all(|(below, chunk)| {
                let linked = chunk.get(1..1 + chunk[0] as usize).unwrap_or(&[]);
                linked.iter().all(|&p| levels.get(p as usize).is_some_and(|&l| l as usize > below))
            })
        });
        if !reaches_its_level {
            return None;
        }
        graph.entry = match (entry, count) {
            (u32::MAX, 0) => None,
            (e, _) if (e as usize) < count && graph.levels[e as usize] as usize == max_level => {
                Some(e)
            }
            _ => return None,
        };
        Some((graph, at))
    }

    /// The point of level 0 nearest the query that a greedy walk down from the entry point
    /// reaches: where a level-0 search starts. `None` for an empty graph.
    fn descend(&self, prepared: &Query<'_>) -> Option<Scored> {
        let entry = self.entry?;
        let mut current = Scored { distance: self.distance(prepared, entry), point: entry };
        for l in (1..=self.max_level).rev() {
            current = self.greedy(prepared, current, l);
        }
        Some(current)
    }

    /// Tombstones a point: it stays a waypoint but is never returned again.
    pub(crate) fn delete(&mut self, point: u32) {
        if let Some(flag) = self.deleted.get_mut(point as usize)
            && !*flag
        {
            *flag = true;
            self.deleted_count += 1;
        }
    }

    /// The `k` nearest live points that `accept` admits, nearest first, searching with beam
    /// width `max(ef, k)`.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        self.search_prepared(&self.prepare(query), k, ef, accept)
    }

    /// [`Hnsw::search`] for a query made by [`Hnsw::prepare`].
    pub(crate) fn search_prepared(
        &self,
        prepared: &Query<'_>,
        k: usize,
        ef: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        let Some(current) = self.descend(prepared) else { return Vec::new() };
        let admit = |p: u32| !self.deleted[p as usize] && accept(p);
        let mut found = self.search_level(prepared, &[current], ef.max(k), 0, admit);
        found.truncate(k);
        found
    }
}

mod filtered;
#[cfg(test)]
mod tests;
