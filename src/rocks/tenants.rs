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
    OptimisticTransactionDB, OptimisticTransactionOptions, Options, WriteOptions,
};

use super::RocksConfig;
use super::cf;
use super::codec;
use super::crypto::{self, MasterKek, TenantCrypto};
use super::keys;
use super::sealing::{self, RecordSealer, Values};
use super::store::{Ops, Value, View, map_rocks_error};
use super::vector::{Persist, Stored, VectorChange, VectorIndex};
use crate::error::{Error, Result};
use crate::model::{Entity, Resource, TenantConfig, TenantId, words};

/// How often an auto-commit write is retried after losing an optimistic conflict.
const AUTO_COMMIT_ATTEMPTS: usize = 16;

/// The directory of a tenant's database.
pub(crate) fn tenant_dir(root: &Path, id: &TenantId) -> PathBuf {
    root.join(id.as_str())
}

/// One open tenant database.
pub struct TenantDb {
    pub(crate) id: TenantId,
    pub(crate) db: OptimisticTransactionDB,
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
    exact_search_below: usize,
    /// The tenant's sealing keys; `None` for a tenant stored in plaintext. Shared (never
    /// cloned: one session has one nonce counter) with the vector index, which seals its
    /// snapshots.
    crypto: Option<Arc<TenantCrypto>>,
    /// Memory for the stored embeddings of a batch, kept between batches (see [`Scratch`]).
    scratch: Mutex<Vec<u8>>,
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
    pub(crate) fn seal_value(&self, cf: &str, key: &[u8], value: Vec<u8>) -> Vec<u8> {
        match &self.crypto {
            Some(crypto) => crypto.seal(cf, key, &value),
            None => value,
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
        let persist = self.persist();
        let (snapshot, stored) = std::thread::scope(|scope| {
            let reading = std::thread::Builder::new()
                .name("percolate-snapshot".into())
                .spawn_scoped(scope, || {
                    VectorIndex::read_snapshot(&persist, dimension as usize, metric)
                });
            let stored = self.stored_embeddings(dimension);
            // No thread (or a panic in it): no snapshot, and the graph is rebuilt.
            let snapshot = match reading {
                Ok(reading) => reading.join().ok().flatten(),
                Err(_) => VectorIndex::read_snapshot(&persist, dimension as usize, metric),
            };
            (snapshot, stored)
        });
        let index = VectorIndex::open(
            persist,
            snapshot,
            dimension as usize,
            metric,
            self.hnsw,
            self.exact_search_below,
            stored?,
        );
        // Set once, here, before the tenant is shared: nobody else can have set it.
        let _ = self.vectors.set(index);
        Ok(())
    }

    /// Every stored embedding with its resource's metadata, in id order, leaving out damaged
    /// ones (see [`Self::load_vectors`]). The records are read by a second iterator walking
    /// alongside the embeddings (both column families are keyed by resource id), not by a
    /// point read per embedding.
    fn stored_embeddings(&self, dimension: u32) -> Result<Vec<Stored>> {
        let view = View::Db(self);
        let mut records = self.db.raw_iterator_cf(self.cf(cf::CF_RESOURCES)?);
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

    /// Where the vector index writes its snapshots.
    fn persist(&self) -> Persist {
        Persist {
            dir: self.dir.clone(),
            crypto: self.crypto.clone(),
            discarded: Arc::clone(&self.discarded),
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
            .put_cf_opt(
                self.cf(cf::CF_META)?,
                keys::META_CONFIG,
                self.seal_value(cf::CF_META, keys::META_CONFIG, codec::encode_config(&updated)),
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
                .put_cf_opt(
                    self.cf(cf::CF_META)?,
                    keys::META_MOMENT_SPAN,
                    self.seal_value(cf::CF_META, keys::META_MOMENT_SPAN, codec::encode_i64(span)),
                    &self.write_options,
                )
                .map_err(map_rocks_error)?;
            self.moment_span.store(span, Ordering::Release);
        }
        Ok(())
    }

    /// A new optimistic transaction that validates against the snapshot taken at its start.
    pub(crate) fn transaction(&self) -> rocksdb::Transaction<'_, OptimisticTransactionDB> {
        let mut options = OptimisticTransactionOptions::default();
        options.set_snapshot(true);
        self.db.transaction_opt(&self.write_options, &options)
    }

    /// Writes resources with engine-generated ids in one atomic batch, without a transaction:
    /// a fresh UUIDv7 cannot collide with a stored key, so there is nothing to check, and
    /// transactions that touch the same keys still see this write when they validate.
    pub(crate) fn write_fresh_resources(&self, resources: &[Resource]) -> Result<()> {
        let records = self.cf(cf::CF_RESOURCES)?;
        let embeddings_cf = self.cf(cf::CF_EMBEDDINGS)?;
        let index = self.vector_index();
        // A big batch prepares its embeddings for the index while RocksDB writes it (below);
        // a small one while it encodes them, as a transaction does.
        let overlap = index.is_some()
            && super::cores() >= 2
            && resources.len() >= PARALLEL_VALUES
            && resources.iter().any(|resource| resource.embedding.is_some());
        let Encoded { values, records: stored, embeddings } =
            self.resource_values(resources, if overlap { None } else { index.map(Arc::as_ref) })?;
        // Sized up front: growing a 1.6 MB batch by doubling copied it about twice over and
        // faulted in every intermediate buffer (~1 ms of a 1000 x 384-d batch).
        let embedding_bytes: usize =
            values.iter().map(|value| value.embedding.as_ref().map_or(0, Range::len)).sum();
        let bytes = stored.bytes() + embedding_bytes + 64 * resources.len();
        let mut batch = rocksdb::WriteBatchWithTransaction::<true>::with_capacity_bytes(bytes + 64);
        let mut changes = Vec::with_capacity(resources.len());
        for ((resource, record), value) in resources.iter().zip(stored.iter()).zip(values) {
            let key = resource.id.as_bytes();
            batch.put_cf(records, key, record);
            if let Some(range) = value.embedding {
                batch.put_cf(embeddings_cf, key, &embeddings[range]);
            }
            changes.extend(value.change);
        }
        drop(embeddings);
        let write = || self.db.write_opt(batch, &self.write_options).map_err(map_rocks_error);
        match index {
            Some(index) if overlap => {
                // The RocksDB write runs on one core; the index's copies of the embeddings
                // (hashed, normalised, their metadata's fields), needed only once it has
                // committed, are made meanwhile on the others, under the commit lock so the
                // index still sees commits in order.
                use rayon::prelude::*;
                let _order = index.commit_lock.lock();
                let _encoding = index.encoding();
                let prepare = || -> Vec<VectorChange> {
                    resources
                        .par_iter()
                        .with_min_len(64)
                        .filter_map(|resource| {
                            let vector = resource.embedding.as_deref()?;
                            Some(index.prepare(resource.id, vector, &resource.metadata))
                        })
                        .collect()
                };
                let (written, changes) = rayon::join(write, prepare);
                written?;
                index.apply(changes);
                Ok(())
            }
            _ => self.commit_with_vectors(changes, write),
        }
    }

    /// The stored values of `resources`, encoded and sealed (when the tenant is encrypted),
    /// and, when `index` is given, each embedding's change prepared for it. Big batches are
    /// done on every idle core: the background indexer runs at a lower priority and gives
    /// the other cores up to them.
    ///
    /// The stored embeddings are written into one buffer, the tenant's scratch when no other
    /// batch holds it: a 1000 x 384-d batch allocated 1.5 MB in 1000 pieces, and about 220
    /// of its pages were fresh ones the kernel had to fault in and zero, every batch.
    ///
    /// # Errors
    /// Only for a value over AES-GCM's message limit, which an embedding cannot reach.
    pub(crate) fn resource_values(
        &self,
        resources: &[Resource],
        index: Option<&VectorIndex>,
    ) -> Result<Encoded<'_>> {
        let overhead = if self.crypto.is_some() { crypto::SEAL_OVERHEAD } else { 0 };
        let mut end = 0;
        let ranges: Vec<Option<Range<usize>>> = resources
            .iter()
            .map(|resource| {
                let vector = resource.embedding.as_deref()?;
                let start = end;
                end += codec::embedding_len(vector) + overhead;
                Some(start..end)
            })
            .collect();
        let mut embeddings = Scratch::take(&self.scratch, end);
        let mut rest = &mut embeddings[..end];
        let mut slots: Vec<Option<(&mut [u8], Range<usize>)>> = ranges
            .into_iter()
            .map(|range| {
                let range = range?;
                let (slot, tail) = std::mem::take(&mut rest).split_at_mut(range.len());
                rest = tail;
                Some((slot, range))
            })
            .collect();
        // Each embedding's slot holds it, sealed or not; a sealed one may start a few bytes
        // in (its header is shorter than the room kept for it). With it, the embedding's
        // change prepared for the index, if one was given.
        type Slot<'a> = Option<(&'a mut [u8], Range<usize>)>;
        type Embedded = (Option<Range<usize>>, Option<VectorChange>);
        let embedded = |resource: &Resource, slot: Slot<'_>| -> Result<Embedded> {
            let (Some(vector), Some((slot, range))) = (&resource.embedding, slot) else {
                return Ok((None, None));
            };
            let key = resource.id.as_bytes();
            let encode = |out: &mut [u8]| codec::write_embedding(vector, out);
            let start = match &self.crypto {
                Some(crypto) => crypto.seal_into(cf::CF_EMBEDDINGS, key, slot, encode)?,
                None => {
                    encode(slot);
                    0
                }
            };
            let change = index.map(|index| index.prepare(resource.id, vector, &resource.metadata));
            Ok((Some(range.start + start..range.end), change))
        };
        let record_size = |resource: &Resource| 64 + overhead + resource.content.len();
        // The stored records of a run of resources, one after another in one buffer.
        let records = |resources: &[Resource]| -> Result<Values> {
            let bytes = resources.iter().map(record_size).sum();
            let mut values = Values::with_capacity(resources.len(), bytes);
            let mut sealer = self.crypto.as_ref().map(|crypto| crypto.run(cf::CF_RESOURCES));
            for resource in resources {
                let encode = |out: &mut Vec<u8>| codec::encode_resource_into(resource, out);
                values.push(|out| match &mut sealer {
                    Some(sealer) => sealer.seal_append(resource.id.as_bytes(), out, encode),
                    None => {
                        encode(out);
                        Ok(())
                    }
                })?;
            }
            Ok(values)
        };
        let embedded_all = |resources: &[Resource], slots: &mut [Slot<'_>]| {
            let slots = slots.iter_mut().map(Option::take);
            (resources.iter().zip(slots))
                .map(|(resource, slot)| {
                    let (embedding, change) = embedded(resource, slot)?;
                    Ok(ResourceValues { embedding, change })
                })
                .collect::<Result<Vec<_>>>()
        };
        let parallel = super::cores() >= 2 && resources.len() >= PARALLEL_VALUES;
        let (records, values) = if parallel && end >= PARALLEL_EMBEDDING_BYTES {
            // On rayon's pool (one thread per core, started once): chunks are stolen by
            // whichever pool thread is free, so a thread the scheduler keeps waiting holds up
            // no more than the chunk it took, and no thread is started per batch. (Scoped
            // threads, tried first, made every batch wait for its helpers to be scheduled and
            // to exit: 2-5 ms per batch while RocksDB compacted on the other core.)
            use rayon::prelude::*;
            let _encoding = index.map(VectorIndex::encoding);
            let chunks: Vec<(Values, Vec<ResourceValues>)> = resources
                .par_chunks(sealing::CHUNK)
                .zip(slots.par_chunks_mut(sealing::CHUNK))
                .map(|(resources, slots)| {
                    Ok((records(resources)?, embedded_all(resources, slots)?))
                })
                .collect::<Result<_>>()?;
            let mut values = Vec::with_capacity(resources.len());
            let records = (chunks.into_iter())
                .map(|(records, chunk)| {
                    values.extend(chunk);
                    records
                })
                .collect();
            (records, values)
        } else if let (true, Some(crypto)) = (parallel, &self.crypto)
            && let bytes =
                64 + resources.iter().map(|r| r.content.len()).sum::<usize>() / resources.len()
            && !crypto.seals_quickly(bytes)
        {
            // Records too big to seal quickly here (see `gcm`): encoded here, encrypted here
            // and by a helper that this batch never waits for (see `sealing`).
            let mut sealer =
                RecordSealer::start(Arc::clone(crypto), cf::CF_RESOURCES, resources.len(), bytes);
            for resource in resources {
                sealer.push(*resource.id.as_bytes(), |out| {
                    codec::encode_resource_into(resource, out);
                });
            }
            (sealer.finish()?, embedded_all(resources, &mut slots)?)
        } else {
            // Small records cost ~100 ns each to encode and, in an encrypted tenant, ~50 ns
            // more to seal (`gcm`): handing a batch of them to the pool cost more in wake-ups
            // than it saved, and sealing them with a helper no less than sealing each here as
            // it is encoded, while it is in this core's cache (see `sealing`).
            (vec![records(resources)?], embedded_all(resources, &mut slots)?)
        };
        Ok(Encoded { values, records: Records(records), embeddings })
    }

    /// Runs `op` as one auto-commit transaction, retrying when a concurrent commit wins.
    pub(crate) fn write<T>(&self, mut op: impl FnMut(&Ops<'_>) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let txn = self.transaction();
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

/// What [`TenantDb::resource_values`] makes of a batch: each resource's values, their stored
/// records, and the buffer holding their stored embeddings.
pub(crate) struct Encoded<'a> {
    pub(crate) values: Vec<ResourceValues>,
    pub(crate) records: Records,
    pub(crate) embeddings: Scratch<'a>,
}

/// The stored records of a batch, in order, in runs.
pub(crate) struct Records(Vec<Values>);

impl Records {
    /// The stored records, in the order of the resources.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().flat_map(Values::iter)
    }

    /// The stored records' bytes, in all.
    pub(crate) fn bytes(&self) -> usize {
        self.0.iter().map(Values::bytes).sum()
    }
}

