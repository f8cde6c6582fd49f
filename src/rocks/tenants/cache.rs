//! Opening tenant databases and the bounded cache of open ones: options, creation in a
//! staging directory, encryption sessions, eviction, deletion. Owns every path under the root.

#[allow(unused_imports)]
use super::*;

/// The memory every tenant database of one provider draws from, so what RocksDB holds is
/// bounded by the configuration, not by the number of open tenants.
pub(crate) struct SharedMemory {
    /// Data, index and filter blocks of every tenant.
    pub(crate) cache: Cache,
    /// Accounts the memtables of every tenant and flushes past the budget.
    pub(crate) write_buffers: WriteBufferManager,
}

impl SharedMemory {
    pub(crate) fn new(config: &RocksConfig) -> Self {
        Self {
            cache: Cache::new_lru_cache(config.block_cache_bytes),
            // No stall: a write past the budget triggers flushes instead of waiting for them.
            write_buffers: WriteBufferManager::new_write_buffer_manager(
                config.write_buffer_budget_bytes,
                false,
            ),
        }
    }
}

pub(super) fn db_options(config: &RocksConfig, shared: &SharedMemory, create: bool) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&shared.cache);
    table.set_bloom_filter(10.0, false);
    // Index and filter blocks count against the shared cache instead of growing with each
    // open table; those of level 0 (the newest, read first) stay pinned while their table is
    // open, so a point read does not fetch them again after a burst of other reads.
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.set_write_buffer_manager(&shared.write_buffers);
    options.create_if_missing(create);
    options.create_missing_column_families(create);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_max_open_files(config.max_open_files_per_tenant);
    // The table cache (open table readers, `max_open_files` of them less a few) is split in
    // 2^bits shards and each holds its share, rounded up: with RocksDB's default of 64 shards
    // a shard holds one table, so two tables that hash to one shard evict each other and a
    // point read reopens its table (reads its footer and properties) again and again. Shards
    // of at least 32 tables keep every open table open.
    options
        .set_table_cache_num_shard_bits(table_cache_shard_bits(config.max_open_files_per_tenant));
    options.set_write_buffer_size(config.write_buffer_bytes);
    // Up to three full memtables may wait for their flush before writes stall: an ingest of
    // 1000 x 384-d batches fills a 16 MiB memtable every ~10 batches, faster than one flush
    // finishes on a busy two-core machine, and with RocksDB's default of two, writes stopped
    // for the flush.
    options.set_max_write_buffer_number(4);
    // Optimistic transactions check conflicts against the memtables written since they began,
    // so RocksDB keeps flushed memtables as history: unset, up to four memtables per column
    // family, which the write-buffer budget counts but cannot flush, so the budget would not
    // bound memory. A quarter of a memtable of history keeps that small; a transaction that
    // stays open across a flush of a column family it wrote, and more than that much newer
    // writes to it, fails its commit with [`crate::Error::Conflict`] (and may be retried).
    options.set_max_write_buffer_size_to_maintain((config.write_buffer_bytes / 4) as i64);
    options.set_keep_log_file_num(2);
    // Every column family is flushed together, so the WAL never holds the only copy of one
    // column family's half of an atomic batch after another's was flushed.
    options.set_atomic_flush(true);
    options
}

/// Shard bits for a table cache of `max_open_files` tables: shards of at least 32 tables (one
/// shard for fewer, or for no limit, -1, where RocksDB keeps every table open anyway).
fn table_cache_shard_bits(max_open_files: i32) -> i32 {
    let shards = (max_open_files / 32).max(1);
    // floor(log2(shards)), at most RocksDB's default of 6.
    (31 - shards.leading_zeros() as i32).min(6)
}

/// The options of column family `name`, in a writer and a reader alike; `sealed` when the
/// tenant's values are sealed.
pub(super) fn cf_options(
    config: &RocksConfig,
    shared: &SharedMemory,
    create: bool,
    name: &str,
    sealed: bool,
) -> Options {
    let mut options = db_options(config, shared, create);
    // Floats barely compress; decompressing them would cost every search hit. Sealed values
    // do not compress at all: RocksDB would run LZ4 over every block it flushes or compacts,
    // on the core the foreground writes share, only to store it as it was.
    if sealed || name == cf::CF_EMBEDDINGS {
        options.set_compression_type(DBCompressionType::None);
    }
    options
}

