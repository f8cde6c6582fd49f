//! The read-only queries over one tenant's [`State`]: edge listing, vector search, entity name
//! search, traversal, time ranges and scan pages. It must not change records or know about
//! locks and transactions.
//!
//! Every query is the plainest reading of the contract: exact scans, then a sort on the
//! contract's order. It is the reference the other providers' indexes are checked against, so
//! it trades speed for being obviously right.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;

use super::store::State;
use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EntityId, EntityQuery, Metric, Moment, Reached, Record, RecordKind,
    ScoredResource, SearchQuery, TimeRange, TraverseQuery, words, words_match,
};

/// The end of `edge` across from `entity` when the edge leaves `entity` in `direction`.
fn across(edge: &Edge, entity: EntityId, direction: Direction) -> Option<EntityId> {
    let out = edge.from == entity;
    let into = edge.to == entity;
    match direction {
        Direction::Out if out => Some(edge.to),
        Direction::In if into => Some(edge.from),
        Direction::Both if out => Some(edge.to),
        Direction::Both if into => Some(edge.from),
        _ => None,
    }
}

/// The edges of a stored entity in `direction`, optionally of one relation, by edge id; a
/// self-loop once.
pub(crate) fn edges(
    state: &State,
    entity: EntityId,
    direction: Direction,
    relation: Option<&str>,
) -> Result<Vec<Edge>> {
    if !state.entities.contains_key(&entity) {
        return Err(Error::not_found(EntityId::WHAT, entity));
    }
    Ok(state
        .edges_at(entity)
        .filter(|edge| across(edge, entity, direction).is_some())
        .filter(|edge| relation.is_none_or(|relation| edge.relation == relation))
        .cloned()
        .collect())
}

/// How two distances order, nearest first. Equal numbers tie, `-0.0` and `0.0` included (a
/// dot product with a zero vector is `-0.0`), so the caller can break the tie by id; NaN (only
/// from overflowing values) ranks after every number.
fn nearer(a: f32, b: f32) -> Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// The `k` nearest resources matching the filter under `metric`, nearest first, ties by id.
/// The filter applies before the cut.
pub(crate) fn search_resources(
    state: &State,
    metric: Metric,
    query: &SearchQuery,
) -> Vec<ScoredResource> {
    let mut hits: Vec<(f32, &crate::model::Resource)> = state
        .resources
        .values()
        .filter(|resource| query.filter.as_ref().is_none_or(|f| f.matches(&resource.metadata)))
        .filter_map(|resource| {
            let embedding = resource.embedding.as_deref()?;
            Some((metric.distance(embedding, &query.vector), resource))
        })
        .collect();
    hits.sort_by(|a, b| nearer(a.0, b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    hits.truncate(query.k);
    hits.into_iter()
        .map(|(distance, resource)| ScoredResource { resource: resource.clone(), distance })
        .collect()
}

/// Entities whose name words cover every query word by prefix, of the kind and with the
/// properties asked for, by name (bytes) then id, at most `limit`.
pub(crate) fn search_entities(state: &State, query: &EntityQuery) -> Vec<crate::model::Entity> {
    let query_words = words(&query.text);
    let mut found: Vec<_> = state
        .entities
        .values()
        .filter(|entity| query.kind.as_ref().is_none_or(|kind| &entity.kind == kind))
        .filter(|entity| query.properties.as_ref().is_none_or(|f| f.matches(&entity.properties)))
        .filter(|entity| words_match(&words(&entity.name), &query_words))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    found.into_iter().take(query.limit).cloned().collect()
}

/// Breadth-first traversal: each entity reached once, at its fewest hops, by depth then id;
/// the start is not included.
pub(crate) fn traverse(state: &State, query: &TraverseQuery) -> Result<Vec<Reached>> {
    if !state.entities.contains_key(&query.start) {
        return Err(Error::not_found(EntityId::WHAT, query.start));
    }
    let follows =
        |edge: &Edge| query.relations.is_empty() || query.relations.contains(&edge.relation);
    let mut visited = HashSet::from([query.start]);
    let mut reached = Vec::new();
    let mut frontier = vec![query.start];
    for depth in 1..=query.depth {
        let mut next = Vec::new();
        for node in frontier {
            for edge in state.edges_at(node).filter(|edge| follows(edge)) {
                if let Some(other) = across(edge, node, query.direction)
                    && visited.insert(other)
                {
                    reached.push(Reached { entity: other, depth });
                    next.push(other);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    reached.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.entity.cmp(&b.entity)));
    Ok(reached)
}

/// Moments overlapping `range` (touching counts), by start then id.
pub(crate) fn moments_in_range(state: &State, range: &TimeRange) -> Vec<Moment> {
    let mut found: Vec<&Moment> =
        state.moments.values().filter(|m| range.overlaps(m.start, m.end)).collect();
    found.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
    found.into_iter().cloned().collect()
}

/// Up to `limit` records of `kind` with ids after `after`, in id order.
pub(crate) fn scan(
    state: &State,
    kind: RecordKind,
    after: Option<uuid::Uuid>,
    limit: usize,
) -> Vec<Record> {
    fn page<K: Ord + From<uuid::Uuid>, V>(
        map: &std::collections::BTreeMap<K, V>,
        after: Option<uuid::Uuid>,
        limit: usize,
        record: impl Fn(&V) -> Record,
    ) -> Vec<Record> {
        let lower = after.map_or(Bound::Unbounded, |id| Bound::Excluded(K::from(id)));
        map.range((lower, Bound::Unbounded)).take(limit).map(|(_, value)| record(value)).collect()
    }
    match kind {
        RecordKind::Resource => {
            page(&state.resources, after, limit, |r| Record::Resource(r.clone()))
        }
        RecordKind::Entity => page(&state.entities, after, limit, |e| Record::Entity(e.clone())),
        RecordKind::Edge => page(&state.edges, after, limit, |e| Record::Edge(e.clone())),
        RecordKind::Moment => page(&state.moments, after, limit, |m| Record::Moment(m.clone())),
    }
}
