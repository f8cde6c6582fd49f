//! Batch writes of entities, edges and moments on a [`TenantHandle`]: one atomic provider call
//! per batch, each record checked by `validate` exactly as the single calls check it. Owns no
//! rule of its own beyond the batch's size; it must not reach storage but through the provider.
//!
//! Design decisions:
//! - **All or nothing.** Every record is checked before anything is written, and the provider
//!   stores the batch in one atomic write: a bad record anywhere leaves the tenant as it was.
//! - **One kind per batch.** An edge batch joins entities that are stored when it is written
//!   (created by an earlier call, such as [`TenantHandle::batch_create_entities`]); it cannot
//!   refer to entities of the same call, because a call holds one kind. Loading a graph is
//!   two calls: the entities, then the edges.
//! - **An empty batch is a no-op** and succeeds without reaching the provider; a batch over
//!   [`MAX_BATCH`] records is [`Error::Invalid`].

#[allow(unused_imports)]
use super::*;

/// Checks a batch's size; `false` when it is empty (nothing to write).
fn batch_len(len: usize) -> Result<bool> {
    if len > MAX_BATCH {
        return Err(Error::invalid(
            "batch",
            format!("{len} records (must be at most {MAX_BATCH})"),
        ));
    }
    Ok(len > 0)
}

/// Runs `check` on every record; an error names the record's index when the batch holds
/// more than one.
fn check_each<T>(records: &[T], check: impl Fn(&T) -> Result<()>) -> Result<()> {
    for (index, record) in records.iter().enumerate() {
        check(record).map_err(|e| if records.len() > 1 { at_index(e, index) } else { e })?;
    }
    Ok(())
}

impl<P: Provider> TenantHandle<P> {
    /// Creates many entities in one atomic write; returns them with their ids and timestamps,
    /// in the order given.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad entity (by index), or for more than
    /// [`MAX_BATCH`] entities; nothing is written then.
    pub async fn batch_create_entities(&self, batch: Vec<NewEntity>) -> Result<Vec<Entity>> {
        let now = Timestamp::now();
        let entities: Vec<Entity> = batch.into_iter().map(|new| entity_from(new, now)).collect();
        self.insert_entities(&entities).await?;
        Ok(entities)
    }

    /// Stores entities exactly as given (ids and timestamps included), atomically: the import
    /// path.
    ///
    /// # Errors
    /// As [`TenantHandle::batch_create_entities`], and [`Error::AlreadyExists`] naming the id
    /// if an id is taken or repeated.
    pub async fn insert_entities(&self, entities: &[Entity]) -> Result<()> {
        if !batch_len(entities.len())? {
            return Ok(());
        }
        check_each(entities, |entity| check_entity(entity, &self.limits))?;
        self.provider.insert_entities(&self.tenant, entities).await
    }

    /// Creates many edges in one atomic write; returns them with their ids and timestamps, in
    /// the order given. Every endpoint must be stored before the call (see the module docs).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad edge (by index); [`Error::NotFound`] naming a
    /// missing endpoint; [`Error::Conflict`] if an endpoint is deleted concurrently. Nothing
    /// is written then.
    pub async fn batch_create_edges(&self, batch: Vec<NewEdge>) -> Result<Vec<Edge>> {
        let now = Timestamp::now();
        let edges: Vec<Edge> = batch.into_iter().map(|new| edge_from(new, now)).collect();
        self.insert_edges(&edges).await?;
        Ok(edges)
    }

    /// Stores edges exactly as given, atomically: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::batch_create_edges`], and [`Error::AlreadyExists`] naming the id if
    /// an id is taken or repeated.
    pub async fn insert_edges(&self, edges: &[Edge]) -> Result<()> {
        if !batch_len(edges.len())? {
            return Ok(());
        }
        check_each(edges, |edge| check_edge(edge, &self.limits))?;
        self.provider.insert_edges(&self.tenant, edges).await
    }

    /// Creates many moments in one atomic write; returns them with their ids, in the order
    /// given.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad moment (by index), such as one that ends before
    /// it starts; nothing is written then.
    pub async fn batch_create_moments(&self, batch: Vec<NewMoment>) -> Result<Vec<Moment>> {
        let moments: Vec<Moment> = batch.into_iter().map(moment_from).collect();
        self.insert_moments(&moments).await?;
        Ok(moments)
    }

    /// Stores moments exactly as given, atomically: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::batch_create_moments`], and [`Error::AlreadyExists`] naming the id if
    /// an id is taken or repeated.
    pub async fn insert_moments(&self, moments: &[Moment]) -> Result<()> {
        if !batch_len(moments.len())? {
            return Ok(());
        }
        check_each(moments, |moment| check_moment(moment, &self.limits))?;
        self.provider.insert_moments(&self.tenant, moments).await
    }
}
