//! [`PgTxn`]: an optimistic transaction over a `REPEATABLE READ` PostgreSQL transaction.
//!
//! The contract says a conflicting transaction fails *at commit*. PostgreSQL's writes take row
//! locks at once, so two open transactions writing the same row would make the second writer
//! wait for the first to finish, which a task holding both (or a caller committing in the
//! other order) never does. So a `PgTxn` keeps its writes in memory until [`Txn::commit`]:
//! - `BEGIN ISOLATION LEVEL REPEATABLE READ` and the tenant setting run at [`PgTxn::begin`],
//!   which fixes the snapshot every read of the transaction sees;
//! - reads consult the transaction's own writes first, then that snapshot;
//! - commit replays the writes in order on the same transaction and commits. A row changed or
//!   deleted by a transaction that committed after the snapshot makes PostgreSQL raise a
//!   serialization failure (`40001`), mapped to [`Error::Conflict`]; so does an edge whose
//!   endpoint was deleted meanwhile (the foreign key check) and an entity deletion whose
//!   cascade meets an edge committed meanwhile. A replayed write finding its row gone, or its
//!   id taken, is a conflict too.
//!
//! The transaction owns its pooled connection ([`PgConn`]): dropping it without commit
//! detaches and closes the connection, so it never returns to the pool mid-transaction.

use std::collections::HashMap;

use super::conn::PgConn;
use super::tenant::SchemaName;
use super::{PgProvider, PgTenant, sql, store};
use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, Moment, MomentId, Resource, ResourceId,
};
use crate::provider::Txn;

/// A buffered write, replayed at commit.
enum Write {
    InsertResource(Resource),
    UpdateResource(Resource),
    DeleteResource(ResourceId),
    InsertEntity(Entity),
    UpdateEntity(Entity),
    DeleteEntity(EntityId),
    InsertEdge(Edge),
    DeleteEdge(EdgeId),
    InsertMoment(Moment),
    UpdateMoment(Moment),
    DeleteMoment(MomentId),
}

/// What this transaction has written: `Some` is the record as written, `None` deleted.
#[derive(Default)]
struct Overlay {
    resources: HashMap<ResourceId, Option<Resource>>,
    entities: HashMap<EntityId, Option<Entity>>,
    edges: HashMap<EdgeId, Option<Edge>>,
    moments: HashMap<MomentId, Option<Moment>>,
    log: Vec<Write>,
}

/// A transaction of the [`PgProvider`]: optimistic, its reads on one snapshot (see the
/// `postgres::txn` module comments for how it works).
pub struct PgTxn<'p> {
    conn: PgConn,
    tenant: PgTenant,
    overlay: Overlay,
    /// For the merge of the vector tail its resource writes feed, after commit.
    provider: &'p PgProvider,
}

impl<'p> PgTxn<'p> {
    pub(crate) async fn begin(
        provider: &'p PgProvider,
        mut conn: PgConn,
        tenant: PgTenant,
    ) -> Result<Self> {
        conn.begin(sql::BEGIN_REPEATABLE_READ, tenant.0.id.as_str()).await?;
        Ok(Self { conn, tenant, overlay: Overlay::default(), provider })
    }

    fn schema(&self) -> &SchemaName {
        &self.tenant.0.schema
    }

    async fn resource(&self, id: ResourceId) -> Result<Option<Resource>> {
        match self.overlay.resources.get(&id) {
            Some(written) => Ok(written.clone()),
            None => store::get_resource(&self.conn, self.schema(), id).await,
        }
    }

    async fn entity(&self, id: EntityId) -> Result<Option<Entity>> {
        match self.overlay.entities.get(&id) {
            Some(written) => Ok(written.clone()),
            None => store::get_entity(&self.conn, self.schema(), id).await,
        }
    }

    async fn edge(&self, id: EdgeId) -> Result<Option<Edge>> {
        match self.overlay.edges.get(&id) {
            Some(written) => Ok(written.clone()),
            None => store::get_edge(&self.conn, self.schema(), id).await,
        }
    }

    async fn moment(&self, id: MomentId) -> Result<Option<Moment>> {
        match self.overlay.moments.get(&id) {
            Some(written) => Ok(written.clone()),
            None => store::get_moment(&self.conn, self.schema(), id).await,
        }
    }