/// What [`TenantDb::resource_values`] makes of one resource.
pub(crate) struct ResourceValues {
    /// Where the stored embedding is in [`Encoded::embeddings`], if the resource has one.
    pub(crate) embedding: Option<Range<usize>>,
    /// The embedding's change, prepared for the vector index, if an index was given.
    pub(crate) change: Option<VectorChange>,
}

/// Batches of at least this many resources are encoded on several cores, when they carry
/// [`PARALLEL_EMBEDDING_BYTES`] of stored embeddings, or sealed with a helper (see
/// [`RecordSealer`]) when they are encrypted.
const PARALLEL_VALUES: usize = 256;

/// The stored embedding bytes that make a batch worth handing to rayon's pool (each
/// embedding also costs a copy for the index, and sealing when encrypted): ~40 384-d ones.
const PARALLEL_EMBEDDING_BYTES: usize = 64 << 10;

/// The most scratch memory a tenant keeps between batches (a batch of ~2,600 384-d
/// embeddings); a bigger batch gets a buffer of its own.
const SCRATCH_KEPT: usize = 4 << 20;

/// A buffer for the stored embeddings of one batch: the tenant's scratch, kept from batch to
/// batch so its pages stay mapped, or a fresh one when another batch holds the scratch or
/// the batch needs more than [`SCRATCH_KEPT`]. Encoding overwrites every byte a batch uses,
/// so nothing of an earlier batch can be written out again.
pub(crate) enum Scratch<'a> {
    Kept(parking_lot::MutexGuard<'a, Vec<u8>>),
    Fresh(Vec<u8>),
}

