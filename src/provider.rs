//! The contract every storage backend fulfils.
//!
//! A [`Provider`] stores the records of many tenants; every data operation names an opened
//! tenant ([`Provider::Tenant`]) obtained from [`Provider::open_tenant`], so an operation can
//! only ever reach the tenant it was given. Most users do not call a provider directly: they go
//! through [`crate::MemoryEngine`], which validates input once for every provider and hands
//! providers only well-formed records.
//!
//! # The contract
//! What every provider promises, checked by the conformance suite in `src/testing/`:
//! 1. **Tenants**: `create_tenant` fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) for an existing tenant,
//!    `open_tenant` with [`Error::NotFound`](crate::Error::NotFound) for a missing one; `delete_tenant` removes every
//!    record of the tenant; `list_tenants` lists each existing tenant once, sorted.
//! 2. **Isolation**: nothing written through one tenant is visible, searchable, traversable,
//!    changeable or deletable through another.
//! 3. **Records**: `insert_*` fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) when the id is taken;
//!    `get_*`, `update_*` and `delete_*` fail with [`Error::NotFound`](crate::Error::NotFound) when it is not. Updates
//!    keep `created_at` of the stored record. Every multi-record write is atomic: a batch
//!    (`insert_resources`, `insert_entities`, `insert_edges`, `insert_moments`) is stored
//!    whole or not at all, and an id repeated within it counts as taken.
//! 4. **Edges** join entities that exist when the edge is written, and are visible from both
//!    ends; deleting an entity deletes its edges in the same atomic write.
//! 5. **Dimension**: every embedding of a tenant has the dimension fixed by its configuration or
//!    by the first embedding written ([`Provider::fix_dimension`]).
//! 6. **Vector search** returns the `k` nearest resources that match the filter, nearest first,
//!    ties broken by id; the filter is applied before the top-k cut, so `k` results come back
//!    whenever `k` resources match. A resource is searchable once the call that wrote it returns.
//! 7. **Traversal** is breadth-first, cycle-safe, depth-bounded; each reached entity appears
//!    once with its fewest hops, ordered by depth then id; the start is not included.
//! 8. **Moments** in a [`TimeRange`] are those that overlap it (touching counts), ordered by
//!    start, then id.
//! 9. **Transactions** ([`Provider::begin`]) see their own writes on top of one snapshot (what
//!    commits elsewhere after their first read stays invisible to them), are invisible to others
//!    until [`Txn::commit`], vanish on [`Txn::rollback`] or drop, and fail to commit with
//!    [`Error::Conflict`](crate::Error::Conflict) when a concurrent commit changed a record they wrote (or read in order
//!    to validate, such as an edge's endpoints).
//! 10. **Full text** ([`Provider::text_search`]) ranks the resources or moments whose content
//!     has at least one query term (as [`crate::text`] splits and stems it) and whose metadata
//!     matches the filter, by BM25 ([`crate::text::rank`]), best first, ties broken by id; the
//!     filter applies before the cut. A record is searchable by its current content once the
//!     call that wrote it returns: an updated record matches only the terms of its stored
//!     content, and a deleted one matches nothing.
//! 11. Auto-commit operations (the non-transaction methods) are each one atomic transaction,
//!     and each read returns one committed state: a resource's record and embedding come from
//!     the same write.

use std::future::Future;

use crate::error::Result;
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, Moment, MomentId, Reached, Record,
    RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId, TextHit,
    TextQuery, TimeRange, TraverseQuery,
};

/// How a provider answers vector search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VectorIndexKind {
    /// An exact scan: recall 1, cost linear in the number of embeddings.
    Exact,
    /// An approximate HNSW index.
    Hnsw,
}

/// What a provider can do, for callers and for the conformance suite to gate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How vector search is answered.
    pub vector_index: VectorIndexKind,
    /// Whether data survives dropping the provider and opening it again on the same storage.
    pub persistent: bool,
}

