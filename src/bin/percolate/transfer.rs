//! Moving a tenant: export, import, migrate between providers, and master-key rotation.
//! Owns the provider specs of `migrate`; the format itself is `percolate::portable`.

#[allow(unused_imports)]
use super::*;

pub(crate) async fn export<P: Provider>(
    handle: &TenantHandle<P>,
    out: Option<&Path>,
    output: Output,
) -> percolate::Result<()> {
    let bar = progress_bar("export");
    let file_error = |e: std::io::Error| Error::io("export file", e);
    let summary = match out {
        None => {
            let stdout = std::io::stdout().lock();
            let writer = std::io::BufWriter::with_capacity(1 << 20, stdout);
            portable::export(handle, writer, on_progress(&bar)).await?
        }
        Some(path) => {
            // Write beside the target and rename at the end: a failed export leaves no file
            // that looks finished.
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let mut temp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| bad("--out", format!("{}: {e}", path.display())))?;
            let summary = {
                let writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
                portable::export_with_spool(handle, writer, Some(dir), on_progress(&bar)).await?
            };
            temp.as_file().sync_all().map_err(file_error)?;
            temp.persist(path).map_err(|e| file_error(e.error))?;
            summary
        }
    };
    bar.finish_and_clear();
    if out.is_some() {
        print_summary(&serde_json::to_value(&summary).unwrap_or(Value::Null), output)?;
    }
    Ok(())
}

pub(crate) async fn import<P: Provider>(
    engine: &MemoryEngine<P>,
    path: &Path,
    tenant: Option<&TenantId>,
    output: Output,
) -> percolate::Result<()> {
    let bar = progress_bar("import");
    let started = Instant::now();
    let summary = portable::import(engine, path, tenant, on_progress(&bar)).await?;
    bar.finish_and_clear();
    let mut value = serde_json::to_value(&summary).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("seconds".into(), serde_json::json!(started.elapsed().as_secs_f64()));
    }
    print_summary(&value, output)
}

/// Where a tenant lives, for `migrate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Spec {
    Rocks(PathBuf),
    Postgres { url: String, admin_url: Option<String>, pool_size: usize },
}

impl Spec {
    /// `rocksdb:PATH`, `postgres://…` / `postgresql://…` / `postgres:URL`, or a bare provider
    /// name for the location in the settings.
    pub(crate) fn parse(text: &str, settings: &Settings) -> percolate::Result<Spec> {
        let admin_url = settings.postgres_admin_url.clone();
        let pool_size = settings.postgres_pool_size.max(1);
        let spec = if text == "rocksdb" {
            Spec::Rocks(settings.rocksdb_path.clone())
        } else if let Some(path) = text.strip_prefix("rocksdb:") {
            if path.is_empty() {
                return Err(bad("provider spec", "rocksdb: needs a path (rocksdb:PATH)"));
            }
            Spec::Rocks(PathBuf::from(path))
        } else if text == "postgres" {
            let url = settings.postgres_url.clone().ok_or_else(|| {
                bad("provider spec", "postgres needs PERCOLATE_POSTGRES_URL or postgres://URL")
            })?;
            Spec::Postgres { url, admin_url, pool_size }
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Spec::Postgres { url: text.to_owned(), admin_url, pool_size }
        } else if let Some(url) = text.strip_prefix("postgres:") {
            Spec::Postgres { url: url.to_owned(), admin_url, pool_size }
        } else {
            return Err(bad(
                "provider spec",
                format!("{text:?} (expected rocksdb:PATH, postgres://URL, rocksdb or postgres)"),
            ));
        };
        let kind = match spec {
            Spec::Rocks(_) => ProviderKind::Rocksdb,
            Spec::Postgres { .. } => ProviderKind::Postgres,
        };
        if !kind.is_compiled_in() {
            return Err(not_compiled(kind));
        }
        Ok(spec)
    }
}

#[cfg(feature = "rocksdb")]
pub(crate) fn open_rocks(
    path: &Path,
    key: &Option<MasterKey>,
    read_only: bool,
) -> percolate::Result<MemoryEngine<RocksProvider>> {
    let mut config = RocksConfig::new(path);
    config.master_key = key.clone();
    config.read_only = read_only;
    Ok(MemoryEngine::new(RocksProvider::open(config)?))
}

#[cfg(feature = "postgres")]
pub(crate) async fn open_postgres(
    url: &str,
    admin_url: Option<&str>,
    pool_size: usize,
) -> percolate::Result<MemoryEngine<PgProvider>> {
    let mut config = PgConfig::new(url).with_pool_size(pool_size);
    if let Some(admin) = admin_url {
        config = config.with_admin_url(admin);
    }
    Ok(MemoryEngine::new(PgProvider::connect(config).await?))
}