impl<'a> Scratch<'a> {
    fn take(kept: &'a Mutex<Vec<u8>>, len: usize) -> Self {
        match kept.try_lock() {
            Some(mut buffer) if len <= SCRATCH_KEPT => {
                if buffer.len() < len {
                    buffer.resize(len, 0);
                }
                Scratch::Kept(buffer)
            }
            _ => Scratch::Fresh(vec![0; len]),
        }
    }
}

impl std::ops::Deref for Scratch<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Scratch::Kept(buffer) => buffer,
            Scratch::Fresh(buffer) => buffer,
        }
    }
}

impl std::ops::DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Scratch::Kept(buffer) => buffer,
            Scratch::Fresh(buffer) => buffer,
        }
    }
}

fn db_options(config: &RocksConfig, cache: &Cache, create: bool) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    let mut options = Options::default();
    options.create_if_missing(create);
    options.create_missing_column_families(create);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_max_open_files(config.max_open_files_per_tenant);
    options.set_write_buffer_size(config.write_buffer_bytes);
    // Up to three full memtables may wait for their flush before writes stall: an ingest of
    // 1000 x 384-d batches fills a 16 MiB memtable every ~10 batches, faster than one flush
    // finishes on a busy two-core machine, and with RocksDB's default of two, writes stopped
    // for the flush.
    options.set_max_write_buffer_number(4);
    options.set_keep_log_file_num(2);
    // Every column family is flushed together, so the WAL never holds the only copy of one
    // column family's half of an atomic batch after another's was flushed.
    options.set_atomic_flush(true);
    options
}

