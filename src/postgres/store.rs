//! Record reads and writes on a connection that is inside a transaction with the tenant set.
//!
//! Shared by auto-commit operations (run immediately, each in its own transaction) and by
//! [`super::PgTxn`] (which replays its writes through these at commit).

use pgvector::Vector;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::conn::{PgConn, is_foreign_key_violation, is_unique_violation, violating_key};
use super::json::StoredJson;
use super::sql;
use super::tenant::SchemaName;
use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityIds, Metadata, Moment, MomentId, Resource,
    ResourceId, Timestamp, words,
};

pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::corrupt(what, e)
}

pub(crate) fn resource_from_row(row: &Row) -> Result<Resource> {
    let c = corrupt("resource row");
    let decode = || -> std::result::Result<Resource, tokio_postgres::Error> {
        let embedding: Option<Vector> = row.try_get(4)?;
        Ok(Resource {
            id: ResourceId::from(row.try_get::<_, Uuid>(0)?),
            uri: row.try_get(1)?,
            content: row.try_get(2)?,
            metadata: row.try_get::<_, Json<Metadata>>(3)?.0,
            embedding: embedding.map(|v| v.to_vec()),
            created_at: Timestamp::from_micros(row.try_get(5)?),
            updated_at: Timestamp::from_micros(row.try_get(6)?),
        })
    };
    decode().map_err(c)
}

/// A row of [`sql::declare_candidates`], fetched as text: a resource's id and metadata.
/// `jsonb` sends the same text in its binary form (behind a version byte), so the metadata
/// reads back exactly as through [`resource_from_row`].
pub(crate) fn candidate_from_text(
    row: &tokio_postgres::SimpleQueryRow,
) -> Result<(Uuid, Metadata)> {
    let field = |i| {
        row.try_get(i)
            .ok()
            .flatten()
            .ok_or_else(|| Error::corrupt("candidate row", "a missing column"))
    };
    let id = Uuid::parse_str(field(0)?).map_err(|e| Error::corrupt("candidate row", e))?;
    let metadata =
        serde_json::from_str(field(1)?).map_err(|e| Error::corrupt("candidate row", e))?;
    Ok((id, metadata))
}

pub(crate) fn entity_from_row(row: &Row) -> Result<Entity> {
    let decode = || -> std::result::Result<Entity, tokio_postgres::Error> {
        Ok(Entity {
            id: EntityId::from(row.try_get::<_, Uuid>(0)?),
            name: row.try_get(1)?,
            kind: row.try_get(2)?,
            properties: row.try_get::<_, Json<Metadata>>(3)?.0,
            created_at: Timestamp::from_micros(row.try_get(4)?),
            updated_at: Timestamp::from_micros(row.try_get(5)?),
        })
    };
    decode().map_err(corrupt("entity row"))
}

pub(crate) fn edge_from_row(row: &Row) -> Result<Edge> {
    let decode = || -> std::result::Result<Edge, tokio_postgres::Error> {
        Ok(Edge {
            id: EdgeId::from(row.try_get::<_, Uuid>(0)?),
            from: EntityId::from(row.try_get::<_, Uuid>(1)?),
            to: EntityId::from(row.try_get::<_, Uuid>(2)?),
            relation: row.try_get(3)?,
            weight: row.try_get(4)?,
            properties: row.try_get::<_, Json<Metadata>>(5)?.0,
            created_at: Timestamp::from_micros(row.try_get(6)?),
        })
    };
    decode().map_err(corrupt("edge row"))
}

pub(crate) fn moment_from_row(row: &Row) -> Result<Moment> {
    let decode = || -> std::result::Result<Moment, tokio_postgres::Error> {
        let entities: Vec<Uuid> = row.try_get(5)?;
        Ok(Moment {
            id: MomentId::from(row.try_get::<_, Uuid>(0)?),
            start: Timestamp::from_micros(row.try_get(1)?),
            end: Timestamp::from_micros(row.try_get(2)?),
            kind: row.try_get(3)?,
            content: row.try_get(4)?,
            entities: entities.into_iter().map(EntityId::from).collect::<EntityIds>(),
            metadata: row.try_get::<_, Json<Metadata>>(6)?.0,
        })
    };
    decode().map_err(corrupt("moment row"))
}

