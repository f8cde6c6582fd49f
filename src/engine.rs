//! [`MemoryEngine`], the user-facing entry point, and [`TenantHandle`], the only door to a
//! tenant's records.
//!
//! Design decisions:
//! - **Validation lives here, once.** Providers receive only well-formed records and queries, so
//!   every provider rejects the same inputs with the same [`Error::Invalid`] message, and no
//!   malformed value ever reaches storage.
//! - **A handle is bound to one tenant.** A [`TenantHandle`] owns the provider's opened tenant;
//!   nothing reachable from it names another tenant, so code holding A's handle cannot touch B.
//! - **Ids and timestamps are assigned here**: UUIDv7 ids, microsecond timestamps.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, MAX_DEPTH, MAX_DIMENSION, MAX_K,
    Metadata, Moment, MomentId, NewEdge, NewEntity, NewMoment, NewResource, Reached, Record,
    RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId,
    TimeRange, Timestamp, TraverseQuery,
};
use crate::provider::{Provider, Txn};

/// The largest resource or moment content accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 16 << 20;
/// The largest name, kind, relation or uri accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The most records one batch or scan page may hold.
pub const MAX_BATCH: usize = 100_000;

/// The storage engine: a provider, chosen at compile time, behind one validated API.
///
/// ```
/// # #[cfg(feature = "rocksdb")]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use percolate::{MemoryEngine, NewResource, SearchQuery, TenantConfig, TenantId};
/// use percolate::rocks::{RocksConfig, RocksProvider};
///
/// let dir = tempfile::tempdir().expect("temp dir");
/// let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path()))?);
/// let acme = engine.create_tenant(&TenantId::new("acme")?, TenantConfig::default()).await?;
/// acme.create_resource(NewResource::new("hello").with_embedding(vec![1.0, 0.0])).await?;
/// let hits = acme.search_resources(&SearchQuery::new(vec![0.9, 0.1], 1)).await?;
/// assert_eq!(hits[0].resource.content, "hello");
/// # Ok::<(), percolate::Error>(())
/// # }).unwrap();
/// ```
pub struct MemoryEngine<P: Provider> {
    provider: Arc<P>,
}

impl<P: Provider> Clone for MemoryEngine<P> {
    fn clone(&self) -> Self {
        Self { provider: Arc::clone(&self.provider) }
    }
}

impl<P: Provider> MemoryEngine<P> {
    /// An engine over `provider`.
    pub fn new(provider: P) -> Self {
        Self { provider: Arc::new(provider) }
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Creates a tenant and returns its handle.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad dimension; [`Error::AlreadyExists`] if it exists.
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        config: TenantConfig,
    ) -> Result<TenantHandle<P>> {
        if let Some(dimension) = config.dimension {
            check_dimension(dimension as usize)?;
        }
        self.provider.create_tenant(id, &config).await?;
        self.tenant(id).await
    }

    /// The handle of an existing tenant.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist.
    pub async fn tenant(&self, id: &TenantId) -> Result<TenantHandle<P>> {
        let tenant = self.provider.open_tenant(id).await?;
        Ok(TenantHandle { provider: Arc::clone(&self.provider), tenant })
    }

    /// The tenants that exist, sorted.
    ///
    /// # Errors
    /// [`Error::Backend`] on storage failure.
    pub async fn list_tenants(&self) -> Result<Vec<TenantId>> {
        self.provider.list_tenants().await
    }

    /// Deletes a tenant and all its records.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist; [`Error::Conflict`] if the provider cannot
    /// delete it while handles to it are open.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        self.provider.delete_tenant(id).await
    }
}

/// A handle on one tenant: every record operation, validated. Cheap to clone; `'static`, so
/// it can move into spawned tasks.
pub struct TenantHandle<P: Provider> {
    provider: Arc<P>,
    tenant: P::Tenant,
}

impl<P: Provider> std::fmt::Debug for TenantHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandle")
            .field("provider", &P::NAME)
            .field("tenant", self.id())
            .finish()
    }
}

impl<P: Provider> std::fmt::Debug for MemoryEngine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine").field("provider", &P::NAME).finish()
    }
}

impl<P: Provider> Clone for TenantHandle<P> {
    fn clone(&self) -> Self {
        Self { provider: Arc::clone(&self.provider), tenant: self.tenant.clone() }
    }
}

