//! [`TenantHandle`]: every record operation on one tenant, validated before it reaches the
//! provider. Owns the tenant's cached dimension; the checks themselves are in `validate`.

#[allow(unused_imports)]
use super::*;

/// A handle on one tenant: every record operation, validated. Cheap to clone; `'static`, so
/// it can move into spawned tasks.
pub struct TenantHandle<P: Provider> {
    pub(super) provider: Arc<P>,
    pub(super) tenant: P::Tenant,
    pub(super) limits: Limits,
    /// The tenant's embedding dimension once known to be fixed: it never changes after that,
    /// so searches and writes stop asking the provider (a round trip on PostgreSQL).
    pub(super) dimension: Arc<std::sync::OnceLock<u32>>,
}

impl<P: Provider> std::fmt::Debug for TenantHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandle")
            .field("provider", &P::NAME)
            .field("tenant", self.id())
            .finish()
    }
}

impl<P: Provider> Clone for TenantHandle<P> {
    fn clone(&self) -> Self {
        Self {
            provider: Arc::clone(&self.provider),
            tenant: self.tenant.clone(),
            limits: self.limits,
            dimension: Arc::clone(&self.dimension),
        }
    }
}

impl<P: Provider> TenantHandle<P> {
    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        P::tenant_id(&self.tenant)
    }

    /// The provider. Calls made on it directly bypass the engine's validation.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The provider's opened tenant, for provider-specific calls (diagnostics, benches). Calls
    /// made with it directly bypass the engine's validation.
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
    async fn dimension_for(&self, embedding: &[f32]) -> Result<u32> {
        if let Some(dimension) = self.dimension.get() {
            return Ok(*dimension);
        }
        let dimension = match self.provider.tenant_config(&self.tenant).await?.dimension {
            Some(dimension) => dimension,
            // Bounded by MAX_DIMENSION (checked first), so the cast is lossless.
            None => self.provider.fix_dimension(&self.tenant, embedding.len() as u32).await?,
        };
        Ok(*self.dimension.get_or_init(|| dimension))
    }

    /// The tenant's dimension if it is fixed, from the cache once it is.
    async fn fixed_dimension(&self) -> Result<Option<u32>> {
        if let Some(dimension) = self.dimension.get() {
            return Ok(Some(*dimension));
        }
        let fixed = self.provider.tenant_config(&self.tenant).await?.dimension;
        Ok(fixed.map(|dimension| *self.dimension.get_or_init(|| dimension)))
    }

    /// Validates resources. Every field of every resource is checked, and the embeddings
    /// checked to agree with each other, before the tenant's dimension is fixed by the first
    /// of them: a batch rejected for any other reason leaves the dimension as it was.
    async fn check_resources(&self, resources: &[Resource]) -> Result<()> {
        let located =
            |index: usize| move |e| if resources.len() > 1 { at_index(e, index) } else { e };
        let mut first: Option<&[f32]> = None;
        for (index, resource) in resources.iter().enumerate() {
            check_resource_fields(resource, &self.limits).map_err(located(index))?;
            let Some(embedding) = resource.embedding.as_deref() else { continue };
            check_vector("embedding", embedding).map_err(located(index))?;
            match first {
                Some(first) if first.len() != embedding.len() => {
                    return Err(located(index)(Error::invalid(
                        "embedding",
                        format!("dimension {} but the batch's is {}", embedding.len(), first.len()),
                    )));
                }
                Some(_) => {}
                None => first = Some(embedding),
            }
        }
        let Some(first) = first else { return Ok(()) };
        let fixed = self.dimension_for(first).await?;
        if first.len() != fixed as usize {
            let index = resources.iter().position(|r| r.embedding.is_some()).unwrap_or_default();
            return Err(located(index)(Error::invalid(
                "embedding",
                format!("dimension {} but the tenant's is {fixed}", first.len()),
            )));
        }
        Ok(())
    }

    pub(super) async fn check_resource(&self, resource: &Resource) -> Result<()> {
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
        check_entity(&entity, &self.limits)?;
        self.provider.insert_entity(&self.tenant, &entity).await?;
        Ok(entity)
    }

    /// Stores an entity exactly as given: the import path.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad fields; [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_entity(&self, entity: &Entity) -> Result<()> {
        check_entity(entity, &self.limits)?;
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
        check_entity(&entity, &self.limits)?;
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
        check_edge(&edge, &self.limits)?;
        self.provider.insert_edge(&self.tenant, &edge).await?;
        Ok(edge)
    }

    /// Stores an edge exactly as given: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::create_edge`], and [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_edge(&self, edge: &Edge) -> Result<()> {
        check_edge(edge, &self.limits)?;
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
        check_names("relation", relation)?;
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
        check_moment(&moment, &self.limits)?;
        self.provider.insert_moment(&self.tenant, &moment).await?;
        Ok(moment)
    }

    /// Stores a moment exactly as given: the import path.
    ///
    /// # Errors
    /// As [`TenantHandle::create_moment`], and [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_moment(&self, moment: &Moment) -> Result<()> {
        check_moment(moment, &self.limits)?;
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
        check_moment(&moment, &self.limits)?;
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
    /// [`Error::Invalid`] for `k` outside `1..=MAX_K`, a non-finite vector, the wrong
    /// dimension, or a filter past its size limits ([`crate::Filter::check_limits`]).
    pub async fn search_resources(&self, query: &SearchQuery) -> Result<Vec<ScoredResource>> {
        if query.k == 0 || query.k > MAX_K {
            return Err(Error::invalid("k", format!("{} (must be 1..={MAX_K})", query.k)));
        }
        check_vector("query vector", &query.vector)?;
        if let Some(filter) = &query.filter {
            // First: the size check walks without recursion, `to_json` does not.
            filter.check_limits()?;
            if json_has_nul(&filter.to_json()) {
                return Err(Error::invalid("filter", "a NUL character in a key or string"));
            }
        }
        match self.fixed_dimension().await? {
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
    /// [`Error::Invalid`] for a limit outside `1..=MAX_K`, an oversized query, or a properties
    /// filter past its size limits ([`crate::Filter::check_limits`]).
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
        if let Some(filter) = &query.properties {
            filter.check_limits()?;
            if json_has_nul(&filter.to_json()) {
                return Err(Error::invalid("filter", "a NUL character in a key or string"));
            }
        }
        check_names("kind", query.kind.as_deref())?;
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
        check_names("relation", query.relations.iter().map(String::as_str))?;
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
