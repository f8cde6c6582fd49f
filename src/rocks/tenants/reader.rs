//! The read-only side of a store: the [`Handle`] through which every read goes (a writer's
//! optimistic-transaction database or a reader's RocksDB *secondary*), opening a tenant as a
//! secondary, and catching a reader up with the writer. Writes nothing under the store root.
//!
//! Design decisions:
//! - **A reader is a RocksDB secondary instance.** It opens the writer's files as they are
//!   (an `OptimisticTransactionDB` writes a plain database), takes no lock, and sees the
//!   writer's commits only when it catches up ([`TenantDb::catch_up`]): it tails the writer's
//!   MANIFEST and write-ahead log. Between catch-ups its state does not move.
//! - **A secondary's own files live outside the store**: its info log goes into a temporary
//!   directory per provider (removed when the provider closes), one subdirectory per tenant.
//!   Nothing is written in a tenant directory: no snapshot, no session, no log.
//! - **Table files stay open** (`max_open_files = -1`): the writer deletes files compaction made
//!   obsolete, and a secondary that opened them keeps reading them through its descriptors,
//!   as RocksDB advises for secondaries.
//! - **Consistency without snapshots.** A secondary refuses iterators at a snapshot, and needs
//!   none: its state changes only when it catches up. A read that must see one state across
//!   several lookups (a resource and its embedding, two iterators side by side) holds
//!   [`ReadPoint`], a read guard that a catch-up waits for.
//! - **The vector index follows the store.** After a catch-up that moved the sequence number,
//!   the index is reconciled with every stored embedding (the same check that matches a
//!   snapshot against the store on open): new and changed embeddings become pending points,
//!   vanished ones tombstones. It costs one scan of the embeddings per catch-up that found
//!   new writes, nothing for one that did not.
//! - An encrypted tenant's reader opens the key file and learns the sealing sessions the
//!   writer registered (again at each catch-up); it registers none of its own: it never seals.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rocksdb::{DB, DBPinnableSlice, ReadOptions, SnapshotWithThreadMode};

use super::*;
use crate::crypto::SessionId;

/// Runs `$body` with `$db` bound to the database of either kind of handle: the two are
/// different types with the same read methods, so the body is compiled once for each.
macro_rules! for_both {
    ($handle:expr, $db:ident => $body:expr) => {
        match $handle {
            $crate::rocks::tenants::Handle::Writer($db) => $body,
            $crate::rocks::tenants::Handle::Reader(reader) => {
                let $db = &reader.db;
                $body
            }
        }
    };
}
pub(crate) use for_both;

/// A tenant database as this process opened it.
pub(crate) enum Handle {
    /// The writer's database: reads and optimistic transactions.
    Writer(OptimisticTransactionDB),
    /// A read-only secondary of another process's (or provider's) writer.
    Reader(Reader),
}

/// A RocksDB secondary instance and what orders its catch-ups with reads.
pub(crate) struct Reader {
    pub(crate) db: DB,
    /// Read by reads that need one state across lookups; written while catching up.
    state: RwLock<()>,
    /// One catch-up at a time, so the vector index is reconciled in order.
    catching_up: Mutex<()>,
}

/// One state of the database for several reads: a snapshot of a writer's database, or a
/// reader's guard against a catch-up.
pub(crate) enum ReadPoint<'a> {
    Writer(SnapshotWithThreadMode<'a, OptimisticTransactionDB>),
    Reader { _state: RwLockReadGuard<'a, ()> },
}

impl ReadPoint<'_> {
    /// Read options that read at this point.
    pub(crate) fn options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let ReadPoint::Writer(snapshot) = self {
            options.set_snapshot(snapshot);
        }
        options
    }
}

impl Handle {
    /// The writer's database.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] naming `what` for a reader.
    pub(crate) fn writer(&self, what: &'static str) -> Result<&OptimisticTransactionDB> {
        match self {
            Handle::Writer(db) => Ok(db),
            Handle::Reader(_) => Err(Error::ReadOnly { what }),
        }
    }

    pub(crate) fn is_reader(&self) -> bool {
        matches!(self, Handle::Reader(_))
    }

    pub(crate) fn cf_handle(&self, name: &str) -> Option<&ColumnFamily> {
        for_both!(self, db => db.cf_handle(name))
    }

    pub(crate) fn get_pinned_cf(
        &self,
        cf: &ColumnFamily,
        key: &[u8],
    ) -> std::result::Result<Option<DBPinnableSlice<'_>>, rocksdb::Error> {
        for_both!(self, db => db.get_pinned_cf(cf, key))
    }

    pub(crate) fn latest_sequence_number(&self) -> u64 {
        for_both!(self, db => db.latest_sequence_number())
    }

    /// A point that several reads share (see [`ReadPoint`]).
    pub(crate) fn read_point(&self) -> ReadPoint<'_> {
        match self {
            Handle::Writer(db) => ReadPoint::Writer(db.snapshot()),
            // Recursive: a read that already holds one takes another without waiting behind a
            // catch-up that waits for the first.
            Handle::Reader(reader) => ReadPoint::Reader { _state: reader.state.read_recursive() },
        }
    }
}

