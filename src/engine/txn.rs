//! [`EngineTxn`]: a validated transaction on one tenant.

#[allow(unused_imports)]
use super::*;

/// A validated transaction on one tenant; see [`Txn`] for its guarantees. Dropping it without
/// [`EngineTxn::commit`] rolls it back.
pub struct EngineTxn<'h, P: Provider> {
    pub(super) handle: &'h TenantHandle<P>,
    pub(super) txn: P::Txn<'h>,
}

impl<'h, P: Provider> EngineTxn<'h, P> {
    /// Creates a resource in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::create_resource`].
    pub async fn create_resource(&mut self, new: NewResource) -> Result<Resource> {
        let resource = resource_from(new, Timestamp::now());
        self.handle.check_resource(&resource).await?;
        self.txn.insert_resource(&resource).await?;
        Ok(resource)
    }

    /// Reads a resource, seeing this transaction's writes.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_resource(&mut self, id: ResourceId) -> Result<Resource> {
        self.txn.get_resource(id).await
    }

    /// Replaces a resource in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::update_resource`].
    pub async fn update_resource(&mut self, mut resource: Resource) -> Result<Resource> {
        resource.updated_at = Timestamp::now();
        self.handle.check_resource(&resource).await?;
        self.txn.update_resource(&resource).await
    }

    /// Deletes a resource in the transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_resource(&mut self, id: ResourceId) -> Result<()> {
        self.txn.delete_resource(id).await
    }

    /// Creates an entity in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::create_entity`].
    pub async fn create_entity(&mut self, new: NewEntity) -> Result<Entity> {
        let entity = entity_from(new, Timestamp::now());
        check_entity(&entity, &self.handle.limits)?;
        self.txn.insert_entity(&entity).await?;
        Ok(entity)
    }

    /// Reads an entity, seeing this transaction's writes.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_entity(&mut self, id: EntityId) -> Result<Entity> {
        self.txn.get_entity(id).await
    }

    /// Replaces an entity in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::update_entity`].
    pub async fn update_entity(&mut self, mut entity: Entity) -> Result<Entity> {
        entity.updated_at = Timestamp::now();
        check_entity(&entity, &self.handle.limits)?;
        self.txn.update_entity(&entity).await
    }

    /// Deletes an entity and its edges in the transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_entity(&mut self, id: EntityId) -> Result<()> {
        self.txn.delete_entity(id).await
    }

    /// Creates an edge in the transaction; its ends may be entities created in it.
    ///
    /// # Errors
    /// As [`TenantHandle::create_edge`].
    pub async fn create_edge(&mut self, new: NewEdge) -> Result<Edge> {
        let edge = edge_from(new, Timestamp::now());
        check_edge(&edge, &self.handle.limits)?;
        self.txn.insert_edge(&edge).await?;
        Ok(edge)
    }

    /// Reads an edge, seeing this transaction's writes.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_edge(&mut self, id: EdgeId) -> Result<Edge> {
        self.txn.get_edge(id).await
    }

    /// The edges of an entity, seeing this transaction's writes.
    ///
    /// # Errors
    /// As [`TenantHandle::get_edges`].
    pub async fn get_edges(
        &mut self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        check_names("relation", relation)?;
        self.txn.get_edges(entity, direction, relation).await
    }

    /// Deletes an edge in the transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_edge(&mut self, id: EdgeId) -> Result<()> {
        self.txn.delete_edge(id).await
    }

    /// Creates a moment in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::create_moment`].
    pub async fn create_moment(&mut self, new: NewMoment) -> Result<Moment> {
        let moment = moment_from(new);
        check_moment(&moment, &self.handle.limits)?;
        self.txn.insert_moment(&moment).await?;
        Ok(moment)
    }

    /// Reads a moment, seeing this transaction's writes.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_moment(&mut self, id: MomentId) -> Result<Moment> {
        self.txn.get_moment(id).await
    }

    /// Replaces a moment in the transaction.
    ///
    /// # Errors
    /// As [`TenantHandle::update_moment`].
    pub async fn update_moment(&mut self, moment: Moment) -> Result<Moment> {
        check_moment(&moment, &self.handle.limits)?;
        self.txn.update_moment(&moment).await
    }

    /// Deletes a moment in the transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_moment(&mut self, id: MomentId) -> Result<()> {
        self.txn.delete_moment(id).await
    }

    /// Commits.
    ///
    /// # Errors
    /// [`Error::Conflict`] if a concurrent commit won; nothing of this transaction is kept.
    pub async fn commit(self) -> Result<()> {
        self.txn.commit().await
    }

    /// Rolls back.
    ///
    /// # Errors
    /// [`Error::Backend`] if the backend could not be told; the writes are discarded anyway.
    pub async fn rollback(self) -> Result<()> {
        self.txn.rollback().await
    }
}