impl<P: Provider> TenantHandle<P> {
    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        P::tenant_id(&self.tenant)
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The provider's opened tenant, for provider-specific calls (diagnostics, benches).
    pub fn provider_tenant(&self) -> &P::Tenant {
        &self.tenant
    }

    /// The tenant's configuration.
    ///
    /// # Errors
    /// [`Error::Backend`] on storage failure.
    pub async fn config(&self) -> Result<TenantConfig> {
        self.provider.tenant_config(&self.tenant).await
    }

    /// The tenant's dimension after `embedding` is accounted for: fixed by the tenant's
    /// configuration, by an earlier embedding, or now by this one.
    async fn dimension_for(&self, known: Option<u32>, embedding: &[f32]) -> Result<u32> {
        match known {
            Some(dimension) => Ok(dimension),
            None => match self.provider.tenant_config(&self.tenant).await?.dimension {
                Some(dimension) => Ok(dimension),
                // Bounded by MAX_DIMENSION (checked first), so the cast is lossless.
                None => self.provider.fix_dimension(&self.tenant, embedding.len() as u32).await,
            },
        }
    }

    /// Validates resources; looks the tenant's dimension up once for the whole slice.
    async fn check_resources(&self, resources: &[Resource]) -> Result<()> {
        let mut dimension = None;
        for (index, resource) in resources.iter().enumerate() {
            let located = |e| if resources.len() > 1 { at_index(e, index) } else { e };
            check_resource_fields(resource).map_err(located)?;
            let Some(embedding) = resource.embedding.as_deref() else { continue };
            check_vector("embedding", embedding).map_err(located)?;
            let fixed = self.dimension_for(dimension, embedding).await?;
            dimension = Some(fixed);
            if embedding.len() != fixed as usize {
                return Err(located(Error::invalid(
                    "embedding",
                    format!("dimension {} but the tenant's is {fixed}", embedding.len()),
                )));
            }
        }
        Ok(())
    }

    async fn check_resource(&self, resource: &Resource) -> Result<()> {
        self.check_resources(std::slice::from_ref(resource)).await
    }

    /// Creates a resource; returns it with its id and timestamps.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields, a non-finite embedding or the wrong dimension.
    pub async fn create_resource(&self, new: NewResource) -> Result<Resource> {
        let resource = resource_from(new, Timestamp::now());
        self.check_resource(&resource).await?;
        self.provider.create_resources(&self.tenant, std::slice::from_ref(&resource)).await?;
        Ok(resource)
    }

    /// Creates many resources in one atomic write; all are searchable when it returns.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad resource (by index); nothing is written then.
    pub async fn batch_create_resources(&self, batch: Vec<NewResource>) -> Result<Vec<Resource>> {
        check_batch_len(batch.len())?;
        let now = Timestamp::now();
        let resources: Vec<Resource> =
            batch.into_iter().map(|new| resource_from(new, now)).collect();
        self.check_resources(&resources).await?;
        self.provider.create_resources(&self.tenant, &resources).await?;
        Ok(resources)
    }

    /// Stores resources exactly as given (ids and timestamps included), atomically: the import
    /// path.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::AlreadyExists`] if an id is taken.
    pub async fn insert_resources(&self, resources: &[Resource]) -> Result<()> {
        check_batch_len(resources.len())?;
        self.check_resources(resources).await?;
        self.provider.insert_resources(&self.tenant, resources).await
    }

    /// The resource with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none in this tenant.
    pub async fn get_resource(&self, id: ResourceId) -> Result<Resource> {
        self.provider.get_resource(&self.tenant, id).await
    }

    /// Replaces a resource's fields (by its id), stamping `updated_at`; returns what is stored.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::NotFound`] if there is none.
    pub async fn update_resource(&self, mut resource: Resource) -> Result<Resource> {
        resource.updated_at = Timestamp::now();
        self.check_resource(&resource).await?;
        self.provider.update_resource(&self.tenant, &resource).await
    }