/// A storage backend for agent memory. See the [module docs](crate::provider) for the contract.
///
/// Every method returns a `Send` future, so engine calls can be handed to `tokio::spawn`.
/// Backend calls that block for long (scans, index builds) run off the async worker threads.
pub trait Provider: Send + Sync + Sized + 'static {
    /// An opened tenant: the only way to reach a tenant's records.
    type Tenant: Clone + Send + Sync + 'static;
    /// A transaction on one tenant.
    type Txn<'p>: Txn
    where
        Self: 'p;

    /// The provider's name, as used in [`Error::Backend`](crate::Error::Backend).
    const NAME: &'static str;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// Creates a tenant.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if it exists; [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn create_tenant(
        &self,
        id: &TenantId,
        config: &TenantConfig,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Opens an existing tenant.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if it does not exist.
    fn open_tenant(&self, id: &TenantId) -> impl Future<Output = Result<Self::Tenant>> + Send;

    /// The tenants that exist, sorted.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn list_tenants(&self) -> impl Future<Output = Result<Vec<TenantId>>> + Send;

    /// Deletes a tenant and every record in it.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if it does not exist; [`Error::Conflict`](crate::Error::Conflict) if the provider cannot
    /// delete it while it is in use.
    fn delete_tenant(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Gives back what the provider can while the app is in the background, and returns once
    /// it has: every acknowledged write is on disk where the provider keeps it in memory, and
    /// caches and idle connections are released. The provider stays usable; what it released
    /// is rebuilt as calls need it.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) if writing out fails (nothing is lost: the
    /// writes stay in the provider's log).
    fn release_memory(&self) -> impl Future<Output = Result<()>> + Send;

    /// Moves the embeddings the provider holds outside its vector index (written and
    /// searchable, but not yet in the index) into the index, and returns when it has: the last
    /// step of a bulk load, after which a search costs what the index costs. Searches are
    /// correct before it too (item 6 of the contract). A provider with no such place returns
    /// at once.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn flush_vector_index(&self, tenant: &Self::Tenant) -> impl Future<Output = Result<()>> + Send;

    /// The id of an opened tenant.
    fn tenant_id(tenant: &Self::Tenant) -> &TenantId;

    /// The tenant's configuration, with the dimension once it is fixed.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn tenant_config(
        &self,
        tenant: &Self::Tenant,
    ) -> impl Future<Output = Result<TenantConfig>> + Send;

    /// Fixes the tenant's embedding dimension to `dimension` unless it is fixed already, and
    /// returns the dimension in force. Atomic: of two racing callers, one wins.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn fix_dimension(
        &self,
        tenant: &Self::Tenant,
        dimension: u32,
    ) -> impl Future<Output = Result<u32>> + Send;

    /// Inserts resources atomically: all or none.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if any id is taken.
    fn insert_resources(
        &self,
        tenant: &Self::Tenant,
        resources: &[Resource],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Inserts resources whose ids the engine has just generated (fresh UUIDv7s, which no
    /// stored record can have), atomically. A provider may skip the existence checks of
    /// [`Provider::insert_resources`] here; by default it does not.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn create_resources(
        &self,
        tenant: &Self::Tenant,
        resources: &[Resource],
    ) -> impl Future<Output = Result<()>> + Send {
        self.insert_resources(tenant, resources)
    }
    /// The resource with this id, embedding included.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn get_resource(
        &self,
        tenant: &Self::Tenant,
        id: ResourceId,
    ) -> impl Future<Output = Result<Resource>> + Send;
    /// Replaces a resource, keeping its `created_at`; returns what is stored.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn update_resource(
        &self,
        tenant: &Self::Tenant,
        resource: &Resource,
    ) -> impl Future<Output = Result<Resource>> + Send;
    /// Deletes a resource and its embedding.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn delete_resource(
        &self,
        tenant: &Self::Tenant,
        id: ResourceId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Inserts an entity.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the id is taken.
    fn insert_entity(
        &self,
        tenant: &Self::Tenant,
        entity: &Entity,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Inserts entities atomically: all or none.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) naming the id if any id is taken
    /// or repeated in the batch.
    fn insert_entities(
        &self,
        tenant: &Self::Tenant,
        entities: &[Entity],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The entity with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn get_entity(
        &self,
        tenant: &Self::Tenant,
        id: EntityId,
    ) -> impl Future<Output = Result<Entity>> + Send;
    /// Replaces an entity, keeping its `created_at`; returns what is stored.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn update_entity(
        &self,
        tenant: &Self::Tenant,
        entity: &Entity,
    ) -> impl Future<Output = Result<Entity>> + Send;
    /// Deletes an entity and every edge that touches it.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn delete_entity(
        &self,
        tenant: &Self::Tenant,
        id: EntityId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Inserts an edge between existing entities.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if an endpoint is missing; [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the id is taken.
    fn insert_edge(
        &self,
        tenant: &Self::Tenant,
        edge: &Edge,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Inserts edges atomically: all or none. Every endpoint must be stored when the call
    /// begins (an edge batch creates no entities), and an endpoint deleted concurrently
    /// makes the whole batch fail rather than leave an edge dangling.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) naming a missing endpoint;
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) naming the id if any id is taken or
    /// repeated in the batch; [`Error::NotFound`](crate::Error::NotFound) or
    /// [`Error::Conflict`](crate::Error::Conflict) if an endpoint is deleted concurrently.
    fn insert_edges(
        &self,
        tenant: &Self::Tenant,
        edges: &[Edge],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The edge with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn get_edge(
        &self,
        tenant: &Self::Tenant,
        id: EdgeId,
    ) -> impl Future<Output = Result<Edge>> + Send;
    /// The edges of an entity in `direction`, optionally of one relation, ordered by edge id.
    /// An edge from the entity to itself appears once.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if the entity does not exist.
    fn get_edges(
        &self,
        tenant: &Self::Tenant,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Edge>>> + Send;
    /// Deletes an edge.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn delete_edge(
        &self,
        tenant: &Self::Tenant,
        id: EdgeId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Inserts a moment.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the id is taken.
    fn insert_moment(
        &self,
        tenant: &Self::Tenant,
        moment: &Moment,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Inserts moments atomically: all or none.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) naming the id if any id is taken
    /// or repeated in the batch.
    fn insert_moments(
        &self,
        tenant: &Self::Tenant,
        moments: &[Moment],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The moment with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn get_moment(
        &self,
        tenant: &Self::Tenant,
        id: MomentId,
    ) -> impl Future<Output = Result<Moment>> + Send;
    /// Replaces a moment; returns what is stored.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn update_moment(
        &self,
        tenant: &Self::Tenant,
        moment: &Moment,
    ) -> impl Future<Output = Result<Moment>> + Send;
    /// Deletes a moment.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is none.
    fn delete_moment(
        &self,
        tenant: &Self::Tenant,
        id: MomentId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The `k` nearest resources (see the contract). The query is already validated.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn search_resources(
        &self,
        tenant: &Self::Tenant,
        query: &SearchQuery,
    ) -> impl Future<Output = Result<Vec<ScoredResource>>> + Send;
    /// The `k` best full-text matches (item 10 of the contract). The query is already
    /// validated.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn text_search(
        &self,
        tenant: &Self::Tenant,
        query: &TextQuery,
    ) -> impl Future<Output = Result<Vec<TextHit>>> + Send;
    /// Entities whose names match (see [`EntityQuery`]).
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn search_entities(
        &self,
        tenant: &Self::Tenant,
        query: &EntityQuery,
    ) -> impl Future<Output = Result<Vec<Entity>>> + Send;
    /// Breadth-first traversal (see the contract).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if the start entity does not exist.
    fn traverse(
        &self,
        tenant: &Self::Tenant,
        query: &TraverseQuery,
    ) -> impl Future<Output = Result<Vec<Reached>>> + Send;
    /// Moments overlapping `range`, ordered by start then id.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn moments_in_range(
        &self,
        tenant: &Self::Tenant,
        range: &TimeRange,
    ) -> impl Future<Output = Result<Vec<Moment>>> + Send;
    /// Up to `limit` records of `kind` with ids greater than `after`, in id order: a keyset
    /// page, so a whole tenant can be streamed (for export) without holding it in memory.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn scan(
        &self,
        tenant: &Self::Tenant,
        kind: RecordKind,
        after: Option<uuid::Uuid>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Record>>> + Send;

    /// Begins a transaction on the tenant.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) on storage failure.
    fn begin<'p>(
        &'p self,
        tenant: &Self::Tenant,
    ) -> impl Future<Output = Result<Self::Txn<'p>>> + Send;
}