/// Maps a failed insert: a unique violation means the id is taken.
fn insert_error(what: &'static str, id: impl ToString) -> impl FnOnce(Error) -> Error {
    move |e| {
        if is_unique_violation(&e) {
            Error::already_exists(what, violating_key(&e).unwrap_or_else(|| id.to_string()))
        } else {
            e
        }
    }
}

/// Runs an insert whose last parameter is `as_tenant`: with a tenant, `stamped` (the statement
/// that sets it, taking every parameter); without, `plain` and every parameter but the last.
async fn insert_rows(
    conn: &PgConn,
    (plain, stamped): (String, String),
    params: &[&(dyn ToSql + Sync)],
    as_tenant: Option<&str>,
    (what, id): (&'static str, impl ToString),
) -> Result<()> {
    let (statement, params) = match as_tenant {
        Some(_) => (stamped, params),
        None => (plain, &params[..params.len() - 1]),
    };
    conn.execute(&statement, params).await.map(drop).map_err(insert_error(what, id))
}

/// Runs an update that returns the kept `created_at` of the row it replaced (`what` names the
/// row in errors); `None` when no row matched.
async fn update_row(
    conn: &PgConn,
    statement: String,
    params: &[&(dyn ToSql + Sync)],
    what: &'static str,
) -> Result<Option<Timestamp>> {
    let row = conn.query_opt(&statement, params).await?;
    row.map(|row| row.try_get(0).map(Timestamp::from_micros).map_err(|e| Error::corrupt(what, e)))
        .transpose()
}

/// The row of `id` from `statement` (a select by id), decoded.
async fn get_row<T>(
    conn: &PgConn,
    statement: String,
    id: Uuid,
    decode: fn(&tokio_postgres::Row) -> Result<T>,
) -> Result<Option<T>> {
    conn.query_opt(&statement, &[&id]).await?.as_ref().map(decode).transpose()
}

/// Deletes the row of `id` with `statement`; whether it existed.
async fn delete_row(conn: &PgConn, statement: String, id: Uuid) -> Result<bool> {
    Ok(conn.execute(&statement, &[&id]).await? > 0)
}

/// Inserts resources in one statement: in the connection's transaction, or with `as_tenant`
/// in a statement of its own that sets that tenant (`sql::AS_TENANT`; the connection must then
/// have no transaction open). With `tail` (the schema has the vector tail) their embeddings go
/// to the tail (`sql::tail`), in the same statement.
pub(crate) async fn insert_resources(
    conn: &PgConn,
    schema: &SchemaName,
    resources: &[Resource],
    as_tenant: Option<&str>,
    tail: bool,
) -> Result<()> {
    if resources.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(resources.len());
    let mut uris = Vec::with_capacity(resources.len());
    let mut contents = Vec::with_capacity(resources.len());
    let mut metadata = Vec::with_capacity(resources.len());
    let mut embeddings = Vec::with_capacity(resources.len());
    let mut created = Vec::with_capacity(resources.len());
    let mut updated = Vec::with_capacity(resources.len());
    for r in resources {
        ids.push(r.id.as_uuid());
        uris.push(r.uri.as_deref());
        contents.push(r.content.as_str());
        metadata.push(StoredJson(&r.metadata));
        embeddings.push(r.embedding.clone().map(Vector::from));
        created.push(r.created_at.as_micros());
        updated.push(r.updated_at.as_micros());
    }
    let first = resources[0].id;
    let params: [&(dyn ToSql + Sync); 8] =
        [&ids, &uris, &contents, &metadata, &embeddings, &created, &updated, &as_tenant];
    let statements = match tail {
        true => (
            sql::insert_resources_through_tail(schema, false),
            sql::insert_resources_through_tail(schema, true),
        ),
        false => (sql::insert_resources(schema), sql::insert_resources_as_tenant(schema)),
    };
    insert_rows(conn, statements, &params, as_tenant, ("resource", first)).await
}

/// Inserts a resource: in the connection's transaction, or `as_tenant` as [`insert_resources`];
/// with `tail`, as a batch of one.
pub(crate) async fn insert_resource(
    conn: &PgConn,
    schema: &SchemaName,
    r: &Resource,
    as_tenant: Option<&str>,
    tail: bool,
) -> Result<()> {
    if tail {
        return insert_resources(conn, schema, std::slice::from_ref(r), as_tenant, true).await;
    }
    let embedding = r.embedding.clone().map(Vector::from);
    let params: [&(dyn ToSql + Sync); 8] = [
        &r.id.as_uuid(),
        &r.uri,
        &r.content,
        &StoredJson(&r.metadata),
        &embedding,
        &r.created_at.as_micros(),
        &r.updated_at.as_micros(),
        &as_tenant,
    ];
    let statements = (sql::insert_resource(schema), sql::insert_resource_as_tenant(schema));
    insert_rows(conn, statements, &params, as_tenant, ("resource", r.id)).await
}

pub(crate) async fn get_resource(
    conn: &PgConn,
    schema: &SchemaName,
    id: ResourceId,
) -> Result<Option<Resource>> {
    get_row(conn, sql::select_resource(schema), id.as_uuid(), resource_from_row).await
}

/// Replaces a resource, keeping `created_at`; `None` when it does not exist. With `tail`, its
/// embedding goes to the tail (`sql::tail`).
pub(crate) async fn update_resource(
    conn: &PgConn,
    schema: &SchemaName,
    r: &Resource,
    tail: bool,
) -> Result<Option<Resource>> {
    let embedding = r.embedding.clone().map(Vector::from);
    let statement = match tail {
        true => sql::update_resource_through_tail(schema),
        false => sql::update_resource(schema),
    };
    let params: [&(dyn ToSql + Sync); 6] = [
        &r.id.as_uuid(),
        &r.uri,
        &r.content,
        &StoredJson(&r.metadata),
        &embedding,
        &r.updated_at.as_micros(),
    ];
    let created = update_row(conn, statement, &params, "resource row").await?;
    Ok(created.map(|created_at| Resource { created_at, ..r.clone() }))
}

/// Deletes a resource; whether it existed. With `tail`, its tail row too; its graph entry is
/// left to [`forget_unembedded`] (see `sql::tail`).
pub(crate) async fn delete_resource(
    conn: &PgConn,
    schema: &SchemaName,
    id: ResourceId,
    tail: bool,
) -> Result<bool> {
    if !tail {
        return delete_row(conn, sql::delete_resource(schema), id.as_uuid()).await;
    }
    let row = conn.query_opt(&sql::delete_resource_through_tail(schema), &[&id.as_uuid()]).await?;
    let deleted: i64 = row
        .ok_or_else(|| Error::corrupt("deleted resources", "no row"))?
        .try_get(0)
        .map_err(|e| Error::corrupt("deleted resources", e))?;
    Ok(deleted > 0)
}

/// Deletes the tail rows and graph entries of the resources `ids` that are gone or have no
/// embedding ([`sql::forget_unembedded`]).
pub(crate) async fn forget_unembedded(
    conn: &PgConn,
    schema: &SchemaName,
    ids: &[Uuid],
) -> Result<()> {
    conn.execute(&sql::forget_unembedded(schema), &[&ids]).await.map(drop)
}

/// Inserts an entity: in the connection's transaction, or `as_tenant` as [`insert_resources`].
pub(crate) async fn insert_entity(
    conn: &PgConn,
    schema: &SchemaName,
    e: &Entity,
    as_tenant: Option<&str>,
) -> Result<()> {
    let params: [&(dyn ToSql + Sync); 8] = [
        &e.id.as_uuid(),
        &e.name,
        &e.kind,
        &words(&e.name),
        &StoredJson(&e.properties),
        &e.created_at.as_micros(),
        &e.updated_at.as_micros(),
        &as_tenant,
    ];
    let statements = (sql::insert_entity(schema), sql::insert_entity_as_tenant(schema));
    insert_rows(conn, statements, &params, as_tenant, ("entity", e.id)).await
}

pub(crate) async fn get_entity(
    conn: &PgConn,
    schema: &SchemaName,
    id: EntityId,
) -> Result<Option<Entity>> {
    get_row(conn, sql::select_entity(schema), id.as_uuid(), entity_from_row).await
}

pub(crate) async fn entity_exists(
    conn: &PgConn,
    schema: &SchemaName,
    id: EntityId,
) -> Result<bool> {
    Ok(conn.query_opt(&sql::entity_exists(schema), &[&id.as_uuid()]).await?.is_some())
}

pub(crate) async fn update_entity(
    conn: &PgConn,
    schema: &SchemaName,
    e: &Entity,
) -> Result<Option<Entity>> {
    let params: [&(dyn ToSql + Sync); 6] = [
        &e.id.as_uuid(),
        &e.name,
        &e.kind,
        &words(&e.name),
        &StoredJson(&e.properties),
        &e.updated_at.as_micros(),
    ];
    let created = update_row(conn, sql::update_entity(schema), &params, "entity row").await?;
    Ok(created.map(|created_at| Entity { created_at, ..e.clone() }))
}

pub(crate) async fn delete_entity(
    conn: &PgConn,
    schema: &SchemaName,
    id: EntityId,
) -> Result<bool> {
    delete_row(conn, sql::delete_entity(schema), id.as_uuid()).await
}

/// Inserts an edge after locking its endpoints (`FOR KEY SHARE`): a concurrent delete of an
/// endpoint then either waits for this transaction or fails it with a serialization failure,
/// and a missing endpoint is reported as [`Error::NotFound`] naming it.
pub(crate) async fn insert_edge(conn: &PgConn, schema: &SchemaName, edge: &Edge) -> Result<()> {
    let ends = [edge.from.as_uuid(), edge.to.as_uuid()];
    let found = conn.query(&sql::lock_entities(schema), &[&&ends[..]]).await?;
    let found: Vec<Uuid> = found.iter().filter_map(|row| row.try_get(0).ok()).collect();
    for end in [edge.from, edge.to] {
        if !found.contains(&end.as_uuid()) {
            return Err(Error::not_found("entity", end));
        }
    }
    conn.execute(
        &sql::insert_edge(schema),
        &[
            &edge.id.as_uuid(),
            &edge.from.as_uuid(),
            &edge.to.as_uuid(),
            &edge.relation,
            &edge.weight,
            &StoredJson(&edge.properties),
            &edge.created_at.as_micros(),
        ],
    )
    .await
    .map(drop)
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            Error::Conflict(format!("an endpoint of edge {} was deleted concurrently", edge.id))
        } else {
            insert_error("edge", edge.id)(e)
        }
    })
}