/// Opens the database of a tenant in `dir` as a secondary whose own files go to `own_dir`.
pub(super) fn open_secondary(
    config: &RocksConfig,
    memory: &SharedMemory,
    dir: &Path,
    own_dir: &Path,
    sealed: bool,
) -> Result<Handle> {
    // A secondary keeps every table file open: it cannot reopen one its writer has deleted.
    let mut options = db_options(config, memory, false);
    options.set_max_open_files(-1);
    // A tenant made before full text has no `text` column family until its writer opens it;
    // the reader opens the others (and cannot search text).
    let missing = super::cache::missing_families(&options, dir);
    let present =
        cf::ALL.iter().filter(|name| !(missing == [cf::CF_TEXT] && **name == cf::CF_TEXT));
    let descriptors = present.chain(&[rocksdb::DEFAULT_COLUMN_FAMILY_NAME]).map(|name| {
        let mut options = cf_options(config, memory, false, name, sealed);
        options.set_max_open_files(-1);
        ColumnFamilyDescriptor::new(*name, options)
    });
    std::fs::create_dir_all(own_dir).map_err(|e| io_error(own_dir, e))?;
    let db = DB::open_cf_descriptors_as_secondary(&options, dir, own_dir, descriptors)
        .map_err(map_rocks_error)?;
    // Heals an open that raced with a flush (see [`catch_up_store`]).
    catch_up_store(&db)?;
    Ok(Handle::Reader(Reader { db, state: RwLock::new(()), catching_up: Mutex::new(()) }))
}

/// Catches a secondary up with its writer, twice. A secondary reads the MANIFEST, then the
/// write-ahead logs it names; a flush that completes in between installs a table file the
/// read missed and deletes the log that held its data, so one pass can leave a state that
/// lacks that data; the second pass reads the MANIFEST again and finds the table file. (Only
/// another flush completing within the second pass's own window can leave a gap, which the
/// next catch-up heals.)
fn catch_up_store(db: &DB) -> Result<()> {
    db.try_catch_up_with_primary().map_err(map_rocks_error)?;
    db.try_catch_up_with_primary().map_err(map_rocks_error)
}

/// The sealing sessions registered in the tenant, by number.
pub(super) fn sessions(db: &Handle) -> Result<HashMap<u32, SessionId>> {
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let mut found = HashMap::new();
    let from = rocksdb::IteratorMode::From(keys::META_SESSION, rocksdb::Direction::Forward);
    for_both!(db, db => {
        for item in db.iterator_cf(meta, from) {
            let (key, value) = item.map_err(map_rocks_error)?;
            let Some(number) = keys::session_number(&key) else { break };
            found.insert(number, codec::decode_session(&value)?);
        }
    });
    Ok(found)
}

impl TenantDb {
    /// Catches a reader up with the writer's commits: the store first, then what this handle
    /// keeps beside it (sealing sessions, settings, moment span, vector index). Returns whether
    /// anything new was found; a writer's handle is always current and returns false.
    ///
    /// # Errors
    /// [`Error::Backend`] when the writer's files cannot be read.
    pub(crate) fn catch_up(&self) -> Result<bool> {
        let Handle::Reader(reader) = &self.db else { return Ok(false) };
        let _one = reader.catching_up.lock();
        let before = reader.db.latest_sequence_number();
        {
            let _state = reader.state.write();
            catch_up_store(&reader.db)?;
        }
        if reader.db.latest_sequence_number() == before {
            return Ok(false);
        }
        if let Some(crypto) = &self.crypto {
            crypto.learn_sessions(sessions(&self.db)?);
        }
        let (config, span) = read_settings(self.id.clone(), &self.db, self.crypto.as_deref())?;
        *self.config.lock() = config;
        self.moment_span.fetch_max(span, Ordering::AcqRel);
        if let Some(dimension) = config.dimension {
            match self.vectors.get() {
                Some(index) => index.reconcile(self.stored_embeddings(dimension)?),
                None => self.load_vectors(dimension)?,
            }
        }
        Ok(true)
    }
}

/// The tenant's settings and moment span as stored.
pub(super) fn read_settings(
    id: TenantId,
    db: &Handle,
    crypto: Option<&TenantCrypto>,
) -> Result<(TenantConfig, i64)> {
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let open = |key: &[u8], bytes: &[u8]| match crypto {
        Some(crypto) => crypto.open(cf::CF_META, key, bytes),
        // Sealed values without a key file: the key was shredded (a deletion interrupted
        // after destroying it) or removed. The data is unreadable by design.
        None if crypto::is_sealed(bytes) => Err(Error::Crypto(format!(
            "tenant {id} is sealed but its key file is gone (shredded or removed)"
        ))),
        None => Ok(bytes.to_vec()),
    };
    let config = match db.get_pinned_cf(meta, keys::META_CONFIG).map_err(map_rocks_error)? {
        Some(bytes) => codec::decode_config(&open(keys::META_CONFIG, &bytes)?)?,
        None => return Err(Error::corrupt("tenant database", "no configuration")),
    };
    let span = match db.get_pinned_cf(meta, keys::META_MOMENT_SPAN).map_err(map_rocks_error)? {
        Some(bytes) => codec::decode_i64("moment span", &open(keys::META_MOMENT_SPAN, &bytes)?)?,
        None => 0,
    };
    Ok((config, span))
}