/// Opens (or, with `create`, creates) the database of a tenant; `sealed` when its values are
/// sealed, which turns block compression off.
fn open_db(
    config: &RocksConfig,
    cache: &Cache,
    dir: &Path,
    create: bool,
    sealed: bool,
) -> Result<OptimisticTransactionDB> {
    let options = db_options(config, cache, create);
    let descriptors = cf::ALL.iter().map(|name| {
        let mut options = db_options(config, cache, create);
        // Floats barely compress; decompressing them would cost every search hit. Sealed
        // values do not compress at all: RocksDB would run LZ4 over every block it flushes or
        // compacts only to store it as it was (in a batch-ingest profile, LZ4 took 9% of the
        // CPU of an encrypted tenant against 4% of a plaintext one, on the core the foreground
        // writes share).
        if sealed || *name == cf::CF_EMBEDDINGS {
            options.set_compression_type(DBCompressionType::None);
        }
        ColumnFamilyDescriptor::new(*name, options)
    });
    OptimisticTransactionDB::open_cf_descriptors(&options, dir, descriptors)
        .map_err(map_rocks_error)
}

/// Registers this open's sealing session under the next session number, durably and before
/// it seals anything, and hands `crypto` the ids of the sessions registered before it (see
/// [`crypto`]: values name their session by number).
fn register_session(db: &OptimisticTransactionDB, crypto: &mut TenantCrypto) -> Result<()> {
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let mut earlier = HashMap::new();
    let mut next = 0u32;
    let from = rocksdb::IteratorMode::From(keys::META_SESSION, rocksdb::Direction::Forward);
    for item in db.iterator_cf(meta, from) {
        let (key, value) = item.map_err(map_rocks_error)?;
        let Some(number) = keys::session_number(&key) else { break };
        earlier.insert(number, codec::decode_session(&value)?);
        next = number
            .checked_add(1)
            .ok_or_else(|| Error::Crypto("the tenant has used every session number".into()))?;
    }
    let mut batch = rocksdb::WriteBatchWithTransaction::<true>::default();
    batch.put_cf(meta, keys::session_key(next), codec::encode_session(&crypto.session_id()));
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync).map_err(map_rocks_error)?;
    crypto.numbered(next, earlier);
    Ok(())
}