/// Opens (or, with `create`, creates) the database of a tenant; `sealed` when its values are
/// sealed, which turns block compression off.
pub(super) fn open_db(
    config: &RocksConfig,
    shared: &SharedMemory,
    dir: &Path,
    create: bool,
    sealed: bool,
) -> Result<OptimisticTransactionDB> {
    let mut options = db_options(config, shared, create);
    // A tenant made before full text lacks only the `text` column family: it is added here,
    // and `load` marks every record pending. A database missing any other is not a tenant.
    if !create && missing_families(&options, dir) == [cf::CF_TEXT] {
        options.create_missing_column_families(true);
    }
    // RocksDB's `default` column family, which percolate leaves empty, is opened with the
    // same options: otherwise rust-rocksdb gives it RocksDB's defaults, whose 64 MiB memtable
    // sets how much free space RocksDB waits for before it resumes after a full disk.
    let descriptors = cf::ALL.iter().chain(&[rocksdb::DEFAULT_COLUMN_FAMILY_NAME]).map(|name| {
        ColumnFamilyDescriptor::new(*name, cf_options(config, shared, create, name, sealed))
    });
    OptimisticTransactionDB::open_cf_descriptors(&options, dir, descriptors)
        .map_err(map_rocks_error)
}

/// The column families of [`cf::ALL`] the database in `dir` lacks (all of them when it cannot
/// be listed: the open then reports why).
pub(super) fn missing_families(options: &Options, dir: &Path) -> Vec<&'static str> {
    let present = rocksdb::DB::list_cf(options, dir).unwrap_or_default();
    cf::ALL.into_iter().filter(|name| !present.iter().any(|p| p == name)).collect()
}

/// Registers this open's sealing session under the next session number, durably and before
/// it seals anything, and hands `crypto` the ids of the sessions registered before it (see
/// [`crypto`]: values name their session by number).
pub(super) fn register_session(db: &Handle, crypto: &mut TenantCrypto) -> Result<()> {
    let writer = db.writer("register a sealing session")?;
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let earlier = reader::sessions(db)?;
    let next = match earlier.keys().max() {
        Some(last) => last
            .checked_add(1)
            .ok_or_else(|| Error::Crypto("the tenant has used every session number".into()))?,
        None => 0,
    };
    let mut batch = rocksdb::WriteBatchWithTransaction::<true>::default();
    batch.put_cf(meta, keys::session_key(next), codec::encode_session(&crypto.session_id()));
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    writer.write_opt(batch, &sync).map_err(map_rocks_error)?;
    crypto.numbered(next, earlier);
    Ok(())
}

/// Loads an opened tenant database: checks its format version; then, for an encrypted
/// tenant, registers this open's sealing session (after the check, so a database of another
/// format is never written to) or, in a reader, learns the sessions registered so far; then
/// reads its settings and index.
pub(super) fn load(
    id: TenantId,
    db: Handle,
    config: &RocksConfig,
    dir: PathBuf,
    mut crypto: Option<TenantCrypto>,
) -> Result<TenantDb> {
    let mut write_options = WriteOptions::default();
    write_options.set_sync(config.sync_writes);
    let meta = db
        .cf_handle(cf::CF_META)
        .ok_or_else(|| Error::corrupt("tenant database", "meta column family missing"))?;
    let version = db.get_pinned_cf(meta, keys::META_FORMAT_VERSION).map_err(map_rocks_error)?;
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
    drop(version);
    if let Some(crypto) = &mut crypto {
        match db {
            Handle::Writer(_) => register_session(&db, crypto)?,
            Handle::Reader(_) => crypto.learn_sessions(reader::sessions(&db)?),
        }
    }
    let (tenant_config, span) = reader::read_settings(id.clone(), &db, crypto.as_ref())?;
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
        vector_precision: config.vector_precision,
        exact_search_below: config.exact_search_below,
        lower_indexer_priority: config.lower_indexer_priority,
        crypto: crypto.map(Arc::new),
        scratch: Mutex::new(Vec::new()),
        text_fold: Mutex::new(()),
    };
    if let Some(dimension) = tenant_config.dimension {
        tenant.load_vectors(dimension)?;
    }
    if !tenant.db.is_reader() {
        crate::rocks::text::backfill(&tenant)?;
    }
    Ok(tenant)
}

pub(super) struct Entry {
    db: Arc<TenantDb>,
    last_used: u64,
}

