//! Tenant databases: where they live, how they are opened, and the bounded cache of open ones.
//!
//! Each tenant is its own RocksDB database in `root/<tenant id>/`: the only place a tenant id
//! becomes a path is [`tenant_dir`]. A [`TenantId`] is lowercase ASCII letters, digits, `-` and
//! `_`, so the directory name is the id itself, one spelling per tenant on every file system.
//!
//! Open databases hold file handles and memory, so the cache keeps at most `capacity` of them,
//! closing the least recently used one that nobody else holds. A database in use (a
//! [`crate::TenantHandle`] holds it) is never closed under its user; the cache may then exceed
//! its capacity until handles are dropped. Tenant creation builds the database in a staging
//! directory and renames it into place, so a crash never leaves a half-created tenant.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    FlushOptions, OptimisticTransactionDB, OptimisticTransactionOptions, Options,
    WriteBufferManager, WriteOptions,
};

use super::RocksConfig;
use super::cf;
use super::codec;
use super::keys;
use super::store::{Ops, Value, View, map_rocks_error};
use crate::crypto::{self, MasterKek, TenantCrypto};
use crate::error::{Error, Result};
use crate::index::{FullVectors, Persist, Stored, VectorChange, VectorIndex};
use crate::model::{Entity, Resource, TenantConfig, TenantId, words};

mod batch;
mod cache;
mod reader;

#[allow(unused_imports)]
pub(crate) use batch::*;
pub(crate) use cache::*;
pub(crate) use reader::{Handle, for_both};

/// How often an auto-commit write is retried after losing an optimistic conflict.
const AUTO_COMMIT_ATTEMPTS: usize = 16;

/// The directory of a tenant's database.
pub(crate) fn tenant_dir(root: &Path, id: &TenantId) -> PathBuf {
    root.join(id.as_str())
}

impl FullVectors for TenantDb {
    fn full_vectors(&self, ids: &[crate::model::ResourceId]) -> Vec<Option<Vec<f32>>> {
        self.embeddings_of(ids)
    }
}

/// One open tenant database.
pub struct TenantDb {
    pub(crate) id: TenantId,
    /// The database: a writer's, or a read-only secondary (see [`reader`]).
    pub(crate) db: Handle,
    config: Mutex<TenantConfig>,
    /// The longest `end - start` of any moment written, in microseconds: an upper bound that
    /// lets a time-range query start its scan at `range.start - span`.
    moment_span: AtomicI64,
    write_options: WriteOptions,
    /// The vector index, once the tenant's dimension is known.
    vectors: OnceLock<Arc<VectorIndex>>,
    /// The database directory, which also holds the vector index snapshot.
    dir: PathBuf,
    /// Set when the tenant is being deleted: no snapshot is worth writing then (shared with
    /// the vector index, which writes snapshots of its own).
    discarded: Arc<std::sync::atomic::AtomicBool>,
    hnsw: super::HnswParams,
    /// [`super::RocksConfig::vector_precision`].
    vector_precision: crate::index::VectorPrecision,
    exact_search_below: usize,
    /// [`super::RocksConfig::lower_indexer_priority`].
    lower_indexer_priority: bool,
    /// The tenant's sealing keys; `None` for a tenant stored in plaintext. Shared (never
    /// cloned: one session has one nonce counter) with the vector index, which seals its
    /// snapshots.
    crypto: Option<Arc<TenantCrypto>>,
    /// Memory for the stored embeddings of a batch, kept between batches (see [`Scratch`]).
    scratch: Mutex<Vec<u8>>,
    /// Held by whoever folds pending records into the text index (see `rocks::text`): one
    /// fold at a time, so two never redo each other's work and conflict.
    pub(crate) text_fold: Mutex<()>,
}

