//! [`MemProvider`]: an in-memory provider for applications' unit tests, and the reference the
//! disk providers are compared against. It owns the tenant map and the [`Provider`] methods; it
//! must not hold records (`store.rs`) or decide commits (`tenant.rs`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use percolate::mem::MemProvider;
//! use percolate::{MemoryEngine, NewResource, SearchQuery, TenantConfig, TenantId};
//!
//! let engine = MemoryEngine::new(MemProvider::new());
//! let acme = engine.create_tenant(&TenantId::new("acme")?, TenantConfig::default()).await?;
//! acme.create_resource(NewResource::new("hello").with_embedding(vec![1.0, 0.0])).await?;
//! let hits = acme.search_resources(&SearchQuery::new(vec![0.9, 0.1], 1)).await?;
//! assert_eq!(hits[0].resource.content, "hello");
//! # Ok::<(), percolate::Error>(())
//! # }).unwrap();
//! ```
//!
//! Design decisions:
//! - **Simple over fast.** Records live in ordered maps; searches, ranges and traversals are
//!   exact scans sorted into the contract's order (`search.rs`). Nothing here is approximate,
//!   so any disagreement with another provider is that provider's to explain.
//! - **One lock per tenant, never held across an `.await`.** Every method does its work under
//!   the lock and returns; no call waits on another task, so a task holding a transaction can
//!   keep calling the provider.
//! - **Optimistic transactions with a version per key** (`tenant.rs`, `txn.rs`): snapshot reads,
//!   validation at commit, [`Error::Conflict`] for the loser.
//! - **Clones share the store.** Dropping an engine and building a new one on a clone is how a
//!   test "reopens" the store; nothing survives the last clone.

mod search;
mod store;
mod tenant;
mod text;
mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use self::tenant::TenantCell;
pub use self::txn::MemTxn;
use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, Moment, MomentId, Reached, Record,
    RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId, TextHit,
    TextQuery, TimeRange, TraverseQuery,
};
use crate::provider::{Capabilities, Provider, VectorIndexKind};

/// The provider's name, as used in errors.
const NAME: &str = "memory";

/// An in-memory provider: every tenant in the process's memory, gone with the last clone.
///
/// Clones share one store, so a test can drop its [`crate::MemoryEngine`] and build a new one
/// on a clone to check that what was committed is still there.
#[derive(Clone, Default)]
pub struct MemProvider {
    tenants: Arc<RwLock<BTreeMap<TenantId, Arc<TenantCell>>>>,
}

impl std::fmt::Debug for MemProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemProvider").field("tenants", &self.tenants.read().len()).finish()
    }
}

impl MemProvider {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// An opened tenant of a [`MemProvider`]. Once the tenant is deleted, every call through it
/// fails with [`Error::NotFound`], even if a tenant with the same id
/// is created again.
#[derive(Clone)]
pub struct MemTenant(Arc<TenantCell>);

impl std::fmt::Debug for MemTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemTenant").field(&self.0.id).finish()
    }
}

impl Provider for MemProvider {
    type Tenant = MemTenant;
    type Txn<'p> = MemTxn;

    const NAME: &'static str = NAME;

    fn capabilities(&self) -> Capabilities {
        Capabilities { vector_index: VectorIndexKind::Exact, persistent: false }
    }

    async fn create_tenant(&self, id: &TenantId, config: &TenantConfig) -> Result<()> {
        let mut tenants = self.tenants.write();
        if tenants.contains_key(id) {
            return Err(Error::already_exists("tenant", id));
        }
        tenants.insert(id.clone(), Arc::new(TenantCell::new(id.clone(), *config)));
        Ok(())
    }