    async fn replay(&self) -> Result<()> {
        let (conn, schema, tail) = (&self.conn, self.schema(), self.tenant.0.tail);
        for write in &self.overlay.log {
            let applied = match write {
                Write::InsertResource(r) => {
                    store::insert_resource(conn, schema, r, None, tail).await.map(|()| true)
                }
                Write::UpdateResource(r) => {
                    store::update_resource(conn, schema, r, tail).await.map(|r| r.is_some())
                }
                // Its tail row and graph entry are forgotten after commit (see `sql::tail`).
                Write::DeleteResource(id) => store::delete_resource(conn, schema, *id, false).await,
                Write::InsertEntity(e) => {
                    store::insert_entity(conn, schema, e, None).await.map(|()| true)
                }
                Write::UpdateEntity(e) => {
                    store::update_entity(conn, schema, e).await.map(|e| e.is_some())
                }
                Write::DeleteEntity(id) => store::delete_entity(conn, schema, *id).await,
                Write::InsertEdge(e) => store::insert_edge(conn, schema, e).await.map(|()| true),
                Write::DeleteEdge(id) => store::delete_edge(conn, schema, *id).await,
                Write::InsertMoment(m) => {
                    store::insert_moment(conn, schema, m, None).await.map(|()| true)
                }
                Write::UpdateMoment(m) => store::update_moment(conn, schema, m).await,
                Write::DeleteMoment(id) => store::delete_moment(conn, schema, *id).await,
            };
            match applied {
                Ok(true) => {}
                // The snapshot said the row was there (or free); a concurrent commit changed
                // that after it was taken.
                Ok(false) | Err(Error::NotFound { .. }) | Err(Error::AlreadyExists { .. }) => {
                    return Err(Error::Conflict(
                        "a record this transaction wrote was changed by a concurrent commit"
                            .to_owned(),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Txn for PgTxn<'_> {
    async fn insert_resource(&mut self, resource: &Resource) -> Result<()> {
        if self.resource(resource.id).await?.is_some() {
            return Err(Error::already_exists("resource", resource.id));
        }
        self.overlay.resources.insert(resource.id, Some(resource.clone()));
        self.overlay.log.push(Write::InsertResource(resource.clone()));
        Ok(())
    }

    async fn get_resource(&mut self, id: ResourceId) -> Result<Resource> {
        self.resource(id).await?.ok_or_else(|| Error::not_found("resource", id))
    }

    async fn update_resource(&mut self, resource: &Resource) -> Result<Resource> {
        let old = self
            .resource(resource.id)
            .await?
            .ok_or_else(|| Error::not_found("resource", resource.id))?;
        let stored = Resource { created_at: old.created_at, ..resource.clone() };
        self.overlay.resources.insert(stored.id, Some(stored.clone()));
        self.overlay.log.push(Write::UpdateResource(stored.clone()));
        Ok(stored)
    }

    async fn delete_resource(&mut self, id: ResourceId) -> Result<()> {
        self.resource(id).await?.ok_or_else(|| Error::not_found("resource", id))?;
        self.overlay.resources.insert(id, None);
        self.overlay.log.push(Write::DeleteResource(id));
        Ok(())
    }

    async fn insert_entity(&mut self, entity: &Entity) -> Result<()> {
        if self.entity(entity.id).await?.is_some() {
            return Err(Error::already_exists("entity", entity.id));
        }
        self.overlay.entities.insert(entity.id, Some(entity.clone()));
        self.overlay.log.push(Write::InsertEntity(entity.clone()));
        Ok(())
    }

    async fn get_entity(&mut self, id: EntityId) -> Result<Entity> {
        self.entity(id).await?.ok_or_else(|| Error::not_found("entity", id))
    }

    async fn update_entity(&mut self, entity: &Entity) -> Result<Entity> {
        let old =
            self.entity(entity.id).await?.ok_or_else(|| Error::not_found("entity", entity.id))?;
        let stored = Entity { created_at: old.created_at, ..entity.clone() };
        self.overlay.entities.insert(stored.id, Some(stored.clone()));
        self.overlay.log.push(Write::UpdateEntity(stored.clone()));
        Ok(stored)
    }

    async fn delete_entity(&mut self, id: EntityId) -> Result<()> {
        self.entity(id).await?.ok_or_else(|| Error::not_found("entity", id))?;
        // Its edges go with it: those in the snapshot and those this transaction wrote. At
        // commit the foreign key cascade deletes the stored ones.
        let stored = store::get_edges(&self.conn, self.schema(), id, Direction::Both, None).await?;
        let written: Vec<EdgeId> = self
            .overlay
            .edges
            .iter()
            .filter_map(|(edge_id, edge)| {
                edge.as_ref().filter(|e| e.from == id || e.to == id).map(|_| *edge_id)
            })
            .collect();
        for edge in stored.iter().map(|e| e.id).chain(written) {
            self.overlay.edges.insert(edge, None);
        }
        self.overlay.entities.insert(id, None);
        self.overlay.log.push(Write::DeleteEntity(id));
        Ok(())
    }

    async fn insert_edge(&mut self, edge: &Edge) -> Result<()> {
        if self.edge(edge.id).await?.is_some() {
            return Err(Error::already_exists("edge", edge.id));
        }
        for end in [edge.from, edge.to] {
            if self.entity(end).await?.is_none() {
                return Err(Error::not_found("entity", end));
            }
        }
        self.overlay.edges.insert(edge.id, Some(edge.clone()));
        self.overlay.log.push(Write::InsertEdge(edge.clone()));
        Ok(())
    }

    async fn get_edge(&mut self, id: EdgeId) -> Result<Edge> {
        self.edge(id).await?.ok_or_else(|| Error::not_found("edge", id))
    }

    async fn get_edges(
        &mut self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        if self.entity(entity).await?.is_none() {
            return Err(Error::not_found("entity", entity));
        }
        let stored =
            store::get_edges(&self.conn, self.schema(), entity, direction, relation).await?;
        let (out, incoming) = store::sides(direction);
        let mut edges: Vec<Edge> =
            stored.into_iter().filter(|e| !self.overlay.edges.contains_key(&e.id)).collect();
        edges.extend(
            self.overlay
                .edges
                .values()
                .flatten()
                .filter(|e| {
                    ((out && e.from == entity) || (incoming && e.to == entity))
                        && relation.is_none_or(|r| e.relation == r)
                })
                .cloned(),
        );
        edges.sort_unstable_by_key(|e| e.id);
        Ok(edges)
    }

    async fn delete_edge(&mut self, id: EdgeId) -> Result<()> {
        self.edge(id).await?.ok_or_else(|| Error::not_found("edge", id))?;
        self.overlay.edges.insert(id, None);
        self.overlay.log.push(Write::DeleteEdge(id));
        Ok(())
    }

    async fn insert_moment(&mut self, moment: &Moment) -> Result<()> {
        if self.moment(moment.id).await?.is_some() {
            return Err(Error::already_exists("moment", moment.id));
        }
        self.overlay.moments.insert(moment.id, Some(moment.clone()));
        self.overlay.log.push(Write::InsertMoment(moment.clone()));
        Ok(())
    }

    async fn get_moment(&mut self, id: MomentId) -> Result<Moment> {
        self.moment(id).await?.ok_or_else(|| Error::not_found("moment", id))
    }

    async fn update_moment(&mut self, moment: &Moment) -> Result<Moment> {
        self.moment(moment.id).await?.ok_or_else(|| Error::not_found("moment", moment.id))?;
        self.overlay.moments.insert(moment.id, Some(moment.clone()));
        self.overlay.log.push(Write::UpdateMoment(moment.clone()));
        Ok(moment.clone())
    }

    async fn delete_moment(&mut self, id: MomentId) -> Result<()> {
        self.moment(id).await?.ok_or_else(|| Error::not_found("moment", id))?;
        self.overlay.moments.insert(id, None);
        self.overlay.log.push(Write::DeleteMoment(id));
        Ok(())
    }

    async fn commit(mut self) -> Result<()> {
        let result = self.replay().await;
        match result {
            Ok(()) => {
                self.conn.commit().await?;
                let unembedded: Vec<uuid::Uuid> = (self.overlay.log.iter())
                    .filter_map(|write| match write {
                        Write::DeleteResource(id) => Some(id.as_uuid()),
                        Write::UpdateResource(r) if r.embedding.is_none() => Some(r.id.as_uuid()),
                        _ => None,
                    })
                    .collect();
                // Committed: what follows only tidies up, and a failure leaves entries that
                // no search returns (see `sql::tail`).
                let _ = self.provider.forget_unembedded(&self.tenant, &unembedded).await;
                let embedded = self.overlay.resources.values().flatten();
                let embedded = embedded.filter(|r| r.embedding.is_some()).count();
                if embedded > 0 {
                    self.provider.merge_in_background(&self.tenant, embedded as u64);
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.rollback().await;
                Err(e)
            }
        }
    }

    async fn rollback(mut self) -> Result<()> {
        self.conn.rollback().await
    }
}
