//! Breadth-first traversal over the adjacency column family.
//!
//! One raw iterator is created per traversal and re-seeked for every node and side, which
//! avoids the cost of creating an iterator per node. Each reached entity is recorded once, at
//! the depth it was first reached (BFS order guarantees that is the fewest hops).

use std::collections::HashSet;

use rocksdb::{DBAccess, DBRawIteratorWithThreadMode, ReadOptions};

use super::cf::{CF_ADJACENCY, CF_ENTITIES};
use super::keys;
use super::store::{map_rocks_error, sides};
use super::tenants::{TenantDb, for_both};
use crate::error::{Error, Result};
use crate::model::{EntityId, Reached, TraverseQuery};

/// Entities reachable from `query.start` within `query.depth` hops, by depth then id.
pub(crate) fn traverse(tenant: &TenantDb, query: &TraverseQuery) -> Result<Vec<Reached>> {
    if tenant
        .db
        .get_pinned_cf(tenant.cf(CF_ENTITIES)?, query.start.as_bytes())
        .map_err(map_rocks_error)?
        .is_none()
    {
        return Err(Error::not_found("entity", query.start));
    }
    let adjacency = tenant.cf(CF_ADJACENCY)?;
    for_both!(&tenant.db, db => {
        walk(tenant, query, db.raw_iterator_cf_opt(adjacency, ReadOptions::default()))
    })
}

/// The breadth-first walk of [`traverse`] over `iterator`, on either kind of database.
fn walk<D: DBAccess>(
    tenant: &TenantDb,
    query: &TraverseQuery,
    mut iterator: DBRawIteratorWithThreadMode<'_, D>,
) -> Result<Vec<Reached>> {
    let mut visited: HashSet<EntityId> = HashSet::new();
    visited.insert(query.start);
    let mut reached = Vec::new();
    let mut frontier = vec![query.start];
    let mut next = Vec::new();
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    let relations: Vec<_> = query.relations.iter().map(|r| tenant.relation_key(r)).collect();
    for depth in 1..=query.depth {
        for node in frontier.drain(..) {
            for side in sides(query.direction) {
                prefixes.clear();
                if query.relations.is_empty() {
                    prefixes.push(keys::adjacency_prefix(node, *side).to_vec());
                } else {
                    prefixes.extend(
                        relations.iter().map(|r| keys::adjacency_relation_prefix(node, *side, r)),
                    );
                }
                for prefix in &prefixes {
                    neighbours(&mut iterator, prefix, |other| {
                        if visited.insert(other) {
                            reached.push(Reached { entity: other, depth });
                            next.push(other);
                        }
                    })?;
                }
            }
        }
        if next.is_empty() {
            break;
        }
        std::mem::swap(&mut frontier, &mut next);
    }
    reached.sort_unstable_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.entity.cmp(&b.entity)));
    Ok(reached)
}

fn neighbours<D: DBAccess>(
    iterator: &mut DBRawIteratorWithThreadMode<'_, D>,
    prefix: &[u8],
    mut visit: impl FnMut(EntityId),
) -> Result<()> {
    iterator.seek(prefix);
    while let Some(key) = iterator.key() {
        if !key.starts_with(prefix) {
            break;
        }
        let adjacent = keys::parse_adjacency(key)
            .ok_or_else(|| Error::corrupt("adjacency key", "bad layout"))?;
        visit(adjacent.other);
        iterator.next();
    }
    iterator.status().map_err(map_rocks_error)
}
