//! `MemoryEngine` and `AsyncMemoryEngine`: opening a provider, the tenants of an engine,
//! import, and closing.
//!
//! The one-tenant form of the design document, `MemoryEngine(provider=..., connection_string=...,
//! tenant_id=...)`, opens the tenant and creates it when it is missing (an agent's memory
//! should not need a setup step; the multi-tenant methods are there when creation must be
//! explicit). The engine class extends `Tenant`, so every record method works on it directly.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use super::errors::invalid;
use super::records::{Json, Nothing};
use super::tenant::{PyAsyncTenant, PyTenant, TenantCore, run_async, run_blocking};
use super::{AnyEngine, AnyTenant, ProcessLocal, Session, dispatch, process_runtime};
use crate::config::{ProviderKind, Settings};
use crate::error::{Error, Result};
use crate::model::{Metric, TenantConfig, TenantId};
use crate::postgres::{PgConfig, PgProvider};
use crate::rocks::{MasterKey, RocksConfig, RocksProvider};
use crate::{MemoryEngine, Provider, TenantHandle};

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMemoryEngine>()?;
    m.add_class::<PyAsyncMemoryEngine>()?;
    Ok(())
}

/// The store directory the design document names, used when none is given.
const DEFAULT_ROCKSDB_PATH: &str = "./data/percolate.db";

/// The provider named by `provider`: "rocksdb" or "postgres", or a `ProviderType` member.
fn provider_arg(provider: Option<&Bound<'_, PyAny>>) -> PyResult<ProviderKind> {
    let Some(provider) = provider.filter(|p| !p.is_none()) else {
        return Ok(ProviderKind::Rocksdb);
    };
    // A `ProviderType` member is a `str` too; `.value` serves any other enum.
    let name: String = match provider.extract() {
        Ok(name) => name,
        Err(_) => provider.getattr("value")?.extract()?,
    };
    match name.to_ascii_lowercase().as_str() {
        "rocksdb" => Ok(ProviderKind::Rocksdb),
        "postgres" | "postgresql" => Ok(ProviderKind::Postgres),
        other => Err(invalid("provider", format!("{other:?} (expected rocksdb or postgres)"))),
    }
}

fn tenant_id_arg(id: &str) -> PyResult<TenantId> {
    Ok(TenantId::new(id)?)
}

fn tenant_config_arg(dimension: Option<u32>, metric: &str) -> PyResult<TenantConfig> {
    Ok(TenantConfig { dimension, metric: metric.parse::<Metric>()? })
}

/// How a provider is opened: from keyword arguments or from settings.
enum Opening {
    Rocks(RocksConfig),
    Pg(PgConfig),
}

/// A tenant handle registered with its session (see [`Session::adopt`]).
type TenantSlot = Arc<ProcessLocal<AnyTenant>>;

/// Opens the provider with the GIL released, and the default tenant when `tenant` is given
/// (creating it when missing).
fn open(
    py: Python<'_>,
    opening: Opening,
    tenant: Option<(TenantId, TenantConfig)>,
) -> PyResult<(Arc<Session>, Option<TenantSlot>)> {
    let runtime = process_runtime()?;
    let (kind, engine, handle) = py.detach(|| {
        runtime.block_on(async {
            Ok::<_, Error>(match opening {
                Opening::Rocks(config) => {
                    let engine = MemoryEngine::new(RocksProvider::open(config)?);
                    let handle = match &tenant {
                        Some((id, config)) => {
                            Some(AnyTenant::Rocks(open_or_create(&engine, id, *config).await?))
                        }
                        None => None,
                    };
                    (ProviderKind::Rocksdb, AnyEngine::Rocks(engine), handle)
                }
                Opening::Pg(config) => {
                    let engine = MemoryEngine::new(PgProvider::connect(config).await?);
                    let handle = match &tenant {
                        Some((id, config)) => {
                            Some(AnyTenant::Pg(open_or_create(&engine, id, *config).await?))
                        }
                        None => None,
                    };
                    (ProviderKind::Postgres, AnyEngine::Pg(engine), handle)
                }
            })
        })
    })?;
    let session = Arc::new(Session::new(kind, runtime, engine));
    let slot = handle.map(|handle| session.adopt(handle));
    Ok((session, slot))
}

/// The tenant's handle, creating the tenant when it does not exist (a concurrent creator may
/// win the race; its tenant is then opened).
async fn open_or_create<P: Provider>(
    engine: &MemoryEngine<P>,
    id: &TenantId,
    config: TenantConfig,
) -> Result<TenantHandle<P>> {
    match engine.tenant(id).await {
        Err(Error::NotFound { .. }) => match engine.create_tenant(id, config).await {
            Err(Error::AlreadyExists { .. }) => engine.tenant(id).await,
            created => created,
        },
        opened => opened,
    }
}

