//! Opening tenant databases and the bounded cache of open ones: options, creation in a
//! staging directory, encryption sessions, eviction, deletion. Owns every path under the root.

#[allow(unused_imports)]
use super::*;

pub(super) fn db_options(config: &RocksConfig, cache: &Cache, create: bool) -> Options {
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
pub(super) fn open_db(
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
pub(super) fn register_session(
    db: &OptimisticTransactionDB,
    crypto: &mut TenantCrypto,
) -> Result<()> {
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
pub(super) fn load(
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
        vector_precision: config.vector_precision,
        exact_search_below: config.exact_search_below,
        lower_indexer_priority: config.lower_indexer_priority,
        crypto: crypto.map(Arc::new),
        scratch: Mutex::new(Vec::new()),
    };
    if let Some(dimension) = tenant_config.dimension {
        tenant.load_vectors(dimension)?;
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
        let dir = self.tenant_path(id)?;
        if open.entries.contains_key(id) || dir.exists() {
            return Err(Error::already_exists("tenant", id));
        }
        // Build in a staging directory, then rename: the tenant appears whole or not at all.
        let staging =
            self.config.root.join(format!(".staging-{}-{}", id, uuid::Uuid::now_v7().simple()));
        let result = (|| {
            let db = open_db(&self.config, &self.block_cache, &staging, true, self.kek.is_some())?;
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
        let dir = self.tenant_path(id)?;
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
}

pub(super) fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::Backend {
        provider: crate::rocks::NAME,
        source: Box::new(std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))),
    }
}
