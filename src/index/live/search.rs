//! Searching the live index: the graph walk or an exact scan, merged with the inbox so a
//! write is searchable the moment it returns. Reads the index's state; changes nothing.

use super::*;

impl VectorIndex {
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
                state.postings.candidates(filter).filter(|c| c.len() * 20 <= live)
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