/// The opening described by keyword arguments.
#[allow(clippy::too_many_arguments)]
fn opening_from_args(
    provider: Option<&Bound<'_, PyAny>>,
    connection_string: Option<String>,
    admin_connection_string: Option<String>,
    pool_size: Option<usize>,
    ef_search: Option<usize>,
    master_key: Option<String>,
    allow_privileged_app_role: bool,
) -> PyResult<Opening> {
    Ok(match provider_arg(provider)? {
        ProviderKind::Rocksdb => {
            let path = connection_string.unwrap_or_else(|| DEFAULT_ROCKSDB_PATH.to_owned());
            let mut config = RocksConfig::new(path);
            if let Some(key) = master_key.filter(|key| !key.trim().is_empty()) {
                config.master_key = Some(MasterKey::from_text(&key)?);
            }
            for (name, given) in [
                ("admin_connection_string", admin_connection_string.is_some()),
                ("pool_size", pool_size.is_some()),
                ("ef_search", ef_search.is_some()),
                ("allow_privileged_app_role", allow_privileged_app_role),
            ] {
                if given {
                    return Err(invalid("arguments", format!("{name} is a postgres option")));
                }
            }
            Opening::Rocks(config)
        }
        ProviderKind::Postgres => {
            let url = connection_string.filter(|url| !url.is_empty()).ok_or_else(|| {
                invalid("connection_string", "a postgres engine needs a postgresql:// URL")
            })?;
            if master_key.is_some() {
                return Err(invalid(
                    "master_key",
                    "encryption at rest is a rocksdb option; PostgreSQL encrypts with its own \
                     means",
                ));
            }
            let mut config =
                PgConfig::new(url).with_allow_privileged_app_role(allow_privileged_app_role);
            if let Some(admin) = admin_connection_string {
                config = config.with_admin_url(admin);
            }
            if let Some(size) = pool_size {
                if size == 0 {
                    return Err(invalid("pool_size", "0 (must be at least 1)"));
                }
                config = config.with_pool_size(size);
            }
            if let Some(ef) = ef_search {
                config = config.with_ef_search(ef);
            }
            Opening::Pg(config)
        }
    })
}

/// The opening the settings describe (`PERCOLATE_*` variables over an optional TOML file).
fn opening_from_settings(config_file: Option<PathBuf>) -> PyResult<Opening> {
    let settings = Settings::load(config_file.as_deref())?;
    Ok(match settings.storage_provider {
        ProviderKind::Rocksdb => Opening::Rocks(settings.rocks_config()?),
        ProviderKind::Postgres => Opening::Pg(settings.pg_config()?),
    })
}

/// Where an import reads from: a path, or a temporary copy of a Python file object.
enum ImportSource {
    Path(PathBuf),
    Copy(tempfile::NamedTempFile),
}

impl ImportSource {
    fn from_py(source: &Bound<'_, PyAny>) -> PyResult<Self> {
        if !source.hasattr("read")? {
            return Ok(ImportSource::Path(source.extract()?));
        }
        // The import reads its file twice (verify, then write), so a stream is copied first.
        let backend = |e: std::io::Error| {
            PyErr::from(Error::Backend { provider: "import", source: Box::new(e) })
        };
        let mut copy = tempfile::NamedTempFile::new().map_err(backend)?;
        loop {
            let chunk = source.call_method1("read", (1usize << 20,))?;
            let chunk = chunk.cast::<PyBytes>().map_err(|_| {
                invalid("source", "a binary file object was expected (open it with \"rb\")")
            })?;
            if chunk.as_bytes().is_empty() {
                break;
            }
            copy.write_all(chunk.as_bytes()).map_err(backend)?;
        }
        copy.flush().map_err(backend)?;
        Ok(ImportSource::Copy(copy))
    }

    fn path(&self) -> &std::path::Path {
        match self {
            ImportSource::Path(path) => path,
            ImportSource::Copy(copy) => copy.path(),
        }
    }
}

