//! # percolate
//!
//! A storage engine for agent memory. It stores REM data for one tenant at a time:
//! **R**esources (content, metadata, an embedding), **E**ntities (typed nodes) joined by edges,
//! and **M**oments (time-ranged events), and serves what agents ask of it: get/put, batch
//! ingest, k-nearest vector search with metadata filters, graph traversal to depth N, time-range
//! scans and transactions.
//!
//! The backend is a [`Provider`] chosen at compile time: [`rocks::RocksProvider`] (feature
//! `rocksdb`, the default: embedded, a directory per tenant). [`MemoryEngine<P>`] is generic
//! over it, with no dynamic dispatch.
//!
//! ```
//! # #[cfg(feature = "rocksdb")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use percolate::rocks::{RocksConfig, RocksProvider};
//! use percolate::{MemoryEngine, NewEdge, NewEntity, TenantConfig, TenantId, TraverseQuery};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(dir.path()))?);
//! let tenant = engine.create_tenant(&TenantId::new("acme")?, TenantConfig::default()).await?;
//! let ada = tenant.create_entity(NewEntity::new("Ada Lovelace", "person")).await?;
//! let engine_ = tenant.create_entity(NewEntity::new("Analytical Engine", "machine")).await?;
//! tenant.create_edge(NewEdge::new(ada.id, engine_.id, "wrote_about")).await?;
//! let reached = tenant.traverse(&TraverseQuery::new(ada.id, 2)).await?;
//! assert_eq!(reached[0].entity, engine_.id);
//! # Ok::<(), percolate::Error>(())
//! # }).unwrap();
//! ```

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "settings")]
pub mod config;
#[cfg(feature = "rocksdb")]
mod crypto;
mod engine;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
#[cfg(feature = "rocksdb")]
mod index;
pub mod mem;
pub mod model;
pub mod portable;
pub mod provider;

#[cfg(feature = "rocksdb")]
pub mod rocks;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;

pub use engine::{
    EngineTxn, Limits, MAX_BATCH, MAX_CONTENT_BYTES, MAX_METADATA_BYTES, MAX_NAME_BYTES,
    MemoryEngine, TenantHandle,
};
pub use error::{Error, Result};
pub use model::*;
pub use provider::{Capabilities, Provider, Txn, VectorIndexKind};