/// A transaction on one tenant: reads see its own writes; nothing is visible to others until
/// [`Txn::commit`]; dropping it without committing rolls it back.
///
/// Methods take `&mut self`: a transaction is used by one task at a time, and this keeps the
/// futures `Send` without requiring the transaction to be `Sync`.
pub trait Txn: Send {
    /// Inserts a resource. Errors as [`Provider::insert_resources`].
    fn insert_resource(&mut self, resource: &Resource) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::get_resource`].
    fn get_resource(&mut self, id: ResourceId) -> impl Future<Output = Result<Resource>> + Send;
    /// Errors as [`Provider::update_resource`].
    fn update_resource(
        &mut self,
        resource: &Resource,
    ) -> impl Future<Output = Result<Resource>> + Send;
    /// Errors as [`Provider::delete_resource`].
    fn delete_resource(&mut self, id: ResourceId) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::insert_entity`].
    fn insert_entity(&mut self, entity: &Entity) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::get_entity`].
    fn get_entity(&mut self, id: EntityId) -> impl Future<Output = Result<Entity>> + Send;
    /// Errors as [`Provider::update_entity`].
    fn update_entity(&mut self, entity: &Entity) -> impl Future<Output = Result<Entity>> + Send;
    /// Errors as [`Provider::delete_entity`].
    fn delete_entity(&mut self, id: EntityId) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::insert_edge`].
    fn insert_edge(&mut self, edge: &Edge) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::get_edge`].
    fn get_edge(&mut self, id: EdgeId) -> impl Future<Output = Result<Edge>> + Send;
    /// Errors as [`Provider::get_edges`].
    fn get_edges(
        &mut self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Edge>>> + Send;
    /// Errors as [`Provider::delete_edge`].
    fn delete_edge(&mut self, id: EdgeId) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::insert_moment`].
    fn insert_moment(&mut self, moment: &Moment) -> impl Future<Output = Result<()>> + Send;
    /// Errors as [`Provider::get_moment`].
    fn get_moment(&mut self, id: MomentId) -> impl Future<Output = Result<Moment>> + Send;
    /// Errors as [`Provider::update_moment`].
    fn update_moment(&mut self, moment: &Moment) -> impl Future<Output = Result<Moment>> + Send;
    /// Errors as [`Provider::delete_moment`].
    fn delete_moment(&mut self, id: MomentId) -> impl Future<Output = Result<()>> + Send;

    /// Makes every write of the transaction visible, atomically.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) if a concurrent commit changed what this transaction wrote or
    /// validated against; nothing of this transaction is then visible.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
    /// Discards every write of the transaction.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) if the backend could not be told; the writes are discarded anyway.
    fn rollback(self) -> impl Future<Output = Result<()>> + Send;
}
