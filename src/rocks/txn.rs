//! [`RocksTxn`]: a RocksDB optimistic transaction that owns its tenant database.
//!
//! The RocksDB transaction borrows the database it runs on, and the database lives in an
//! `Arc<TenantDb>` shared with the tenant cache. `self_cell` ties the two together safely (no
//! `unsafe` in percolate), so a transaction can outlive the call that began it and move
//! between threads. Dropping a `RocksTxn` destroys the RocksDB transaction, which discards its
//! writes: rollback on drop.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use rocksdb::{OptimisticTransactionDB, Transaction};

use super::RocksProvider;
use super::store::{Ops, View, map_rocks_error};
use super::tenants::TenantDb;
use crate::error::{Error, Result};
use crate::index::VectorChange;
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, Moment, MomentId, Resource, ResourceId,
};
use crate::provider::Txn;

/// `None` once committed: `commit` consumes the RocksDB transaction.
type RocksTransaction<'a> = Option<Transaction<'a, OptimisticTransactionDB>>;

self_cell::self_cell!(
    struct TxnCell {
        owner: Arc<TenantDb>,
        #[covariant]
        dependent: RocksTransaction,
    }
);

/// A transaction of the [`RocksProvider`].
pub struct RocksTxn<'p> {
    cell: TxnCell,
    /// Embedding changes made so far, applied to the vector index on commit.
    changes: RefCell<Vec<VectorChange>>,
    _provider: PhantomData<&'p RocksProvider>,
}

impl RocksTxn<'_> {
    /// # Errors
    /// [`Error::ReadOnly`] in a reader.
    pub(crate) fn begin(tenant: Arc<TenantDb>) -> Result<Self> {
        Ok(Self {
            cell: TxnCell::try_new(tenant, |tenant| tenant.transaction().map(Some))?,
            changes: RefCell::new(Vec::new()),
            _provider: PhantomData,
        })
    }

    fn with<T>(&self, op: impl FnOnce(&Ops<'_>) -> Result<T>) -> Result<T> {
        self.cell.with_dependent(|tenant, txn| match txn {
            Some(txn) => op(&Ops { tenant, txn, changes: &self.changes }),
            None => Err(finished()),
        })
    }

    fn read<T>(&self, op: impl FnOnce(View<'_>) -> Result<T>) -> Result<T> {
        self.cell.with_dependent(|tenant, txn| match txn {
            Some(txn) => op(View::Txn(tenant, txn)),
            None => Err(finished()),
        })
    }
}

impl Txn for RocksTxn<'_> {
    async fn insert_resource(&mut self, resource: &Resource) -> Result<()> {
        self.with(|ops| ops.insert_resource(resource))
    }
    async fn get_resource(&mut self, id: ResourceId) -> Result<Resource> {
        self.read(|view| view.resource(id))
    }
    async fn update_resource(&mut self, resource: &Resource) -> Result<Resource> {
        self.with(|ops| ops.update_resource(resource))
    }
    async fn delete_resource(&mut self, id: ResourceId) -> Result<()> {
        self.with(|ops| ops.delete_resource(id))
    }
    async fn insert_entity(&mut self, entity: &Entity) -> Result<()> {
        self.with(|ops| ops.insert_entity(entity))
    }
    async fn get_entity(&mut self, id: EntityId) -> Result<Entity> {
        self.read(|view| view.entity(id))
    }
    async fn update_entity(&mut self, entity: &Entity) -> Result<Entity> {
        self.with(|ops| ops.update_entity(entity))
    }
    async fn delete_entity(&mut self, id: EntityId) -> Result<()> {
        self.with(|ops| ops.delete_entity(id))
    }
    async fn insert_edge(&mut self, edge: &Edge) -> Result<()> {
        self.with(|ops| ops.insert_edge(edge))
    }
    async fn get_edge(&mut self, id: EdgeId) -> Result<Edge> {
        self.read(|view| view.edge(id))
    }
    async fn get_edges(
        &mut self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        self.read(|view| view.edges(entity, direction, relation))
    }
    async fn delete_edge(&mut self, id: EdgeId) -> Result<()> {
        self.with(|ops| ops.delete_edge(id))
    }
    async fn insert_moment(&mut self, moment: &Moment) -> Result<()> {
        self.with(|ops| ops.insert_moment(moment))
    }
    async fn get_moment(&mut self, id: MomentId) -> Result<Moment> {
        self.read(|view| view.moment(id))
    }
    async fn update_moment(&mut self, moment: &Moment) -> Result<Moment> {
        self.with(|ops| ops.update_moment(moment))
    }
    async fn delete_moment(&mut self, id: MomentId) -> Result<()> {
        self.with(|ops| ops.delete_moment(id))
    }
    async fn commit(self) -> Result<()> {
        let mut cell = self.cell;
        let changes = self.changes.into_inner();
        cell.with_dependent_mut(|tenant, txn| match txn.take() {
            Some(txn) => {
                tenant.commit_with_vectors(changes, || txn.commit().map_err(map_rocks_error))
            }
            None => Err(finished()),
        })
    }
    async fn rollback(self) -> Result<()> {
        self.cell.with_dependent(|_, txn| match txn {
            Some(txn) => txn.rollback().map_err(map_rocks_error),
            None => Ok(()),
        })
    }
}

fn finished() -> Error {
    Error::invalid("transaction", "already committed")
}