/// Inserts an edge as `tenant` in one statement of its own (`sql::AS_TENANT`; the connection
/// must have no transaction open). The foreign key checks lock the endpoints (a concurrent
/// delete of either waits for the insert, or the insert sees it gone); a missing endpoint is
/// [`Error::NotFound`] naming it.
pub(crate) async fn insert_edge_as_tenant(
    conn: &PgConn,
    schema: &SchemaName,
    edge: &Edge,
    tenant: &str,
) -> Result<()> {
    let params: [&(dyn ToSql + Sync); 8] = [
        &edge.id.as_uuid(),
        &edge.from.as_uuid(),
        &edge.to.as_uuid(),
        &edge.relation,
        &edge.weight,
        &StoredJson(&edge.properties),
        &edge.created_at.as_micros(),
        &tenant,
    ];
    conn.execute(&sql::insert_edge_as_tenant(schema), &params).await.map(drop).map_err(|e| {
        if is_foreign_key_violation(&e) {
            // `Key (from_id)=(...) is not present in table "entities".`
            let missing = violating_key(&e)
                .and_then(|key| key.parse::<Uuid>().ok())
                .map(EntityId::from)
                .unwrap_or(edge.from);
            Error::not_found("entity", missing)
        } else {
            insert_error("edge", edge.id)(e)
        }
    })
}