/// Opens the source, then hands it to [`migrate_into`] for the destination: one
/// monomorphised path per pair of providers.
pub(crate) async fn migrate(
    from: Spec,
    to: Spec,
    tenant: &TenantId,
    rename: &TenantId,
    key: Option<MasterKey>,
    output: Output,
) -> percolate::Result<()> {
    match from {
        #[cfg(feature = "rocksdb")]
        Spec::Rocks(path) => {
            // Two providers on one RocksDB root would fight over its tenants: share one. A
            // source elsewhere is only read, so it may be migrated while an app writes it.
            let same_root = to == Spec::Rocks(path.clone());
            let source = open_rocks(&path, &key, !same_root)?;
            if same_root {
                return migrate_between(&source, &source, tenant, rename, output).await;
            }
            migrate_into(&source, to, tenant, rename, &key, output).await
        }
        #[cfg(feature = "postgres")]
        Spec::Postgres { url, admin_url, pool_size } => {
            let source = open_postgres(&url, admin_url.as_deref(), pool_size).await?;
            migrate_into(&source, to, tenant, rename, &key, output).await
        }
        #[allow(unreachable_patterns)]
        _ => Err(bad("provider spec", "provider not compiled in")),
    }
}

pub(crate) async fn migrate_into<S: Provider>(
    source: &MemoryEngine<S>,
    to: Spec,
    tenant: &TenantId,
    rename: &TenantId,
    key: &Option<MasterKey>,
    output: Output,
) -> percolate::Result<()> {
    match to {
        #[cfg(feature = "rocksdb")]
        Spec::Rocks(path) => {
            migrate_between(source, &open_rocks(&path, key, false)?, tenant, rename, output).await
        }
        #[cfg(feature = "postgres")]
        Spec::Postgres { url, admin_url, pool_size } => {
            let destination = open_postgres(&url, admin_url.as_deref(), pool_size).await?;
            migrate_between(source, &destination, tenant, rename, output).await
        }
        #[allow(unreachable_patterns)]
        _ => Err(bad("provider spec", "provider not compiled in")),
    }
}

/// Exports the tenant to a temporary file, then imports that file (verified first) into the
/// destination: an interrupted migration is completed by running it again.
pub(crate) async fn migrate_between<S: Provider, D: Provider>(
    source: &MemoryEngine<S>,
    destination: &MemoryEngine<D>,
    tenant: &TenantId,
    rename: &TenantId,
    output: Output,
) -> percolate::Result<()> {
    let started = Instant::now();
    let handle = source.tenant(tenant).await?;
    let mut spool = tempfile::NamedTempFile::new().map_err(|e| Error::io("temporary file", e))?;
    let bar = progress_bar("export");
    let exported = {
        let writer = std::io::BufWriter::with_capacity(1 << 20, spool.as_file_mut());
        portable::export(&handle, writer, on_progress(&bar)).await?
    };
    bar.finish_and_clear();
    drop(handle);
    let bar = progress_bar("import");
    let imported =
        portable::import(destination, spool.path(), Some(rename), on_progress(&bar)).await?;
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "from": S::NAME,
        "to": D::NAME,
        "tenant": tenant,
        "as": rename,
        "records": exported.trailer.records,
        "sha256": exported.trailer.sha256,
        "inserted": imported.inserted,
        "skipped": imported.skipped,
        "seconds": started.elapsed().as_secs_f64(),
    });
    print_summary(&summary, output)
}

/// `percolate rotate-key`: the configured master key's tenants move to the key in `new_key`.
#[cfg(feature = "rocksdb")]
pub(crate) fn rotate_key(
    settings: &Settings,
    new_key: &Path,
    output: Output,
) -> percolate::Result<()> {
    if settings.storage_provider != ProviderKind::Rocksdb {
        return Err(bad("rotate-key", "master keys belong to the RocksDB provider"));
    }
    let provider = RocksProvider::open(settings.rocks_config()?)?;
    let rotated = provider.rotate_master_key(&MasterKey::from_file(new_key)?)?;
    match output {
        Output::Json => print_json(&serde_json::json!({ "rotated_tenants": rotated })),
        Output::Table => print_table(&["rotated tenants"], &[vec![rotated.to_string()]]),
    }
}

#[cfg(not(feature = "rocksdb"))]
pub(crate) fn rotate_key(_: &Settings, _: &Path, _: Output) -> percolate::Result<()> {
    Err(not_compiled(ProviderKind::Rocksdb))
}