    async fn open_tenant(&self, id: &TenantId) -> Result<MemTenant> {
        let tenants = self.tenants.read();
        let cell = tenants.get(id).ok_or_else(|| Error::not_found("tenant", id))?;
        Ok(MemTenant(Arc::clone(cell)))
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>> {
        Ok(self.tenants.read().keys().cloned().collect())
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        let cell = self.tenants.write().remove(id).ok_or_else(|| Error::not_found("tenant", id))?;
        cell.delete();
        Ok(())
    }

    /// Nothing to release: the records are the memory.
    async fn release_memory(&self) -> Result<()> {
        Ok(())
    }

    /// Nothing to move: search scans every embedding.
    async fn flush_vector_index(&self, _: &MemTenant) -> Result<()> {
        Ok(())
    }

    fn tenant_id(tenant: &MemTenant) -> &TenantId {
        &tenant.0.id
    }

    async fn tenant_config(&self, tenant: &MemTenant) -> Result<TenantConfig> {
        tenant.0.config()
    }

    async fn fix_dimension(&self, tenant: &MemTenant, dimension: u32) -> Result<u32> {
        tenant.0.fix_dimension(dimension)
    }

    async fn insert_resources(&self, tenant: &MemTenant, resources: &[Resource]) -> Result<()> {
        tenant.0.change(|state| state.insert_resources(resources))
    }

    async fn get_resource(&self, tenant: &MemTenant, id: ResourceId) -> Result<Resource> {
        tenant.0.read(|state, _| state.resource(id))
    }

    async fn update_resource(&self, tenant: &MemTenant, resource: &Resource) -> Result<Resource> {
        tenant.0.change(|state| state.update_resource(resource))
    }

    async fn delete_resource(&self, tenant: &MemTenant, id: ResourceId) -> Result<()> {
        tenant.0.change(|state| state.delete_resource(id))
    }

    async fn insert_entity(&self, tenant: &MemTenant, entity: &Entity) -> Result<()> {
        tenant.0.change(|state| state.insert_entity(entity))
    }

    async fn insert_entities(&self, tenant: &MemTenant, entities: &[Entity]) -> Result<()> {
        tenant.0.change(|state| state.insert_entities(entities))
    }

    async fn get_entity(&self, tenant: &MemTenant, id: EntityId) -> Result<Entity> {
        tenant.0.read(|state, _| state.entity(id))
    }

    async fn update_entity(&self, tenant: &MemTenant, entity: &Entity) -> Result<Entity> {
        tenant.0.change(|state| state.update_entity(entity))
    }

    async fn delete_entity(&self, tenant: &MemTenant, id: EntityId) -> Result<()> {
        tenant.0.change(|state| state.delete_entity(id))
    }

    async fn insert_edge(&self, tenant: &MemTenant, edge: &Edge) -> Result<()> {
        tenant.0.change(|state| state.insert_edge(edge))
    }

    async fn insert_edges(&self, tenant: &MemTenant, edges: &[Edge]) -> Result<()> {
        tenant.0.change(|state| state.insert_edges(edges))
    }

    async fn get_edge(&self, tenant: &MemTenant, id: EdgeId) -> Result<Edge> {
        tenant.0.read(|state, _| state.edge(id))
    }

    async fn get_edges(
        &self,
        tenant: &MemTenant,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        tenant.0.read(|state, _| search::edges(state, entity, direction, relation))
    }

    async fn delete_edge(&self, tenant: &MemTenant, id: EdgeId) -> Result<()> {
        tenant.0.change(|state| state.delete_edge(id))
    }

    async fn insert_moment(&self, tenant: &MemTenant, moment: &Moment) -> Result<()> {
        tenant.0.change(|state| state.insert_moment(moment))
    }

    async fn insert_moments(&self, tenant: &MemTenant, moments: &[Moment]) -> Result<()> {
        tenant.0.change(|state| state.insert_moments(moments))
    }

    async fn get_moment(&self, tenant: &MemTenant, id: MomentId) -> Result<Moment> {
        tenant.0.read(|state, _| state.moment(id))
    }

    async fn update_moment(&self, tenant: &MemTenant, moment: &Moment) -> Result<Moment> {
        tenant.0.change(|state| state.update_moment(moment))
    }

    async fn delete_moment(&self, tenant: &MemTenant, id: MomentId) -> Result<()> {
        tenant.0.change(|state| state.delete_moment(id))
    }

    async fn search_resources(
        &self,
        tenant: &MemTenant,
        query: &SearchQuery,
    ) -> Result<Vec<ScoredResource>> {
        tenant.0.read(|state, config| Ok(search::search_resources(state, config.metric, query)))
    }

    async fn text_search(&self, tenant: &MemTenant, query: &TextQuery) -> Result<Vec<TextHit>> {
        tenant.0.read(|state, _| Ok(text::text_search(state, query)))
    }

    async fn search_entities(
        &self,
        tenant: &MemTenant,
        query: &EntityQuery,
    ) -> Result<Vec<Entity>> {
        tenant.0.read(|state, _| Ok(search::search_entities(state, query)))
    }

    async fn traverse(&self, tenant: &MemTenant, query: &TraverseQuery) -> Result<Vec<Reached>> {
        tenant.0.read(|state, _| search::traverse(state, query))
    }

    async fn moments_in_range(&self, tenant: &MemTenant, range: &TimeRange) -> Result<Vec<Moment>> {
        tenant.0.read(|state, _| Ok(search::moments_in_range(state, range)))
    }

    async fn scan(
        &self,
        tenant: &MemTenant,
        kind: RecordKind,
        after: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        tenant.0.read(|state, _| Ok(search::scan(state, kind, after, limit)))
    }

    async fn begin(&self, tenant: &MemTenant) -> Result<MemTxn> {
        MemTxn::begin(Arc::clone(&tenant.0))
    }
}
