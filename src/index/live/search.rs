//! Searching the live index: the graph walk or an exact scan, merged with the inbox so a
//! write is searchable the moment it returns, and over compact vectors the re-scoring of the
//! best candidates with full vectors. Reads the index's state; changes nothing.

use super::*;
use crate::index::fields::Verdicts;

impl VectorIndex {
    /// The `k` nearest live resources that match `filter`, nearest first, ties by id. Over
    /// compact vectors the candidates are re-scored with the embeddings `full` reads (see the
    /// module docs of `live.rs`); over f32 `full` is never called.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&Filter>,
        full: &dyn FullVectors,
    ) -> Vec<Hit> {
        let ef = ef.unwrap_or(self.params.ef_search);
        let (mut candidates, prepared) = self.candidates(query, k, ef, filter);
        let approximate: Vec<ResourceId> =
            candidates.iter().filter(|c| !c.exact).map(|c| c.hit.id).collect();
        if !approximate.is_empty() {
            let vectors = full.full_vectors(&approximate);
            let mut vectors = approximate.iter().zip(vectors).collect::<HashMap<_, _>>();
            for candidate in candidates.iter_mut().filter(|c| !c.exact) {
                if let Some(Some(vector)) = vectors.remove(&candidate.hit.id) {
                    let vector = prepare_in_place(self.metric, vector);
                    candidate.hit.distance = metric_distance(self.metric, &prepared, &vector);
                }
            }
        }
        let mut hits: Vec<Hit> = candidates.into_iter().map(|c| c.hit).collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        hits
    }

    /// The best candidates under the index's locks: the `k` nearest when the graph's vectors
    /// are f32, else the best `k · RERANK_FACTOR` with approximate distances for the graph's
    /// points (pending points are always exact). Also returns the prepared query.
    fn candidates(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&Filter>,
    ) -> (Vec<Candidate>, Vec<f32>) {
        let state = self.state.read();
        let compact = state.graph.is_compact();
        let wanted = if compact { k.saturating_mul(RERANK_FACTOR) } else { k };
        let inbox = self.inbox.read();
        let matches = |fields: &Fields| filter.is_none_or(|f| fields.matches(f));
        // What the inbox holds for a resource supersedes what the graph or `pending` holds.
        let current = |id: &ResourceId| inbox.changes.is_empty() || !inbox.changes.contains_key(id);
        let live = state.slots.len();
        let prepared = state.graph.prepare(query);
        // The flag: whether the distance is exact (f32 vectors, or a pending point).
        let mut best: BinaryHeap<(Scored, ResourceId, bool)> =
            BinaryHeap::with_capacity(wanted + 1);
        let offer = |best: &mut BinaryHeap<(Scored, ResourceId, bool)>,
                     distance: f32,
                     id: ResourceId,
                     exact: bool| {
            // Ties are broken by resource id so every provider orders them the same way.
            let entry = (Scored { distance, point: 0 }, id, exact || !compact);
            if best.len() < wanted {
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
        let admitted = |info: &Point| current(&info.id) && matches(&info.metadata);
        // The only points an equality filter can match, from the postings; when they are
        // exactly its matches, a point's metadata (three pointers away) is never read.
        let posted = match filter {
            Some(filter) if !exact_graph => state.postings.candidates(filter),
            _ => None,
        };
        let posted_exact = posted.as_ref().is_some_and(|posted| posted.exact);
        let admitted_point = |point: u32| {
            let info = &state.points[point as usize];
            !state.graph.is_deleted(point)
                && current(&info.id)
                && (posted_exact || matches(&info.metadata))
        };
        let score = |best: &mut BinaryHeap<_>, candidates: &[u32]| {
            for &point in candidates {
                if admitted_point(point) {
                    let id = state.points[point as usize].id;
                    offer(best, state.graph.distance(&prepared, point), id, false);
                }
            }
        };
        let short =
            |found: &[Scored]| found.len() < k.min(state.graph.len() - state.graph.deleted_count());
        let walk = |best: &mut BinaryHeap<_>, found: Vec<Scored>| {
            for scored in found {
                offer(best, scored.distance, state.points[scored.point as usize].id, false);
            }
        };
        match posted {
            _ if exact_graph => {
                state.exact_graph(&prepared, admitted, |d, id| offer(&mut best, d, id, false));
            }
            // Few candidates (at most 5% of the tenant): scoring them all costs less than a
            // walk that meets twenty rejected points for each one it keeps.
            Some(posted) if posted.points.len() * 20 <= live => {
                score(&mut best, &posted.points);
            }
            // Candidates from the postings: their verdicts cost a bit test, so the filtered
            // walk can afford to look two hops around every rejected point.
            Some(posted) => {
                let mut verdicts = Verdicts::only(state.points.len(), &posted.points);
                let found = state.graph.search_filtered(&prepared, wanted, ef, |p| {
                    verdicts.passes(p, || admitted_point(p))
                });
                if short(&found) {
                    score(&mut best, &posted.points);
                } else {
                    walk(&mut best, found);
                }
            }
            // No filter, or one without postings: the plain walk. With a filter a verdict then
            // means reading the point's metadata, a few cache misses, too many for the
            // two-hop walk's many looks; the plain walk decides only the neighbours it scores.
            None => {
                let found = state.graph.search_prepared(&prepared, wanted, ef, admitted_point);
                if short(&found) {
                    state.exact_graph(&prepared, admitted, |d, id| offer(&mut best, d, id, false));
                } else {
                    walk(&mut best, found);
                }
            }
        }
        let unsettled = state
            .pending
            .iter()
            .filter(|(id, _)| current(id))
            .chain(inbox.changes.iter().filter_map(|(id, p)| Some((id, p.as_ref()?))));
        for (id, pending) in unsettled {
            if matches(&pending.metadata) {
                let distance = metric_distance(self.metric, &prepared.vector, &pending.vector);
                offer(&mut best, distance, *id, true);
            }
        }
        let candidates = best
            .into_iter()
            .map(|(s, id, exact)| Candidate { hit: Hit { id, distance: s.distance }, exact })
            .collect();
        (candidates, prepared.vector.into_owned())
    }
}

/// A search candidate: its hit, and whether the distance is exact.
struct Candidate {
    hit: Hit,
    exact: bool,
}