/// Loads an opened tenant database: checks its format version; then, for an encrypted
/// tenant, registers this open's sealing session (after the check, so a database of another
/// format is never written to); then reads its settings and index.
fn load(
    id: TenantId,
    db: OptimisticTransactionDB,
    config: &RocksConfig,
    dir: PathBuf,
    mut crypto: Option<TenantCrypto>,
) -> Result<TenantDb> {
    let mut write_options = WriteOptions::default();
    write_options.set_sync(config.sync_writes);
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let version = db.get_cf(meta, keys::META_FORMAT_VERSION).map_err(map_rocks_error)?;
    match version.as_deref() {
        Some([codec::FORMAT_VERSION]) => {}
        Some([found]) => {
            return Err(Error::FormatVersion {
                what: "tenant database",
                found: *found,
                expected: codec::FORMAT_VERSION,
            });
        }
        _ => return Err(Error::corrupt("tenant database", "no format version")),
    }
    if let Some(crypto) = &mut crypto {
        register_session(&db, crypto)?;
    }
    let open = |key: &[u8], bytes: Vec<u8>| match &crypto {
        Some(crypto) => crypto.open(cf::CF_META, key, &bytes),
        // Sealed values without a key file: the key was shredded (a deletion interrupted
        // after destroying it) or removed. The data is unreadable by design.
        None if crypto::is_sealed(&bytes) => Err(Error::Crypto(format!(
            "tenant {id} is sealed but its key file is gone (shredded or removed)"
        ))),
        None => Ok(bytes),
    };
    let tenant_config = match db.get_cf(meta, keys::META_CONFIG).map_err(map_rocks_error)? {
        Some(bytes) => codec::decode_config(&open(keys::META_CONFIG, bytes)?)?,
        None => return Err(Error::corrupt("tenant database", "no configuration")),
    };
    let span = match db.get_cf(meta, keys::META_MOMENT_SPAN).map_err(map_rocks_error)? {
        Some(bytes) => codec::decode_i64("moment span", &open(keys::META_MOMENT_SPAN, bytes)?)?,
        None => 0,
    };
    let tenant = TenantDb {
        id,
        db,
        config: Mutex::new(tenant_config),
        moment_span: AtomicI64::new(span),
        write_options,
        vectors: OnceLock::new(),
        dir,
        discarded: Arc::default(),
        hnsw: config.hnsw,
        exact_search_below: config.exact_search_below,
        crypto: crypto.map(Arc::new),
        scratch: Mutex::new(Vec::new()),
    };
    if let Some(dimension) = tenant_config.dimension {
        tenant.load_vectors(dimension)?;
    }
    Ok(tenant)
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
    match tenant.vectors.get() {
        Some(index) => index.persist_now().map_err(|e| io_error(&tenant.dir, e)),
        None => Ok(()),
    }
}