/// Defines the engine methods on `$class`, running each future with `$run` and handing out
/// tenants as `$tenant` objects.
macro_rules! engine_methods {
    ($class:ident, $tenant:ident, $run:ident, { $($extra:tt)* }) => {
        #[pymethods]
        impl $class {
            /// Opens an engine. ``provider`` is "rocksdb" (the default) or "postgres" (or a
            /// ``ProviderType``); ``connection_string`` is the RocksDB directory (default
            /// "./data/percolate.db") or the PostgreSQL URL. With ``tenant_id``, the engine is
            /// that tenant's (created when missing, with ``dimension`` and ``metric``) and has
            /// every record method; without, use ``tenant(id)``.
            #[new]
            #[pyo3(signature = (
                provider = None, connection_string = None, tenant_id = None, *,
                admin_connection_string = None, pool_size = None, ef_search = None,
                master_key = None, dimension = None, metric = "cosine",
                allow_privileged_app_role = false
            ))]
            #[allow(clippy::too_many_arguments)]
            fn new(
                py: Python<'_>,
                provider: Option<&Bound<'_, PyAny>>,
                connection_string: Option<PathOrUrl>,
                tenant_id: Option<&str>,
                admin_connection_string: Option<String>,
                pool_size: Option<usize>,
                ef_search: Option<usize>,
                master_key: Option<String>,
                dimension: Option<u32>,
                metric: &str,
                allow_privileged_app_role: bool,
            ) -> PyResult<PyClassInitializer<Self>> {
                let opening = opening_from_args(
                    provider,
                    connection_string.map(|c| c.0),
                    admin_connection_string,
                    pool_size,
                    ef_search,
                    master_key,
                    allow_privileged_app_role,
                )?;
                let tenant = match tenant_id {
                    Some(id) => Some((tenant_id_arg(id)?, tenant_config_arg(dimension, metric)?)),
                    None => None,
                };
                let (session, slot) = open(py, opening, tenant)?;
                let core = TenantCore { session: Arc::clone(&session), slot };
                Ok(PyClassInitializer::from($tenant { core }).add_subclass(Self { session }))
            }

            /// Opens the engine the settings describe: the ``PERCOLATE_*`` environment
            /// variables the CLI reads, over the TOML ``config_file`` when given.
            #[classmethod]
            #[pyo3(signature = (config_file = None, *, tenant_id = None))]
            fn from_settings<'py>(
                cls: &Bound<'py, PyType>,
                config_file: Option<PathBuf>,
                tenant_id: Option<&str>,
            ) -> PyResult<Bound<'py, Self>> {
                let py = cls.py();
                let opening = opening_from_settings(config_file)?;
                let tenant = match tenant_id {
                    Some(id) => Some((tenant_id_arg(id)?, TenantConfig::default())),
                    None => None,
                };
                let (session, slot) = open(py, opening, tenant)?;
                let core = TenantCore { session: Arc::clone(&session), slot };
                Bound::new(py, PyClassInitializer::from($tenant { core }).add_subclass(Self { session }))
            }

            /// The provider: ``ProviderType.ROCKSDB`` or ``ProviderType.POSTGRES``.
            #[getter]
            fn provider<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                py.import("percolate_core")?
                    .getattr("ProviderType")?
                    .call1((self.session.kind.as_str(),))
            }

            /// The handle of an existing tenant (``NotFoundError`` if it does not exist).
            fn tenant<'py>(&self, py: Python<'py>, tenant_id: &str) -> PyResult<Bound<'py, PyAny>> {
                let id = tenant_id_arg(tenant_id)?;
                let engine = self.session.engine()?;
                let session = Arc::clone(&self.session);
                $run(py, &self.session, async move {
                    let handle = dispatch!(engine, AnyEngine, |engine| {
                        engine.tenant(&id).await.map(AnyTenant::from)
                    })?;
                    let slot = Some(session.adopt(handle));
                    Ok($tenant { core: TenantCore { session, slot } })
                })
            }

            /// Creates a tenant (``AlreadyExistsError`` if it exists) and returns its handle.
            #[pyo3(signature = (tenant_id, *, dimension = None, metric = "cosine"))]
            fn create_tenant<'py>(
                &self,
                py: Python<'py>,
                tenant_id: &str,
                dimension: Option<u32>,
                metric: &str,
            ) -> PyResult<Bound<'py, PyAny>> {
                let id = tenant_id_arg(tenant_id)?;
                let config = tenant_config_arg(dimension, metric)?;
                let engine = self.session.engine()?;
                let session = Arc::clone(&self.session);
                $run(py, &self.session, async move {
                    let handle = dispatch!(engine, AnyEngine, |engine| {
                        engine.create_tenant(&id, config).await.map(AnyTenant::from)
                    })?;
                    let slot = Some(session.adopt(handle));
                    Ok($tenant { core: TenantCore { session, slot } })
                })
            }

            /// The ids of every tenant, sorted.
            fn list_tenants<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let engine = self.session.engine()?;
                $run(py, &self.session, async move {
                    let ids = dispatch!(engine, AnyEngine, |engine| engine.list_tenants().await)?;
                    Ok(ids.into_iter().map(String::from).collect::<Vec<_>>())
                })
            }

            /// Call when the app goes to the background or is short of memory: writes out what
            /// the provider holds only in memory and releases its caches (RocksDB: memtables
            /// flushed, vector index snapshots written, idle tenants closed, the block cache
            /// emptied; PostgreSQL: idle connections closed). The engine stays usable.
            fn release_memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let engine = self.session.engine()?;
                $run(py, &self.session, async move {
                    dispatch!(engine, AnyEngine, |engine| engine.release_memory().await)?;
                    Ok(())
                })
            }

            /// Deletes a tenant and all its records. Every handle this engine gave out to the
            /// tenant (its own too, if it is this engine's tenant) is released first and
            /// raises from then on.
            fn delete_tenant<'py>(&self, py: Python<'py>, tenant_id: &str) -> PyResult<Bound<'py, PyAny>> {
                let id = tenant_id_arg(tenant_id)?;
                let engine = self.session.engine()?;
                let released = self.session.release_tenant(&id);
                $run(py, &self.session, async move {
                    drop(released);
                    dispatch!(engine, AnyEngine, |engine| engine.delete_tenant(&id).await)?;
                    Ok(Nothing)
                })
            }

            /// Imports an export file (a path or a binary file object) into ``tenant_id``:
            /// by default this engine's tenant, or the file's own tenant when the engine has
            /// none. The whole file is verified before anything is written; re-importing is
            /// idempotent. Returns a summary dict.
            #[pyo3(signature = (source, *, tenant_id = None))]
            fn import_<'py>(
                slf: PyRef<'py, Self>,
                py: Python<'py>,
                source: &Bound<'py, PyAny>,
                tenant_id: Option<&str>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let target = match tenant_id {
                    Some(id) => Some(tenant_id_arg(id)?),
                    None => match &slf.as_super().core.slot {
                        Some(_) => {
                            let handle = slf.as_super().core.handle()?;
                            Some(dispatch!(&handle, AnyTenant, |handle| handle.id().clone()))
                        }
                        None => None,
                    },
                };
                let source = ImportSource::from_py(source)?;
                let session = Arc::clone(&slf.session);
                let engine = session.engine()?;
                $run(py, &session, async move {
                    let summary = dispatch!(engine, AnyEngine, |engine| {
                        crate::portable::import(&engine, source.path(), target.as_ref(), |_| {})
                            .await
                    })?;
                    drop(source);
                    Ok(Json(serde_json::to_value(summary).unwrap_or(serde_json::Value::Null)))
                })
            }

            /// Releases the store: every tenant handle of this engine raises from now on, and
            /// the store closes as soon as calls in flight finish. Idempotent.
            fn close(&self, py: Python<'_>) {
                let released = self.session.close();
                py.detach(move || drop(released));
            }

            /// Whether ``close()`` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.session.engine().is_err()
            }

            $($extra)*
        }
    };
}