#[derive(Default)]
pub(super) struct Open {
    entries: HashMap<TenantId, Entry>,
    clock: u64,
}

/// The open tenant databases of one provider.
pub(crate) struct TenantCache {
    config: RocksConfig,
    memory: SharedMemory,
    open: Mutex<Open>,
    /// The key-encryption key, when a master key is configured: new tenants are encrypted.
    kek: Option<MasterKek>,
    /// A reader's own directory (outside the store) for its secondaries' info logs, removed
    /// when the cache closes (after the databases, declared above it, have closed).
    reader_dir: Option<tempfile::TempDir>,
}

impl TenantCache {
    pub(crate) fn new(config: RocksConfig) -> Result<Self> {
        let reader_dir = if config.read_only {
            // A reader creates nothing in the store: a missing root holds no tenants.
            let dir = tempfile::Builder::new().prefix("percolate-reader-").tempdir();
            Some(dir.map_err(|e| io_error(&std::env::temp_dir(), e))?)
        } else {
            std::fs::create_dir_all(&config.root).map_err(|e| io_error(&config.root, e))?;
            None
        };
        let memory = SharedMemory::new(&config);
        let kek = config.master_key.as_ref().map(|key| key.kek(&config.root)).transpose()?;
        Ok(Self { config, memory, open: Mutex::new(Open::default()), kek, reader_dir })
    }

    /// Refuses a write to the store when it is open read-only.
    fn writable(&self, what: &'static str) -> Result<()> {
        match self.reader_dir {
            Some(_) => Err(Error::ReadOnly { what }),
            None => Ok(()),
        }
    }

    /// Catches every open tenant up with the writer (see [`TenantDb::catch_up`]); returns how
    /// many found new writes.
    pub(crate) fn catch_up(&self) -> Result<usize> {
        let mut moved = 0;
        for tenant in self.open_now() {
            moved += usize::from(tenant.catch_up()?);
        }
        Ok(moved)
    }

    pub(crate) fn config(&self) -> &RocksConfig {
        &self.config
    }

    pub(crate) fn create(&self, id: &TenantId, tenant_config: &TenantConfig) -> Result<()> {
        self.writable("create a tenant")?;
        let open = self.open.lock();
        let dir = self.tenant_path(id)?;
        if open.entries.contains_key(id) || dir.exists() {
            return Err(Error::already_exists("tenant", id));
        }
        // Build in a staging directory, then rename: the tenant appears whole or not at all.
        let staging =
            self.config.root.join(format!(".staging-{}-{}", id, uuid::Uuid::now_v7().simple()));
        let result = (|| {
            let db = Handle::Writer(open_db(
                &self.config,
                &self.memory,
                &staging,
                true,
                self.kek.is_some(),
            )?);
            let mut crypto = self
                .kek
                .as_ref()
                .map(|kek| kek.create_tenant_key(&staging, id, cf::SEALED_DOMAINS))
                .transpose()?;
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
                Some(crypto) => crypto.seal(cf::CF_META, keys::META_CONFIG, &config)?,
                None => config,
            };
            batch.put_cf(meta, keys::META_CONFIG, config);
            batch.put_cf(meta, keys::META_TEXT_INDEX, []);
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            db.writer("create a tenant")?.write_opt(batch, &sync).map_err(map_rocks_error)?;
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
            let tenant = Arc::clone(&entry.db);
            drop(open);
            // A reader's tenant shows the writer's commits as of each open.
            tenant.catch_up()?;
            return Ok(tenant);
        }
        let dir = self.tenant_path(id)?;
        if !dir.is_dir() {
            return Err(Error::not_found("tenant", id));
        }
        let crypto = self.tenant_crypto(&dir, id)?;
        let sealed = crypto.is_some();
        let db = match &self.reader_dir {
            Some(own) => {
                let own = tenant_dir(own.path(), id);
                reader::open_secondary(&self.config, &self.memory, &dir, &own, sealed)?
            }
            None => Handle::Writer(open_db(&self.config, &self.memory, &dir, false, sealed)?),
        };
        let tenant = Arc::new(load(id.clone(), db, &self.config, dir, crypto)?);
        open.entries.insert(id.clone(), Entry { db: Arc::clone(&tenant), last_used: now });
        self.evict(&mut open);
        Ok(tenant)
    }

