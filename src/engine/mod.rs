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

mod batch;
mod recall;
mod tenant;
mod txn;
mod validate;

pub use tenant::TenantHandle;
pub use txn::EngineTxn;
pub(crate) use validate::*;

/// The largest resource or moment content accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 16 << 20;
/// The largest name, kind, relation or uri accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The most records one batch or scan page may hold.
pub const MAX_BATCH: usize = 100_000;
/// The default [`Limits::max_metadata_bytes`].
pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// Bounds the engine puts on input beyond the fixed ones ([`MAX_CONTENT_BYTES`],
/// [`MAX_NAME_BYTES`], [`MAX_BATCH`]), so one call cannot make it hold unbounded memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest metadata or properties document accepted, in bytes of its JSON text
    /// (default [`MAX_METADATA_BYTES`]).
    pub max_metadata_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_metadata_bytes: MAX_METADATA_BYTES }
    }
}

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
    limits: Limits,
}

impl<P: Provider> Clone for MemoryEngine<P> {
    fn clone(&self) -> Self {
        Self { provider: Arc::clone(&self.provider), limits: self.limits }
    }
}

impl<P: Provider> MemoryEngine<P> {
    /// An engine over `provider`, with the default [`Limits`].
    pub fn new(provider: P) -> Self {
        Self::with_limits(provider, Limits::default())
    }

    /// An engine over `provider` that accepts input within `limits`.
    pub fn with_limits(provider: P, limits: Limits) -> Self {
        Self { provider: Arc::new(provider), limits }
    }

    /// The limits input is checked against.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The provider, for provider-specific calls (key rotation, diagnostics). Calls made on
    /// it directly bypass the engine's validation: the provider then trusts its input.
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
        Ok(TenantHandle {
            provider: Arc::clone(&self.provider),
            tenant,
            limits: self.limits,
            dimension: Arc::default(),
        })
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

    /// Call when the app goes to the background (or is told memory is short): the provider
    /// writes out what it holds only in memory and releases its caches, so the app costs less
    /// while suspended and, if the system kills it, reopens quickly. On RocksDB: memtables
    /// flushed, changed vector index snapshots written, idle tenants closed, the block cache
    /// emptied; on PostgreSQL: idle connections closed. The engine stays usable, and nothing
    /// needs to be called on return.
    ///
    /// # Errors
    /// [`Error::Backend`] if writing out fails; acknowledged writes are kept regardless (they
    /// are in the provider's log).
    pub async fn release_memory(&self) -> Result<()> {
        self.provider.release_memory().await
    }
}

impl<P: Provider> std::fmt::Debug for MemoryEngine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine").field("provider", &P::NAME).finish()
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