pub(crate) async fn get_edge(
    conn: &PgConn,
    schema: &SchemaName,
    id: EdgeId,
) -> Result<Option<Edge>> {
    get_row(conn, sql::select_edge(schema), id.as_uuid(), edge_from_row).await
}

/// The stored edges of `entity` (which the caller checked exists), by id.
pub(crate) async fn get_edges(
    conn: &PgConn,
    schema: &SchemaName,
    entity: EntityId,
    direction: Direction,
    relation: Option<&str>,
) -> Result<Vec<Edge>> {
    let (out, incoming) = sides(direction);
    conn.query(&sql::select_edges(schema, out, incoming), &[&entity.as_uuid(), &relation])
        .await?
        .iter()
        .map(edge_from_row)
        .collect()
}

pub(crate) fn sides(direction: Direction) -> (bool, bool) {
    match direction {
        Direction::Out => (true, false),
        Direction::In => (false, true),
        Direction::Both => (true, true),
    }
}

pub(crate) async fn delete_edge(conn: &PgConn, schema: &SchemaName, id: EdgeId) -> Result<bool> {
    delete_row(conn, sql::delete_edge(schema), id.as_uuid()).await
}

fn moment_params(m: &Moment) -> (Uuid, i64, i64, Vec<Uuid>) {
    (
        m.id.as_uuid(),
        m.start.as_micros(),
        m.end.as_micros(),
        m.entities.iter().map(EntityId::as_uuid).collect(),
    )
}

