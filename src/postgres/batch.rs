//! Batch inserts of entities, edges and moments: one statement per batch, so one round trip
//! whatever its size. Owns the binding of a batch to the parallel arrays of `sql::batch`; the
//! SQL text is in `sql`, single-record writes in `store`.
//!
//! Each statement runs as the tenant in its own implicit transaction (`sql::AS_TENANT`; the
//! connection must have no transaction open), so a batch is stored whole or not at all: a
//! taken or repeated id fails the unique index and a missing endpoint the foreign key check,
//! and either rolls the whole statement back.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::conn::{PgConn, is_foreign_key_violation, is_unique_violation, violating_key};
use super::json::StoredJson;
use super::sql;
use super::tenant::SchemaName;
use crate::error::{Error, Result};
use crate::model::{Edge, Entity, EntityId, Moment, words};

/// Maps a failed batch insert: a unique violation names the taken id (`Key (id)=(...)`), and
/// `first` when the server gave no detail.
fn taken(what: &'static str, first: Uuid) -> impl FnOnce(Error) -> Error {
    move |e| {
        if is_unique_violation(&e) {
            Error::already_exists(what, violating_key(&e).unwrap_or_else(|| first.to_string()))
        } else {
            e
        }
    }
}

/// Inserts entities, with their name words, as `tenant`.
pub(crate) async fn insert_entities(
    conn: &PgConn,
    schema: &SchemaName,
    entities: &[Entity],
    tenant: &str,
) -> Result<()> {
    let Some(first) = entities.first() else { return Ok(()) };
    let n = entities.len();
    let (mut ids, mut names, mut kinds, mut name_words) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut properties, mut created, mut updated) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in entities {
        ids.push(e.id.as_uuid());
        names.push(e.name.as_str());
        kinds.push(e.kind.as_str());
        name_words.push(words(&e.name).join(" "));
        properties.push(StoredJson(&e.properties));
        created.push(e.created_at.as_micros());
        updated.push(e.updated_at.as_micros());
    }
    let params: [&(dyn ToSql + Sync); 8] =
        [&ids, &names, &kinds, &name_words, &properties, &created, &updated, &tenant];
    conn.execute(&sql::insert_entities_as_tenant(schema), &params)
        .await
        .map(drop)
        .map_err(taken("entity", first.id.as_uuid()))
}

/// Inserts edges as `tenant`. A missing endpoint (absent, or deleted by a transaction that
/// committed before the foreign key check locked it) is [`Error::NotFound`] naming it.
pub(crate) async fn insert_edges(
    conn: &PgConn,
    schema: &SchemaName,
    edges: &[Edge],
    tenant: &str,
) -> Result<()> {
    let Some(first) = edges.first() else { return Ok(()) };
    let n = edges.len();
    let (mut ids, mut from, mut to, mut relations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut weights, mut properties, mut created) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in edges {
        ids.push(e.id.as_uuid());
        from.push(e.from.as_uuid());
        to.push(e.to.as_uuid());
        relations.push(e.relation.as_str());
        weights.push(e.weight);
        properties.push(StoredJson(&e.properties));
        created.push(e.created_at.as_micros());
    }
    let params: [&(dyn ToSql + Sync); 8] =
        [&ids, &from, &to, &relations, &weights, &properties, &created, &tenant];
    conn.execute(&sql::insert_edges_as_tenant(schema), &params).await.map(drop).map_err(|e| {
        if is_foreign_key_violation(&e) {
            // `Key (from_id)=(...) is not present in table "entities".`
            let missing = violating_key(&e)
                .and_then(|key| key.parse::<Uuid>().ok())
                .map(EntityId::from)
                .unwrap_or(first.from);
            Error::not_found("entity", missing)
        } else {
            taken("edge", first.id.as_uuid())(e)
        }
    })
}

/// Inserts moments as `tenant`.
pub(crate) async fn insert_moments(
    conn: &PgConn,
    schema: &SchemaName,
    moments: &[Moment],
    tenant: &str,
) -> Result<()> {
    let Some(first) = moments.first() else { return Ok(()) };
    let n = moments.len();
    let (mut ids, mut starts, mut ends, mut kinds) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut contents, mut entities, mut metadata) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for m in moments {
        ids.push(m.id.as_uuid());
        starts.push(m.start.as_micros());
        ends.push(m.end.as_micros());
        kinds.push(m.kind.as_str());
        contents.push(m.content.as_str());
        let joined: Vec<String> = m.entities.iter().map(|id| id.as_uuid().to_string()).collect();
        entities.push(joined.join(","));
        metadata.push(StoredJson(&m.metadata));
    }
    let params: [&(dyn ToSql + Sync); 8] =
        [&ids, &starts, &ends, &kinds, &contents, &entities, &metadata, &tenant];
    conn.execute(&sql::insert_moments_as_tenant(schema), &params)
        .await
        .map(drop)
        .map_err(taken("moment", first.id.as_uuid()))
}
