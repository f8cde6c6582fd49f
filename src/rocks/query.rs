//! Entity name search, time-range scans and keyset pages for export.

use rocksdb::{DBAccess, DBRawIteratorWithThreadMode};

use super::cf::{
    CF_EDGES, CF_EMBEDDINGS, CF_ENTITIES, CF_ENTITY_NAMES, CF_MOMENT_TIME, CF_MOMENTS, CF_RESOURCES,
};
use super::codec;
use super::keys;
use super::store::{View, map_rocks_error};
use super::tenants::{TenantDb, for_both};
use crate::error::{Error, Result};
use crate::model::{
    EdgeId, Entity, EntityId, EntityQuery, Moment, MomentId, Record, RecordKind, ResourceId,
    TimeRange, Timestamp, words, words_match,
};

fn id16(what: &'static str, key: &[u8]) -> Result<[u8; 16]> {
    key.try_into().map_err(|_| Error::corrupt(what, "key is not 16 bytes"))
}

/// Entities matching the query, by name then id.
pub(crate) fn search_entities(tenant: &TenantDb, query: &EntityQuery) -> Result<Vec<Entity>> {
    let view = View::Db(tenant);
    let query_words = words(&query.text);
    let matches = |entity: &Entity| {
        query.kind.as_ref().is_none_or(|kind| &entity.kind == kind)
            && query.properties.as_ref().is_none_or(|filter| filter.matches(&entity.properties))
            && words_match(&words(&entity.name), &query_words)
    };
    let mut found = Vec::new();
    // The longest word is usually the most selective prefix to scan.
    match query_words.iter().max_by_key(|w| w.len()) {
        None => view.scan(CF_ENTITIES, &[], None, |key, value| {
            let entity = codec::decode_entity(EntityId::from_bytes(id16("entity", key)?), value)?;
            if matches(&entity) {
                found.push(entity);
            }
            Ok(true)
        })?,
        Some(word) => {
            let mut ids = Vec::new();
            view.scan_prefix(CF_ENTITY_NAMES, &tenant.name_query_prefix(word), |key, _| {
                ids.push(
                    keys::parse_entity_name(key)
                        .ok_or_else(|| Error::corrupt("entity name key", "bad layout"))?,
                );
                Ok(true)
            })?;
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                match view.entity(id) {
                    Ok(entity) if matches(&entity) => found.push(entity),
                    Ok(_) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    found.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    found.truncate(query.limit);
    Ok(found)
}

/// Moments overlapping `range`, by start then id.
pub(crate) fn moments_in_range(tenant: &TenantDb, range: &TimeRange) -> Result<Vec<Moment>> {
    let view = View::Db(tenant);
    // No stored moment is longer than the span, so none that starts earlier can overlap.
    let lower = Timestamp::from_micros(
        range.start_or_min().as_micros().saturating_sub(tenant.moment_span()),
    );
    let upper = keys::prefix_end(&keys::time(range.end_or_max()));
    let mut ids = Vec::new();
    view.scan(CF_MOMENT_TIME, &keys::time(lower), upper, |key, value| {
        let (start, id) = keys::parse_moment_time(key)
            .ok_or_else(|| Error::corrupt("moment time key", "bad layout"))?;
        let end =
            keys::parse_time(value).ok_or_else(|| Error::corrupt("moment time", "not 8 bytes"))?;
        if range.overlaps(start, end) {
            ids.push(MomentId::from_bytes(id));
        }
        Ok(true)
    })?;
    let mut moments = Vec::with_capacity(ids.len());
    for id in ids {
        match view.moment(id) {
            Ok(moment) => moments.push(moment),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moments)
}

/// Up to `limit` records of `kind` with ids after `after`, in id order.
pub(crate) fn scan(
    tenant: &TenantDb,
    kind: RecordKind,
    after: Option<uuid::Uuid>,
    limit: usize,
) -> Result<Vec<Record>> {
    let after = after.map(|id| *id.as_bytes());
    type Decode = fn([u8; 16], &[u8]) -> Result<Record>;
    let (cf, decode): (&'static str, Decode) = match kind {
        RecordKind::Resource => return scan_resources(tenant, after, limit),
        RecordKind::Entity => (CF_ENTITIES, |id, value| {
            Ok(Record::Entity(codec::decode_entity(EntityId::from_bytes(id), value)?))
        }),
        RecordKind::Edge => (CF_EDGES, |id, value| {
            Ok(Record::Edge(codec::decode_edge(EdgeId::from_bytes(id), value)?))
        }),
        RecordKind::Moment => (CF_MOMENTS, |id, value| {
            Ok(Record::Moment(codec::decode_moment(MomentId::from_bytes(id), value)?))
        }),
    };
    let lower = after.map(|id| id.to_vec()).unwrap_or_default();
    let mut records = Vec::with_capacity(limit.min(4096));
    View::Db(tenant).scan(cf, &lower, None, |key, value| {
        let id = id16("record", key)?;
        if Some(id) != after {
            records.push(decode(id, value)?);
        }
        Ok(records.len() < limit)
    })?;
    Ok(records)
}

/// A page of resources with their embeddings: the `resources` and `embeddings` column families
/// are walked side by side (both are keyed by the resource id) instead of reading each
/// resource's two values with point lookups, which cost a block-cache probe (and, when the
/// tenant does not fit the cache, a block read) per value. Both iterators read at one point (a
/// snapshot, or a reader's state between catch-ups), so a resource and its embedding are never
/// from different writes. A page is read once, so it
/// does not fill the block cache (an export would otherwise evict the working set).
fn scan_resources(tenant: &TenantDb, after: Option<[u8; 16]>, limit: usize) -> Result<Vec<Record>> {
    let point = tenant.db.read_point();
    let options = || {
        let mut options = point.options();
        options.fill_cache(false);
        options
    };
    let (resources, embeddings) = (tenant.cf(CF_RESOURCES)?, tenant.cf(CF_EMBEDDINGS)?);
    for_both!(&tenant.db, db => walk_resources(
        tenant,
        db.raw_iterator_cf_opt(resources, options()),
        db.raw_iterator_cf_opt(embeddings, options()),
        after,
        limit,
    ))
}

/// [`scan_resources`] over its two iterators, on either kind of database.
fn walk_resources<D: DBAccess>(
    tenant: &TenantDb,
    mut resources: DBRawIteratorWithThreadMode<'_, D>,
    mut embeddings: DBRawIteratorWithThreadMode<'_, D>,
    after: Option<[u8; 16]>,
    limit: usize,
) -> Result<Vec<Record>> {
    let lower = after.map(|id| id.to_vec()).unwrap_or_default();
    resources.seek(&lower);
    embeddings.seek(&lower);
    let mut records = Vec::with_capacity(limit.min(4096));
    while records.len() < limit {
        let (Some(key), Some(value)) = (resources.key(), resources.value()) else { break };
        let id = id16("resource", key)?;
        if Some(id) != after {
            let value = tenant.open_value(CF_RESOURCES, key, value)?;
            let mut resource = codec::decode_resource(ResourceId::from_bytes(id), &value)?;
            // Every embedding key is a resource key: skip none but those before this one.
            while embeddings.key().is_some_and(|other| other < key) {
                embeddings.next();
            }
            if let (Some(other), Some(embedding)) = (embeddings.key(), embeddings.value())
                && other == key
            {
                let embedding = tenant.open_value(CF_EMBEDDINGS, key, embedding)?;
                resource.embedding = Some(codec::decode_embedding(&embedding)?);
            }
            records.push(Record::Resource(resource));
        }
        resources.next();
    }
    resources.status().map_err(map_rocks_error)?;
    embeddings.status().map_err(map_rocks_error)?;
    Ok(records)
}