impl TenantDb {
    /// The handle of a column family listed in [`cf::ALL`].
    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| {
            Error::corrupt("tenant database", format!("column family {name} missing"))
        })
    }

    /// `value` as it is stored under `key` in `cf`: sealed when the tenant is encrypted, else
    /// `value` itself (no copy).
    ///
    /// # Errors
    /// [`Error::Crypto`] when the value cannot be sealed: never stored unsealed or empty.
    pub(crate) fn seal_value(&self, cf: &str, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>> {
        match &self.crypto {
            Some(crypto) => crypto.seal(cf, key, &value),
            None => Ok(value),
        }
    }

    /// Opens a stored value (a no-op for a plaintext tenant).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a sealed value fails authentication.
    pub(crate) fn open_value<'v, V>(
        &self,
        cf: &'static str,
        key: &[u8],
        raw: V,
    ) -> Result<Value<'v>>
    where
        V: Into<Value<'v>> + AsRef<[u8]>,
    {
        match &self.crypto {
            Some(crypto) => crypto.open(cf, key, raw.as_ref()).map(Value::Opened),
            None => Ok(raw.into()),
        }
    }

    /// What stands for `relation` in adjacency keys: the relation itself, or its keyed token
    /// in an encrypted tenant.
    pub(crate) fn relation_key<'r>(&self, relation: &'r str) -> std::borrow::Cow<'r, [u8]> {
        match &self.crypto {
            Some(crypto) => {
                std::borrow::Cow::Owned(crypto.token(b"relation", relation.as_bytes()).to_vec())
            }
            None => std::borrow::Cow::Borrowed(relation.as_bytes()),
        }
    }

    /// What stands for a full-text term in `text` keys: the term itself, or its keyed token in
    /// an encrypted tenant.
    pub(crate) fn text_term_key<'t>(&self, term: &'t str) -> std::borrow::Cow<'t, [u8]> {
        match &self.crypto {
            Some(crypto) => {
                std::borrow::Cow::Owned(crypto.token(b"text", term.as_bytes()).to_vec())
            }
            None => std::borrow::Cow::Borrowed(term.as_bytes()),
        }
    }

    /// The entity-name index keys of `entity` (deduplicated).
    pub(crate) fn name_keys(&self, entity: &Entity) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for word in words(&entity.name) {
            match &self.crypto {
                Some(crypto) => out.extend(
                    crypto.name_tokens(&word).map(|token| keys::entity_name(&token, entity.id)),
                ),
                None => out.push(keys::entity_name(word.as_bytes(), entity.id)),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The entity-name key prefix under which every entity with a name word starting with
    /// `word` is found (a superset, in an encrypted tenant: callers re-check names).
    pub(crate) fn name_query_prefix(&self, word: &str) -> Vec<u8> {
        match &self.crypto {
            Some(crypto) => {
                let mut prefix = crypto.name_query_token(word).to_vec();
                prefix.push(0);
                prefix
            }
            None => word.as_bytes().to_vec(),
        }
    }

    /// Whether the tenant's values are sealed.
    pub(crate) fn is_encrypted(&self) -> bool {
        self.crypto.is_some()
    }

    /// The vector index; `None` while no dimension is fixed (so no embedding exists).
    pub(crate) fn vector_index(&self) -> Option<&Arc<VectorIndex>> {
        self.vectors.get()
    }

    fn ensure_vector_index(&self, dimension: u32) -> &Arc<VectorIndex> {
        let metric = self.config.lock().metric;
        self.vectors.get_or_init(|| {
            VectorIndex::new(
                dimension as usize,
                metric,
                self.hnsw,
                self.vector_precision,
                self.exact_search_below,
                Some(self.persist()),
            )
        })
    }

    /// Opens the vector index over every stored embedding: from its snapshot where the
    /// snapshot still matches the store, the rest as pending points that a background thread
    /// inserts into the graph. An embedding or resource whose stored bytes are damaged is left
    /// out of the index rather than making the whole tenant unreadable: reading that resource
    /// reports the damage, and every other record stays reachable (to export them).
    ///
    /// The snapshot is read and decoded on a second thread while this one reads the store:
    /// for 100k 384-d vectors the two took 0.31 s and 0.48 s one after the other.
    fn load_vectors(&self, dimension: u32) -> Result<()> {
        let metric = self.config.lock().metric;
        let precision = self.vector_precision;
        let persist = self.persist();
        let (snapshot, stored) = std::thread::scope(|scope| {
            let reading = std::thread::Builder::new()
                .name("percolate-snapshot".into())
                .spawn_scoped(scope, || {
                    VectorIndex::read_snapshot(&persist, dimension as usize, metric, precision)
                });
            let stored = self.stored_embeddings(dimension);
            // No thread (or a panic in it): no snapshot, and the graph is rebuilt.
            let snapshot = match reading {
                Ok(reading) => reading.join().ok().flatten(),
                Err(_) => {
                    VectorIndex::read_snapshot(&persist, dimension as usize, metric, precision)
                }
            };
            (snapshot, stored)
        });
        let index = VectorIndex::open(
            persist,
            snapshot,
            dimension as usize,
            metric,
            self.hnsw,
            precision,
            self.exact_search_below,
            stored?,
        );
        // Set once, here: before the tenant is shared, or by a reader's catch-up, which runs
        // one at a time; nobody else can have set it.
        let _ = self.vectors.set(index);
        Ok(())
    }

    /// Every stored embedding with its resource's metadata, in id order, leaving out damaged
    /// ones (see [`Self::load_vectors`]). The records are read by a second iterator walking
    /// alongside the embeddings (both column families are keyed by resource id), not by a
    /// point read per embedding. Nothing moves the state under the two iterators: a writer's
    /// tenant is not shared yet, and a reader's catches up only in [`Self::catch_up`], which
    /// calls this.
    fn stored_embeddings(&self, dimension: u32) -> Result<Vec<Stored>> {
        let resources = self.cf(cf::CF_RESOURCES)?;
        for_both!(&self.db, db => self.stored_embeddings_along(dimension, db.raw_iterator_cf(resources)))
    }

    /// [`Self::stored_embeddings`] with `records` iterating the resources.
    fn stored_embeddings_along<D: rocksdb::DBAccess>(
        &self,
        dimension: u32,
        mut records: rocksdb::DBRawIteratorWithThreadMode<'_, D>,
    ) -> Result<Vec<Stored>> {
        let view = View::Db(self);
        records.seek_to_first();
        let mut stored = Vec::new();
        view.scan_raw(cf::CF_EMBEDDINGS, &[], None, |key, value| {
            let id = crate::model::ResourceId::from_bytes(
                key.try_into().map_err(|_| Error::corrupt("embedding key", "not 16 bytes"))?,
            );
            while records.key().is_some_and(|record| record < key) {
                records.next();
            }
            let record = records.key().filter(|record| *record == key).and(records.value());
            let loaded = (|| {
                let vector =
                    codec::decode_embedding(&self.open_value(cf::CF_EMBEDDINGS, key, value)?)?;
                if vector.len() != dimension as usize {
                    return Err(Error::corrupt(
                        "embedding",
                        format!("dimension {} in a tenant of {dimension}", vector.len()),
                    ));
                }
                let Some(record) = record else {
                    return Err(Error::corrupt("embedding", format!("resource {id} missing")));
                };
                let record = self.open_value(cf::CF_RESOURCES, key, record)?;
                Ok((id, vector, Arc::new(codec::decode_resource(id, &record)?.metadata)))
            })();
            match loaded {
                Ok(point) => stored.push(point),
                Err(Error::Corrupt { .. } | Error::FormatVersion { .. }) => {}
                Err(e) => return Err(e),
            }
            Ok(true)
        })?;
        records.status().map_err(map_rocks_error)?;
        Ok(stored)
    }

    /// The stored embeddings of `ids`, for the vector index to re-score its candidates with
    /// when it keeps compact vectors: one batched lookup ([`View::embeddings`]), opened as
    /// usual in an encrypted tenant.
    fn embeddings_of(&self, ids: &[crate::model::ResourceId]) -> Vec<Option<Vec<f32>>> {
        View::Db(self).embeddings(ids).unwrap_or_else(|_| vec![None; ids.len()])
    }

    /// Where the vector index writes its snapshots.
    fn persist(&self) -> Persist {
        Persist {
            dir: self.dir.clone(),
            crypto: self.crypto.clone(),
            discarded: Arc::clone(&self.discarded),
            lower_priority: self.lower_indexer_priority,
            read_only: self.db.is_reader(),
        }
    }

    /// Runs `commit` and then applies `changes` to the vector index, under the index's commit
    /// lock so the index sees changes in commit order.
    pub(crate) fn commit_with_vectors(
        &self,
        changes: Vec<VectorChange>,
        commit: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let Some(index) = (if changes.is_empty() { None } else { self.vectors.get() }) else {
            return commit();
        };
        let _order = index.commit_lock.lock();
        commit()?;
        index.apply(changes);
        Ok(())
    }

    pub(crate) fn config(&self) -> TenantConfig {
        *self.config.lock()
    }

    pub(crate) fn moment_span(&self) -> i64 {
        self.moment_span.load(Ordering::Acquire)
    }

    /// Fixes the dimension unless it is fixed; returns the dimension in force.
    pub(crate) fn fix_dimension(&self, dimension: u32) -> Result<u32> {
        let mut config = self.config.lock();
        if let Some(fixed) = config.dimension {
            return Ok(fixed);
        }
        let updated = TenantConfig { dimension: Some(dimension), ..*config };
        self.db
            .writer("fix the dimension")?
            .put_cf_opt(
                self.cf(cf::CF_META)?,
                keys::META_CONFIG,
                self.seal_value(cf::CF_META, keys::META_CONFIG, codec::encode_config(&updated))?,
                &self.write_options,
            )
            .map_err(map_rocks_error)?;
        *config = updated;
        drop(config);
        self.ensure_vector_index(dimension);
        Ok(dimension)
    }

    /// Raises the stored moment span to at least `span`. Written before the moment itself, so
    /// the stored span always bounds every committed moment; a span left too large by a
    /// rolled-back write only widens scans, never hides a moment.
    pub(crate) fn widen_moment_span(&self, span: i64) -> Result<()> {
        if span <= self.moment_span() {
            return Ok(());
        }
        let _guard = self.config.lock();
        if span > self.moment_span() {
            self.db
                .writer("write moments")?
                .put_cf_opt(
                    self.cf(cf::CF_META)?,
                    keys::META_MOMENT_SPAN,
                    self.seal_value(cf::CF_META, keys::META_MOMENT_SPAN, codec::encode_i64(span))?,
                    &self.write_options,
                )
                .map_err(map_rocks_error)?;
            self.moment_span.store(span, Ordering::Release);
        }
        Ok(())
    }

    /// A new optimistic transaction that validates against the snapshot taken at its start.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] in a reader.
    pub(crate) fn transaction(&self) -> Result<rocksdb::Transaction<'_, OptimisticTransactionDB>> {
        let mut options = OptimisticTransactionOptions::default();
        options.set_snapshot(true);
        Ok(self.db.writer("write")?.transaction_opt(&self.write_options, &options))
    }

    /// Runs `op` as one auto-commit transaction, retrying when a concurrent commit wins.
    pub(crate) fn write<T>(&self, mut op: impl FnMut(&Ops<'_>) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let txn = self.transaction()?;
            let changes = RefCell::new(Vec::new());
            let out = op(&Ops { tenant: self, txn: &txn, changes: &changes })?;
            match self
                .commit_with_vectors(changes.into_inner(), || txn.commit().map_err(map_rocks_error))
            {
                Ok(()) => return Ok(out),
                Err(Error::Conflict(_)) if attempt < AUTO_COMMIT_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl TenantDb {
    /// Indexes the pending records' text (see `rocks::text`), then flushes every memtable of
    /// the tenant to its files (all column families together, as
    /// atomic flush requires) and waits for the flush, then writes the vector index snapshot
    /// if the graph changed since the last one: afterwards the tenant holds only the memtables
    /// optimistic transactions keep as history, and a process killed next reopens it without
    /// replaying its log or rebuilding its graph. A reader has nothing to write out (its
    /// memtables replay the writer's log).
    ///
    /// # Errors
    /// [`Error::Backend`] if the flush or the snapshot write fails.
    pub(crate) fn flush(&self) -> Result<()> {
        let Ok(db) = self.db.writer("flush") else { return Ok(()) };
        // A fold losing to concurrent writes leaves records pending, which searches read.
        match super::text::fold(self) {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let families = cf::ALL.iter().map(|name| self.cf(name)).collect::<Result<Vec<_>>>()?;
        let mut options = FlushOptions::default();
        options.set_wait(true);
        db.flush_cfs_opt(&families, &options).map_err(map_rocks_error)?;
        write_snapshot(self)
    }
}

impl Drop for TenantDb {
    /// Closing a tenant writes its vector index snapshot, so the next open need not rebuild
    /// the graph. Failing to write it loses nothing: the index is rebuilt from the store.
    fn drop(&mut self) {
        if let Some(index) = self.vectors.get() {
            let _ = index.persist_now();
        }
    }
}

/// Writes the tenant's vector index snapshot now (it is also written when the tenant closes).
///
/// # Errors
/// [`Error::Backend`] if the file cannot be written.
pub(crate) fn write_snapshot(tenant: &TenantDb) -> Result<()> {
    tenant.db.writer("write a vector index snapshot")?;
    match tenant.vectors.get() {
        Some(index) => index.persist_now().map_err(|e| io_error(&tenant.dir, e)),
        None => Ok(()),
    }
}