    /// Deletes a resource.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_resource(&self, id: ResourceId) -> Result<()> {
        self.provider.delete_resource(&self.tenant, id).await
    }

    /// Creates an entity.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or oversized name or kind.
    pub async fn create_entity(&self, new: NewEntity) -> Result<Entity> {
        let entity = entity_from(new, Timestamp::now());
        check_entity(&entity)?;
        self.provider.insert_entity(&self.tenant, &entity).await?;
        Ok(entity)
    }

    /// Stores an entity exactly as given: the import path.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_entity(&self, entity: &Entity) -> Result<()> {
        check_entity(entity)?;
        self.provider.insert_entity(&self.tenant, entity).await
    }

    /// The entity with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_entity(&self, id: EntityId) -> Result<Entity> {
        self.provider.get_entity(&self.tenant, id).await
    }

    /// Replaces an entity's fields, stamping `updated_at`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::NotFound`] if there is none.
    pub async fn update_entity(&self, mut entity: Entity) -> Result<Entity> {
        entity.updated_at = Timestamp::now();
        check_entity(&entity)?;
        self.provider.update_entity(&self.tenant, &entity).await
    }

    /// Deletes an entity and every edge that touches it, atomically.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_entity(&self, id: EntityId) -> Result<()> {
        self.provider.delete_entity(&self.tenant, id).await
    }

    /// Creates an edge between two existing entities.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad relation or weight; [`Error::NotFound`] for a missing end.
    pub async fn create_edge(&self, new: NewEdge) -> Result<Edge> {
        let edge = edge_from(new, Timestamp::now());
        check_edge(&edge)?;
        self.provider.insert_edge(&self.tenant, &edge).await?;
        Ok(edge)
    }

    /// Stores an edge exactly as given: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::create_edge`], and [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_edge(&self, edge: &Edge) -> Result<()> {
        check_edge(edge)?;
        self.provider.insert_edge(&self.tenant, edge).await
    }

    /// The edge with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_edge(&self, id: EdgeId) -> Result<Edge> {
        self.provider.get_edge(&self.tenant, id).await
    }

    /// The edges of an entity in `direction`, optionally only of `relation`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the entity does not exist.
    pub async fn get_edges(
        &self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        if let Some(relation) = relation {
            check_name("relation", relation)?;
        }
        self.provider.get_edges(&self.tenant, entity, direction, relation).await
    }

    /// Deletes an edge.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_edge(&self, id: EdgeId) -> Result<()> {
        self.provider.delete_edge(&self.tenant, id).await
    }

    /// Creates a moment.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it ends before it starts or has an empty kind.
    pub async fn create_moment(&self, new: NewMoment) -> Result<Moment> {
        let moment = moment_from(new);
        check_moment(&moment)?;
        self.provider.insert_moment(&self.tenant, &moment).await?;
        Ok(moment)
    }

    /// Stores a moment exactly as given: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::create_moment`], and [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_moment(&self, moment: &Moment) -> Result<()> {
        check_moment(moment)?;
        self.provider.insert_moment(&self.tenant, moment).await
    }

    /// The moment with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn get_moment(&self, id: MomentId) -> Result<Moment> {
        self.provider.get_moment(&self.tenant, id).await
    }

    /// Replaces a moment.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::NotFound`] if there is none.
    pub async fn update_moment(&self, moment: Moment) -> Result<Moment> {
        check_moment(&moment)?;
        self.provider.update_moment(&self.tenant, &moment).await
    }

    /// Deletes a moment.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none.
    pub async fn delete_moment(&self, id: MomentId) -> Result<()> {
        self.provider.delete_moment(&self.tenant, id).await
    }

    /// The `k` nearest resources to the query vector that match its filter.
    ///
    /// # Errors
    /// [`Error::Invalid`] for `k` outside `1..=MAX_K`, a non-finite vector or the wrong
    /// dimension.
    pub async fn search_resources(&self, query: &SearchQuery) -> Result<Vec<ScoredResource>> {
        if query.k == 0 || query.k > MAX_K {
            return Err(Error::invalid("k", format!("{} (must be 1..={MAX_K})", query.k)));
        }
        check_vector("query vector", &query.vector)?;
        if let Some(filter) = &query.filter
            && json_has_nul(&filter.to_json())
        {
            return Err(Error::invalid("filter", "a NUL character in a key or string"));
        }
        match self.provider.tenant_config(&self.tenant).await?.dimension {
            // No embedding was ever stored: nothing can match.
            None => Ok(Vec::new()),
            Some(dimension) if dimension as usize != query.vector.len() => Err(Error::invalid(
                "query vector",
                format!("dimension {} but the tenant's is {dimension}", query.vector.len()),
            )),
            Some(_) => self.provider.search_resources(&self.tenant, query).await,
        }
    }

    /// Entities whose names match the query.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a limit outside `1..=MAX_K` or an oversized query.
    pub async fn search_entities(&self, query: &EntityQuery) -> Result<Vec<Entity>> {
        if query.limit == 0 || query.limit > MAX_K {
            return Err(Error::invalid("limit", format!("{} (must be 1..={MAX_K})", query.limit)));
        }
        if query.text.len() > MAX_NAME_BYTES {
            return Err(Error::invalid(
                "query text",
                format!("longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        check_no_nul("query text", &query.text)?;
        if let Some(filter) = &query.properties
            && json_has_nul(&filter.to_json())
        {
            return Err(Error::invalid("filter", "a NUL character in a key or string"));
        }
        if let Some(kind) = &query.kind {
            check_name("kind", kind)?;
        }
        self.provider.search_entities(&self.tenant, query).await
    }

    /// Breadth-first traversal from an entity.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a depth outside `1..=MAX_DEPTH` or an empty relation;
    /// [`Error::NotFound`] if the start does not exist.
    pub async fn traverse(&self, query: &TraverseQuery) -> Result<Vec<Reached>> {
        if query.depth == 0 || query.depth > MAX_DEPTH {
            return Err(Error::invalid(
                "depth",
                format!("{} (must be 1..={MAX_DEPTH})", query.depth),
            ));
        }
        for relation in &query.relations {
            check_name("relation", relation)?;
        }
        self.provider.traverse(&self.tenant, query).await
    }

    /// Moments overlapping `range`, ordered by start.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the range ends before it starts.
    pub async fn moments_in_range(&self, range: &TimeRange) -> Result<Vec<Moment>> {
        if let (Some(start), Some(end)) = (range.start, range.end)
            && end < start
        {
            return Err(Error::invalid(
                "time range",
                format!("ends ({end}) before it starts ({start})"),
            ));
        }
        self.provider.moments_in_range(&self.tenant, range).await
    }

    /// A keyset page of records of `kind` after `after`, in id order.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a limit outside `1..=MAX_BATCH`.
    pub async fn scan(
        &self,
        kind: RecordKind,
        after: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        if limit == 0 || limit > MAX_BATCH {
            return Err(Error::invalid("limit", format!("{limit} (must be 1..={MAX_BATCH})")));
        }
        self.provider.scan(&self.tenant, kind, after, limit).await
    }

    /// Begins a transaction.
    ///
    /// # Errors
    /// [`Error::Backend`] on storage failure.
    pub async fn begin(&self) -> Result<EngineTxn<'_, P>> {
        let txn = self.provider.begin(&self.tenant).await?;
        Ok(EngineTxn { handle: self, txn })
    }
}

/// A validated transaction on one tenant; see [`Txn`] for its guarantees. Dropping it without
/// [`EngineTxn::commit`] rolls it back.
pub struct EngineTxn<'h, P: Provider> {
    handle: &'h TenantHandle<P>,
    txn: P::Txn<'h>,
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
        check_entity(&entity)?;
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
        check_entity(&entity)?;
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
        check_edge(&edge)?;
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
        if let Some(relation) = relation {
            check_name("relation", relation)?;
        }
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
        check_moment(&moment)?;
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
        check_moment(&moment)?;
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

fn resource_from(new: NewResource, now: Timestamp) -> Resource {
    Resource {
        id: ResourceId::new(),
        uri: new.uri,
        content: new.content,
        metadata: new.metadata,
        embedding: new.embedding,
        created_at: now,
        updated_at: now,
    }
}

fn entity_from(new: NewEntity, now: Timestamp) -> Entity {
    Entity {
        id: EntityId::new(),
        name: new.name,
        kind: new.kind,
        properties: new.properties,
        created_at: now,
        updated_at: now,
    }
}

fn edge_from(new: NewEdge, now: Timestamp) -> Edge {
    Edge {
        id: EdgeId::new(),
        from: new.from,
        to: new.to,
        relation: new.relation,
        weight: new.weight,
        properties: new.properties,
        created_at: now,
    }
}

fn moment_from(new: NewMoment) -> Moment {
    Moment {
        id: MomentId::new(),
        start: new.start,
        end: new.end,
        kind: new.kind,
        content: new.content,
        entities: new.entities,
        metadata: new.metadata,
    }
}

fn at_index(error: Error, index: usize) -> Error {
    match error {
        Error::Invalid { what, reason } => {
            Error::Invalid { what, reason: format!("{reason} (at index {index})") }
        }
        other => other,
    }
}

fn check_batch_len(len: usize) -> Result<()> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::invalid("batch", format!("{len} records (must be 1..={MAX_BATCH})")));
    }
    Ok(())
}