    /// The directory of tenant `id`, refused when a symbolic link stands in its place: a
    /// tenant's files (its key file above all) are only ever reached inside the root.
    fn tenant_path(&self, id: &TenantId) -> Result<PathBuf> {
        let dir = tenant_dir(&self.config.root, id);
        match dir.symlink_metadata() {
            Ok(metadata) if metadata.file_type().is_symlink() => Err(Error::invalid(
                "tenant directory",
                format!(
                    "{} is a symbolic link; a tenant's directory must be its own",
                    dir.display()
                ),
            )),
            _ => Ok(dir),
        }
    }

    /// The sealing keys of the tenant in `dir`, if it is encrypted.
    fn tenant_crypto(&self, dir: &Path, id: &TenantId) -> Result<Option<TenantCrypto>> {
        if !crypto::is_encrypted(dir) {
            if self.kek.is_some() && !self.config.allow_plaintext_tenants {
                return Err(Error::Crypto(format!(
                    "tenant {id} has no key file (it was shredded or lost, or the tenant was made \
                     before a master key was configured): refusing to open it in plaintext \
                     (RocksConfig::allow_plaintext_tenants, or PERCOLATE_ALLOW_PLAINTEXT_TENANTS, \
                     opens tenants made without a key)"
                )));
            }
            return Ok(None);
        }
        match &self.kek {
            Some(kek) => kek.open_tenant_key(dir, id, cf::SEALED_DOMAINS).map(Some),
            None => Err(Error::Crypto(format!(
                "tenant {id} is encrypted and no master key is configured \
                 (PERCOLATE_MASTER_KEY_FILE or PERCOLATE_MASTER_KEY)"
            ))),
        }
    }

    /// Re-wraps every encrypted tenant's data key from the configured master key to `new`,
    /// one key file at a time (each replaced atomically); data is not rewritten. A rotation
    /// interrupted half-way is completed by running it again with the same keys.
    pub(crate) fn rotate_master_key(&self, new: &crate::crypto::MasterKey) -> Result<usize> {
        self.writable("rotate the master key")?;
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
        let entries = match std::fs::read_dir(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.reader_dir.is_some() => {
                return Ok(ids);
            }
            entries => entries.map_err(|e| io_error(root, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(root, e))?;
            // A tenant is a directory named by a valid id that holds a RocksDB database; staging
            // directories (leading '.') and strays are not tenants.
            let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            let is_database = !is_link && entry.path().join("CURRENT").is_file();
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
        self.writable("delete a tenant")?;
        let mut open = self.open.lock();
        let dir = self.tenant_path(id)?;
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

    /// The tenant databases open now.
    pub(crate) fn open_now(&self) -> Vec<Arc<TenantDb>> {
        self.open.lock().entries.values().map(|entry| Arc::clone(&entry.db)).collect()
    }

    pub(crate) fn memory(&self) -> &SharedMemory {
        &self.memory
    }

    /// Evicts every block the cache may evict (those pinned by open tables stay), keeping its
    /// capacity for what comes next.
    pub(crate) fn empty_block_cache(&self) {
        // The cache is shared by reference: this clone resizes the one every tenant uses.
        let mut cache = self.memory.cache.clone();
        cache.set_capacity(0);
        cache.set_capacity(self.config.block_cache_bytes);
    }
}

/// An I/O failure on `path`, named in the message: [`Error::DiskFull`] when the device is
/// full, [`Error::Backend`] otherwise.
pub(crate) fn io_error(path: &Path, error: std::io::Error) -> Error {
    let named = std::io::Error::new(error.kind(), format!("{}: {error}", path.display()));
    Error::io(crate::rocks::NAME, named)
}

#[cfg(test)]
mod tests {
    use super::table_cache_shard_bits;

    /// Every shard of the table cache holds at least 32 tables (or the whole limit, when it is
    /// smaller), so tables that hash to one shard do not evict each other.
    #[test]
    fn table_cache_shards_hold_at_least_32_tables() {
        for max_open_files in [-1, 0, 10, 32, 63, 64, 100, 1000, 5000, 1 << 20] {
            let bits = table_cache_shard_bits(max_open_files);
            assert!((0..=6).contains(&bits), "{max_open_files}: {bits} bits");
            assert!(bits == 0 || max_open_files >> bits >= 32, "{max_open_files}: {bits} bits");
        }
        assert_eq!(table_cache_shard_bits(64), 1);
    }
}