/// A connection string: a `str`, or an `os.PathLike` for a RocksDB directory.
struct PathOrUrl(String);

impl<'a, 'py> FromPyObject<'a, 'py> for PathOrUrl {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(text) = value.extract::<String>() {
            return Ok(PathOrUrl(text));
        }
        let path: PathBuf = value.extract()?;
        path.into_os_string()
            .into_string()
            .map(PathOrUrl)
            .map_err(|_| invalid("connection_string", "a path that is not valid UTF-8"))
    }
}

impl From<TenantHandle<RocksProvider>> for AnyTenant {
    fn from(handle: TenantHandle<RocksProvider>) -> Self {
        AnyTenant::Rocks(handle)
    }
}

impl From<TenantHandle<PgProvider>> for AnyTenant {
    fn from(handle: TenantHandle<PgProvider>) -> Self {
        AnyTenant::Pg(handle)
    }
}

/// The storage engine with blocking methods (each releases the GIL while it runs). Opened
/// with a ``tenant_id``, it is that tenant: every ``Tenant`` method works on it.
#[pyclass(name = "MemoryEngine", module = "percolate_core", extends = PyTenant)]
pub(crate) struct PyMemoryEngine {
    session: Arc<Session>,
}

engine_methods!(PyMemoryEngine, PyTenant, run_blocking, {
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes the engine.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!("MemoryEngine(provider='{}')", self.session.kind)
    }
});

/// The storage engine with methods that return awaitables, driven by the engine's tokio
/// runtime, so many calls can run at once under ``asyncio.gather``.
#[pyclass(name = "AsyncMemoryEngine", module = "percolate_core", extends = PyAsyncTenant)]
pub(crate) struct PyAsyncMemoryEngine {
    session: Arc<Session>,
}

engine_methods!(PyAsyncMemoryEngine, PyAsyncTenant, run_async, {
    fn __aenter__<'py>(slf: PyRef<'py, Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = Arc::clone(&slf.session);
        let this: Py<PyAny> = slf.into_pyobject(py)?.into_any().unbind();
        run_async(py, &session, async move { Ok(this) })
    }

    /// Closes the engine.
    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let released = self.session.close();
        run_async(py, &self.session, async move {
            drop(released);
            Ok(false)
        })
    }

    fn __repr__(&self) -> String {
        format!("AsyncMemoryEngine(provider='{}')", self.session.kind)
    }
});