fn check_dimension(dimension: usize) -> Result<()> {
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(Error::invalid(
            "dimension",
            format!("{dimension} (must be 1..={MAX_DIMENSION})"),
        ));
    }
    Ok(())
}

fn check_vector(what: &'static str, vector: &[f32]) -> Result<()> {
    check_dimension(vector.len()).map_err(|e| match e {
        Error::Invalid { reason, .. } => {
            Error::Invalid { what, reason: format!("dimension {reason}") }
        }
        other => other,
    })?;
    if all_finite(vector) {
        return Ok(());
    }
    let position = vector.iter().position(|x| !x.is_finite()).unwrap_or_default();
    Err(Error::invalid(what, format!("value at {position} is {}", vector[position])))
}

/// Whether every value is finite, in a form the compiler vectorises (an early-exit search is
/// scalar, and was a fifth of validating a batch of 1000 x 384-d embeddings): a value is NaN or
/// infinite exactly when its bits, less the sign, are at least those of infinity.
fn all_finite(vector: &[f32]) -> bool {
    const INFINITY: u32 = 0x7f80_0000;
    vector.chunks(64).all(|chunk| {
        chunk.iter().fold(0, |max: u32, x| max.max(x.to_bits() & !(1 << 31))) < INFINITY
    })
}

/// Text everywhere must be free of NUL: PostgreSQL cannot store it in `text` or `jsonb`, and a
/// record one provider accepts must move to every other one.
fn check_no_nul(what: &'static str, value: &str) -> Result<()> {
    match value.find('\0') {
        Some(at) => Err(Error::invalid(what, format!("a NUL character at byte {at}"))),
        None => Ok(()),
    }
}

