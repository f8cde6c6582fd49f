//! [`MemTxn`]: a transaction of the [`super::MemProvider`]. It owns a transaction's private
//! view and what it must validate at commit; it must not touch the committed state except
//! through [`TenantCell::commit`].
//!
//! A transaction reads one snapshot, taken when it begins, with its own writes on top: its
//! view is the snapshot until its first write, then a private copy of it that every write of
//! the transaction is applied to. It keeps the writes and their footprint, and commit replays
//! the writes on the committed state if no key of the footprint changed since the snapshot.
//! Dropping it discards the view: rollback.

use std::collections::HashSet;
use std::sync::Arc;

use super::search;
use super::store::{Change, Key, State, Write};
use super::tenant::TenantCell;
use crate::error::Result;
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, Moment, MomentId, Resource, ResourceId,
};
use crate::provider::Txn;

/// A transaction of the [`super::MemProvider`] on one tenant.
pub struct MemTxn {
    open: OpenTransaction,
    /// The committed version the snapshot is of.
    began: u64,
    snapshot: Arc<State>,
    /// The snapshot with this transaction's writes applied, once it wrote.
    view: Option<State>,
    writes: Vec<Write>,
    footprint: HashSet<Key>,
}

/// Counts as an open transaction of its tenant until dropped (after commit, rollback, or
/// abandonment), so the tenant keeps key versions exactly while someone may validate them.
struct OpenTransaction(Arc<TenantCell>);

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl std::fmt::Debug for MemTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTxn")
            .field("tenant", &self.open.0.id)
            .field("began", &self.began)
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl MemTxn {
    pub(crate) fn begin(cell: Arc<TenantCell>) -> Result<Self> {
        let snapshot = cell.begin()?;
        Ok(Self {
            open: OpenTransaction(cell),
            began: snapshot.version,
            snapshot: snapshot.state,
            view: None,
            writes: Vec::new(),
            footprint: HashSet::new(),
        })
    }

    /// What this transaction reads: its snapshot with its own writes.
    fn state(&self) -> &State {
        self.view.as_ref().unwrap_or(&self.snapshot)
    }

    /// Plans an operation on this transaction's view and, if it succeeds, applies it there and
    /// keeps its writes and footprint for commit.
    fn change<T>(&mut self, plan: impl FnOnce(&State) -> Result<Change<T>>) -> Result<T> {
        let change = plan(self.state())?;
        let view = self.view.get_or_insert_with(|| State::clone(&self.snapshot));
        for write in &change.writes {
            view.apply(write);
        }
        self.writes.extend(change.writes);
        self.footprint.extend(change.footprint);
        Ok(change.value)
    }
}

impl Txn for MemTxn {
    async fn insert_resource(&mut self, resource: &Resource) -> Result<()> {
        self.change(|state| state.insert_resources(std::slice::from_ref(resource)))
    }
    async fn get_resource(&mut self, id: ResourceId) -> Result<Resource> {
        self.state().resource(id)
    }
    async fn update_resource(&mut self, resource: &Resource) -> Result<Resource> {
        self.change(|state| state.update_resource(resource))
    }
    async fn delete_resource(&mut self, id: ResourceId) -> Result<()> {
        self.change(|state| state.delete_resource(id))
    }
    async fn insert_entity(&mut self, entity: &Entity) -> Result<()> {
        self.change(|state| state.insert_entity(entity))
    }
    async fn get_entity(&mut self, id: EntityId) -> Result<Entity> {
        self.state().entity(id)
    }
    async fn update_entity(&mut self, entity: &Entity) -> Result<Entity> {
        self.change(|state| state.update_entity(entity))
    }
    async fn delete_entity(&mut self, id: EntityId) -> Result<()> {
        self.change(|state| state.delete_entity(id))
    }
    async fn insert_edge(&mut self, edge: &Edge) -> Result<()> {
        self.change(|state| state.insert_edge(edge))
    }
    async fn get_edge(&mut self, id: EdgeId) -> Result<Edge> {
        self.state().edge(id)
    }
    async fn get_edges(
        &mut self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        search::edges(self.state(), entity, direction, relation)
    }
    async fn delete_edge(&mut self, id: EdgeId) -> Result<()> {
        self.change(|state| state.delete_edge(id))
    }
    async fn insert_moment(&mut self, moment: &Moment) -> Result<()> {
        self.change(|state| state.insert_moment(moment))
    }
    async fn get_moment(&mut self, id: MomentId) -> Result<Moment> {
        self.state().moment(id)
    }
    async fn update_moment(&mut self, moment: &Moment) -> Result<Moment> {
        self.change(|state| state.update_moment(moment))
    }
    async fn delete_moment(&mut self, id: MomentId) -> Result<()> {
        self.change(|state| state.delete_moment(id))
    }

    async fn commit(self) -> Result<()> {
        self.open.0.commit(self.began, &self.footprint, &self.writes)
    }

    async fn rollback(self) -> Result<()> {
        // Dropping the view and the writes is the whole rollback.
        Ok(())
    }
}