/// Inserts a moment: in the connection's transaction, or `as_tenant` as [`insert_resources`].
pub(crate) async fn insert_moment(
    conn: &PgConn,
    schema: &SchemaName,
    m: &Moment,
    as_tenant: Option<&str>,
) -> Result<()> {
    let (id, start, end, entities) = moment_params(m);
    let metadata = StoredJson(&m.metadata);
    let params: [&(dyn ToSql + Sync); 8] =
        [&id, &start, &end, &m.kind, &m.content, &entities, &metadata, &as_tenant];
    let statements = (sql::insert_moment(schema), sql::insert_moment_as_tenant(schema));
    insert_rows(conn, statements, &params, as_tenant, ("moment", m.id)).await
}

pub(crate) async fn get_moment(
    conn: &PgConn,
    schema: &SchemaName,
    id: MomentId,
) -> Result<Option<Moment>> {
    get_row(conn, sql::select_moment(schema), id.as_uuid(), moment_from_row).await
}

/// Replaces a moment; whether it existed.
pub(crate) async fn update_moment(conn: &PgConn, schema: &SchemaName, m: &Moment) -> Result<bool> {
    let (id, start, end, entities) = moment_params(m);
    let changed = conn
        .execute(
            &sql::update_moment(schema),
            &[&id, &start, &end, &m.kind, &m.content, &entities, &StoredJson(&m.metadata)],
        )
        .await?;
    Ok(changed > 0)
}

pub(crate) async fn delete_moment(
    conn: &PgConn,
    schema: &SchemaName,
    id: MomentId,
) -> Result<bool> {
    delete_row(conn, sql::delete_moment(schema), id.as_uuid()).await
}