/// Whether any key or string in `value` contains NUL.
pub(crate) fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(key, value)| key.contains('\0') || json_has_nul(value))
        }
        _ => false,
    }
}

fn check_name(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(what, "empty"));
    }
    check_no_nul(what, value)?;
    if value.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            what,
            format!("{} bytes, at most {MAX_NAME_BYTES}", value.len()),
        ));
    }
    Ok(())
}

fn check_content(what: &'static str, value: &str) -> Result<()> {
    check_no_nul(what, value)?;
    if value.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(
            what,
            format!("{} bytes, at most {MAX_CONTENT_BYTES}", value.len()),
        ));
    }
    Ok(())
}

fn check_metadata(what: &'static str, metadata: &Metadata) -> Result<()> {
    // Keys become filter paths; an empty key could never be addressed.
    if metadata.keys().any(String::is_empty) {
        return Err(Error::invalid(what, "empty key"));
    }
    if metadata.iter().any(|(key, value)| key.contains('\0') || json_has_nul(value)) {
        return Err(Error::invalid(what, "a NUL character in a key or string"));
    }
    Ok(())
}

fn check_resource_fields(resource: &Resource) -> Result<()> {
    if let Some(uri) = &resource.uri {
        check_name("uri", uri)?;
    }
    check_content("content", &resource.content)?;
    check_metadata("metadata", &resource.metadata)
}

fn check_entity(entity: &Entity) -> Result<()> {
    check_name("name", &entity.name)?;
    check_name("kind", &entity.kind)?;
    check_metadata("properties", &entity.properties)
}

fn check_edge(edge: &Edge) -> Result<()> {
    check_name("relation", &edge.relation)?;
    if !edge.weight.is_finite() {
        return Err(Error::invalid("weight", format!("{} is not finite", edge.weight)));
    }
    check_metadata("properties", &edge.properties)
}

fn check_moment(moment: &Moment) -> Result<()> {
    if moment.end < moment.start {
        return Err(Error::invalid(
            "moment",
            format!("ends ({}) before it starts ({})", moment.end, moment.start),
        ));
    }
    check_name("kind", &moment.kind)?;
    check_content("content", &moment.content)?;
    check_metadata("metadata", &moment.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_agrees_with_is_finite_at_every_position() {
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -0.0,
            1e-45,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffff_ffff),
        ];
        for len in [1, 63, 64, 65, 384] {
            for position in [0, len / 2, len - 1] {
                for special in specials {
                    let mut vector = vec![0.5f32; len];
                    vector[position] = special;
                    assert_eq!(all_finite(&vector), special.is_finite(), "{special} at {position}");
                    let error = check_vector("embedding", &vector);
                    assert_eq!(error.is_ok(), special.is_finite());
                }
            }
        }
    }
}