struct Entry {
    db: Arc<TenantDb>,
    last_used: u64,
}

#[derive(Default)]
struct Open {
    entries: HashMap<TenantId, Entry>,
    clock: u64,
}

/// The open tenant databases of one provider.
pub(crate) struct TenantCache {
    config: RocksConfig,
    block_cache: Cache,
    open: Mutex<Open>,
    /// The key-encryption key, when a master key is configured: new tenants are encrypted.
    kek: Option<MasterKek>,
}

impl TenantCache {
    pub(crate) fn new(config: RocksConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.root).map_err(|e| io_error(&config.root, e))?;
        let block_cache = Cache::new_lru_cache(config.block_cache_bytes);
        let kek = config.master_key.as_ref().map(|key| key.kek(&config.root)).transpose()?;
        Ok(Self { config, block_cache, open: Mutex::new(Open::default()), kek })
    }

    pub(crate) fn config(&self) -> &RocksConfig {
        &self.config
    }

    pub(crate) fn create(&self, id: &TenantId, tenant_config: &TenantConfig) -> Result<()> {
        let open = self.open.lock();
        let dir = tenant_dir(&self.config.root, id);
        if open.entries.contains_key(id) || dir.exists() {
            return Err(Error::already_exists("tenant", id));
        }
        // Build in a staging directory, then rename: the tenant appears whole or not at all.
        let staging =
            self.config.root.join(format!(".staging-{}-{}", id, uuid::Uuid::now_v7().simple()));
        let result = (|| {
            let db = open_db(&self.config, &self.block_cache, &staging, true, self.kek.is_some())?;
            let mut crypto =
                self.kek.as_ref().map(|kek| kek.create_tenant_key(&staging, id)).transpose()?;
            if let Some(crypto) = &mut crypto {
                register_session(&db, crypto)?;
            }
            let meta = db
                .cf_handle(cf::CF_META)
                .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
            let mut batch = rocksdb::WriteBatchWithTransaction::<true>::default();
            batch.put_cf(meta, keys::META_FORMAT_VERSION, [codec::FORMAT_VERSION]);
            let config = codec::encode_config(tenant_config);
            let config = match &crypto {
                Some(crypto) => crypto.seal(cf::CF_META, keys::META_CONFIG, &config),
                None => config,
            };
            batch.put_cf(meta, keys::META_CONFIG, config);
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            db.write_opt(batch, &sync).map_err(map_rocks_error)?;
            drop(db);
            std::fs::rename(&staging, &dir).map_err(|e| io_error(&dir, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        drop(open);
        result
    }

    pub(crate) fn get(&self, id: &TenantId) -> Result<Arc<TenantDb>> {
        let mut open = self.open.lock();
        open.clock += 1;
        let now = open.clock;
        if let Some(entry) = open.entries.get_mut(id) {
            entry.last_used = now;
            return Ok(Arc::clone(&entry.db));
        }
        let dir = tenant_dir(&self.config.root, id);
        if !dir.is_dir() {
            return Err(Error::not_found("tenant", id));
        }
        let crypto = self.tenant_crypto(&dir, id)?;
        let db = open_db(&self.config, &self.block_cache, &dir, false, crypto.is_some())?;
        let tenant = Arc::new(load(id.clone(), db, &self.config, dir, crypto)?);
        open.entries.insert(id.clone(), Entry { db: Arc::clone(&tenant), last_used: now });
        self.evict(&mut open);
        Ok(tenant)
    }

    /// The sealing keys of the tenant in `dir`, if it is encrypted.
    fn tenant_crypto(&self, dir: &Path, id: &TenantId) -> Result<Option<TenantCrypto>> {
        if !crypto::is_encrypted(dir) {
            return Ok(None);
        }
        match &self.kek {
            Some(kek) => kek.open_tenant_key(dir, id).map(Some),
            None => Err(Error::Crypto(format!(
                "tenant {id} is encrypted and no master key is configured \
                 (PERCOLATE_MASTER_KEY_FILE or PERCOLATE_MASTER_KEY)"
            ))),
        }
    }

    /// Re-wraps every encrypted tenant's data key from the configured master key to `new`,
    /// one key file at a time (each replaced atomically); data is not rewritten. A rotation
    /// interrupted half-way is completed by running it again with the same keys.
    pub(crate) fn rotate_master_key(&self, new: &super::MasterKey) -> Result<usize> {
        let Some(old) = &self.kek else {
            return Err(Error::Crypto("no master key is configured to rotate from".into()));
        };
        let new = new.kek(&self.config.root)?;
        let _open = self.open.lock();
        let mut rotated = 0;
        for id in self.list()? {
            let dir = tenant_dir(&self.config.root, &id);
            if crypto::is_encrypted(&dir) {
                old.rewrap(&new, &dir, &id)?;
                rotated += 1;
            }
        }
        Ok(rotated)
    }

    /// Closes least recently used databases that nobody holds until within capacity.
    fn evict(&self, open: &mut Open) {
        while open.entries.len() > self.config.open_tenants {
            let idle = open
                .entries
                .iter()
                .filter(|(_, entry)| Arc::strong_count(&entry.db) == 1)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(id, _)| id.clone());
            match idle {
                Some(id) => {
                    open.entries.remove(&id);
                }
                None => break,
            }
        }
    }

    pub(crate) fn list(&self) -> Result<Vec<TenantId>> {
        let root = &self.config.root;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| io_error(root, e))? {
            let entry = entry.map_err(|e| io_error(root, e))?;
            // A tenant is a directory named by a valid id that holds a RocksDB database; staging
            // directories (leading '.') and strays are not tenants.
            let is_database = entry.path().join("CURRENT").is_file();
            if let (true, Some(name)) = (is_database, entry.file_name().to_str())
                && let Ok(id) = TenantId::new(name)
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub(crate) fn delete(&self, id: &TenantId) -> Result<()> {
        let mut open = self.open.lock();
        let dir = tenant_dir(&self.config.root, id);
        if let Some(entry) = open.entries.get(id) {
            if Arc::strong_count(&entry.db) > 1 {
                return Err(Error::Conflict(format!("tenant {id} is in use by open handles")));
            }
            if let Some(entry) = open.entries.remove(id) {
                entry.db.discarded.store(true, Ordering::Release);
            }
        }
        if !dir.is_dir() {
            return Err(Error::not_found("tenant", id));
        }
        // Crypto-shredding: the data key goes first, so whatever a crash or the file system
        // leaves behind of the data is unreadable.
        crypto::shred_key(&dir).map_err(|e| io_error(&dir, e))?;
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))
    }

    /// Closes every database nobody holds.
    pub(crate) fn close_idle(&self) {
        self.open.lock().entries.retain(|_, entry| Arc::strong_count(&entry.db) > 1);
    }
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::Backend {
        provider: super::NAME,
        source: Box::new(std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))),
    }
}
