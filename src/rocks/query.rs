//! Entity name search, time-range scans and keyset pages for export.

use super::cf::{CF_EDGES, CF_ENTITIES, CF_ENTITY_NAMES, CF_MOMENT_TIME, CF_MOMENTS, CF_RESOURCES};
use super::codec;
use super::keys;
use super::store::View;
use super::tenants::TenantDb;
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
    let view = View::Db(tenant);
    let cf = match kind {
        RecordKind::Resource => CF_RESOURCES,
        RecordKind::Entity => CF_ENTITIES,
        RecordKind::Edge => CF_EDGES,
        RecordKind::Moment => CF_MOMENTS,
    };
    let after = after.map(|id| *id.as_bytes());
    let lower = after.map(|id| id.to_vec()).unwrap_or_default();
    let mut records = Vec::new();
    view.scan(cf, &lower, None, |key, value| {
        let id = id16("record", key)?;
        if Some(id) == after {
            return Ok(true);
        }
        records.push(match kind {
            RecordKind::Resource => Record::Resource(view.resource(ResourceId::from_bytes(id))?),
            RecordKind::Entity => {
                Record::Entity(codec::decode_entity(EntityId::from_bytes(id), value)?)
            }
            RecordKind::Edge => Record::Edge(codec::decode_edge(EdgeId::from_bytes(id), value)?),
            RecordKind::Moment => {
                Record::Moment(codec::decode_moment(MomentId::from_bytes(id), value)?)
            }
        });
        Ok(records.len() < limit)
    })?;
    Ok(records)
}
