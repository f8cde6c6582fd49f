//! `Tenant` and `AsyncTenant`: every record operation of one tenant, blocking or awaitable.
//!
//! Both classes get their methods from one macro, [`record_methods!`], so the two cannot drift:
//! each method converts its arguments while holding the GIL, builds one `Send + 'static`
//! future over the engine, and hands it to a runner: [`run_blocking`] drives it on the
//! process's runtime with the GIL released, [`run_async`] returns an asyncio awaitable that
//! the runtime drives.
//!
//! `MemoryEngine` extends `Tenant` (and `AsyncMemoryEngine` extends `AsyncTenant`), so the
//! one-tenant form `MemoryEngine(..., tenant_id=...)` has every record method of its tenant.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde_json::Value;

use super::asyncio::EngineRuntime;
use super::errors::{PercolateError, invalid};
use super::recall::{RecallHits, TextHits, window_arg};
use super::records::{
    Hits, Json, Nothing, PyEdge, PyEntity, PyMoment, PyReached, PyResource, Records, id_arg,
    metadata_arg, new_edge, new_entity, new_moment, new_resource, optional_timestamp, py_to_json,
};
use super::{AnyTenant, ProcessLocal, Session, dispatch, vectors};
use crate::error::{Error, Result};
use crate::model::{
    Direction, EdgeId, EntityId, EntityQuery, Filter, MAX_DIMENSION, MAX_K, MomentId, NewResource,
    RecallQuery, RecallWeights, RecordKind, ResourceId, ScoredResource, SearchQuery, TextQuery,
    TextTarget, TimeRange, TraverseQuery,
};
use crate::rocks::RocksProvider;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTenant>()?;
    m.add_class::<PyAsyncTenant>()?;
    Ok(())
}

/// What a tenant object holds: the session it came from and its handle, if it has one (an
/// engine opened without `tenant_id` has none).
pub(crate) struct TenantCore {
    pub(crate) session: Arc<Session>,
    pub(crate) slot: Option<Arc<ProcessLocal<AnyTenant>>>,
}

impl TenantCore {
    /// The tenant handle; an error if there is none, the engine is closed, or this is a forked
    /// child.
    pub(crate) fn handle(&self) -> PyResult<AnyTenant> {
        match &self.slot {
            Some(slot) => slot.get(),
            None => Err(PercolateError::new_err(
                "this engine has no default tenant: pass tenant_id= when opening it, or use \
                 engine.tenant(id)",
            )),
        }
    }
}

/// Runs `future` to completion on the session's runtime with the GIL released, then converts
/// its value.
pub(crate) fn run_blocking<'py, T, F>(
    py: Python<'py>,
    session: &Session,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send,
    T: for<'a> IntoPyObject<'a> + Send,
{
    let runtime = session.runtime()?;
    let value = py.detach(|| runtime.block_on(future))?;
    value.into_bound_py_any(py)
}

/// An asyncio awaitable for `future`, driven by the session's runtime.
pub(crate) fn run_async<'py, T, F>(
    py: Python<'py>,
    session: &Session,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // The same runtime: the session's is this process's (checked here), and EngineRuntime
    // spawns on this process's.
    session.runtime()?;
    pyo3_async_runtimes::generic::future_into_py::<EngineRuntime, F, T>(py, future)
}

// ---- argument conversions ------------------------------------------------------------------

fn direction_arg(direction: &str) -> PyResult<Direction> {
    Ok(direction.parse::<Direction>()?)
}

fn filter_arg(filter: Option<&Bound<'_, PyAny>>, what: &'static str) -> PyResult<Option<Filter>> {
    match filter {
        Some(filter) if !filter.is_none() => Ok(Some(Filter::parse(&py_to_json(filter, what)?)?)),
        _ => Ok(None),
    }
}

fn kind_arg(kind: &str) -> PyResult<RecordKind> {
    match kind {
        "resource" | "resources" => Ok(RecordKind::Resource),
        "entity" | "entities" => Ok(RecordKind::Entity),
        "edge" | "edges" => Ok(RecordKind::Edge),
        "moment" | "moments" => Ok(RecordKind::Moment),
        other => {
            Err(invalid("kind", format!("{other:?} (expected resource, entity, edge or moment)")))
        }
    }
}

/// The new resources of a batch: `contents`, with `embeddings`, `metadatas` and `uris` lined up
/// with it when given.
fn batch_arg(
    contents: &Bound<'_, PyAny>,
    embeddings: Option<&Bound<'_, PyAny>>,
    metadatas: Option<&Bound<'_, PyAny>>,
    uris: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<NewResource>> {
    if contents.is_instance_of::<PyString>() {
        return Err(invalid("contents", "a str where a list of str was expected"));
    }
    let contents: Vec<String> = contents.extract()?;
    let count = contents.len();
    let lined_up = |what: &'static str, len: usize| {
        if len == count {
            Ok(())
        } else {
            Err(invalid(what, format!("{len} given for {count} contents")))
        }
    };
    let mut embeddings = match embeddings {
        Some(value) if !value.is_none() => {
            let rows = vectors::rows(value)?;
            lined_up("embeddings", rows.len())?;
            rows.into_iter().map(Some).collect()
        }
        _ => vec![None; count],
    };
    let mut metadatas = match metadatas {
        Some(value) if !value.is_none() => {
            let maps = value
                .try_iter()?
                .map(|item| metadata_arg(Some(&item?), "metadata"))
                .collect::<PyResult<Vec<_>>>()?;
            lined_up("metadatas", maps.len())?;
            maps
        }
        _ => Vec::new(),
    };
    let mut uris: Vec<Option<String>> = match uris {
        Some(value) if !value.is_none() => {
            let uris: Vec<Option<String>> = value.extract()?;
            lined_up("uris", uris.len())?;
            uris
        }
        _ => Vec::new(),
    };
    // Taken from the back, so nothing is copied.
    let mut batch = Vec::with_capacity(count);
    for content in contents.into_iter().rev() {
        batch.push(NewResource {
            content,
            embedding: embeddings.pop().flatten(),
            metadata: metadatas.pop().unwrap_or_default(),
            uri: uris.pop().flatten(),
        });
    }
    batch.reverse();
    Ok(batch)
}

/// Search, with an explicit HNSW beam width when `ef` is given. The engine's own search takes
/// no `ef`, so the checks it makes are made here first, with its wording.
async fn search(
    tenant: AnyTenant,
    query: SearchQuery,
    ef: Option<usize>,
) -> Result<Vec<ScoredResource>> {
    let Some(ef) = ef else {
        return dispatch!(tenant, AnyTenant, |handle| handle.search_resources(&query).await);
    };
    let AnyTenant::Rocks(handle) = tenant else {
        return Err(Error::invalid(
            "ef",
            "a per-search beam width is a rocksdb option; a postgres engine takes ef_search= \
             when it is opened",
        ));
    };
    if ef == 0 {
        return Err(Error::invalid("ef", "0 (must be at least 1)"));
    }
    if query.k == 0 || query.k > MAX_K {
        return Err(Error::invalid("k", format!("{} (must be 1..={MAX_K})", query.k)));
    }
    let length = query.vector.len();
    if length == 0 || length > MAX_DIMENSION {
        return Err(Error::invalid(
            "query vector",
            format!("dimension {length} (must be 1..={MAX_DIMENSION})"),
        ));
    }
    if let Some(position) = query.vector.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(
            "query vector",
            format!("value at {position} is {}", query.vector[position]),
        ));
    }
    match handle.config().await?.dimension {
        None => Ok(Vec::new()),
        Some(dimension) if dimension as usize != length => Err(Error::invalid(
            "query vector",
            format!("dimension {length} but the tenant's is {dimension}"),
        )),
        Some(_) => RocksProvider::search_with_ef(handle.provider_tenant(), &query, ef),
    }
}

/// Where an export goes: a file it opens, or a Python binary file object.
pub(crate) enum Sink {
    /// A file at a path.
    File(std::fs::File),
    /// An object with `write(bytes)`.
    Python(Py<PyAny>),
}

impl Sink {
    /// A path (`str` or `os.PathLike`) or an object with a `write` method.
    pub(crate) fn from_py(destination: &Bound<'_, PyAny>) -> PyResult<Self> {
        if destination.hasattr("write")? {
            return Ok(Sink::Python(destination.clone().unbind()));
        }
        let path: PathBuf = destination.extract()?;
        let file = std::fs::File::create(&path).map_err(|e| {
            PyErr::from(Error::Backend {
                provider: "export",
                source: format!("cannot create {}: {e}", path.display()).into(),
            })
        })?;
        Ok(Sink::File(file))
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(file) => file.write(bytes),
            Sink::Python(object) => Python::attach(|py| {
                object
                    .bind(py)
                    .call_method1("write", (PyBytes::new(py, bytes),))
                    .map_err(std::io::Error::other)?;
                Ok(bytes.len())
            }),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(file) => file.flush(),
            Sink::Python(object) => Python::attach(|py| {
                if object.bind(py).hasattr("flush").map_err(std::io::Error::other)? {
                    object.bind(py).call_method0("flush").map_err(std::io::Error::other)?;
                }
                Ok(())
            }),
        }
    }
}

/// The tenant's configuration as a dict.
fn config_json(config: crate::model::TenantConfig) -> Json {
    Json(serde_json::json!({ "dimension": config.dimension, "metric": config.metric.as_str() }))
}

/// Defines every record method on `$class`, running each future with `$run`; `$extra` holds
/// methods only that class has.
macro_rules! record_methods {
    ($class:ident, $run:ident, { $($extra:tt)* }) => {
        record_methods!(@impl $class, $run, { $($extra)* },
            get: [
                get_resource(ResourceId) -> PyResource: "The resource with this id.",
                get_entity(EntityId) -> PyEntity: "The entity with this id.",
                get_edge(EdgeId) -> PyEdge: "The edge with this id.",
                get_moment(MomentId) -> PyMoment: "The moment with this id.",
            ],
            update: [
                update_resource(PyResource):
                    "Replaces a resource's fields (found by its id); returns what is stored.",
                update_entity(PyEntity):
                    "Replaces an entity's fields (found by its id); returns what is stored.",
                update_moment(PyMoment):
                    "Replaces a moment (found by its id); returns what is stored.",
            ],
            delete: [
                delete_resource(ResourceId): "Deletes a resource.",
                delete_entity(EntityId): "Deletes an entity and every edge that touches it.",
                delete_edge(EdgeId): "Deletes an edge.",
                delete_moment(MomentId): "Deletes a moment.",
            ],
        );
    };
    (@impl $class:ident, $run:ident, { $($extra:tt)* },
        get: [$($get:ident($get_id:ty) -> $got:ident: $get_doc:literal),* $(,)?],
        update: [$($update:ident($updated:ident): $update_doc:literal),* $(,)?],
        delete: [$($delete:ident($delete_id:ty): $delete_doc:literal),* $(,)?] $(,)?
    ) => {
        #[pymethods]
        impl $class {
            $(
                #[doc = $get_doc]
                fn $get<'py>(
                    &self,
                    py: Python<'py>,
                    id: &Bound<'py, PyAny>,
                ) -> PyResult<Bound<'py, PyAny>> {
                    let id: $get_id = id_arg(id)?;
                    let tenant = self.core.handle()?;
                    $run(py, &self.core.session, async move {
                        let record = dispatch!(tenant, AnyTenant, |handle| handle.$get(id).await)?;
                        Ok($got::from(record))
                    })
                }
            )*

            $(
                #[doc = $update_doc]
                fn $update<'py>(
                    &self,
                    py: Python<'py>,
                    record: PyRef<'py, $updated>,
                ) -> PyResult<Bound<'py, PyAny>> {
                    let record = record.to_rust(py)?;
                    let tenant = self.core.handle()?;
                    $run(py, &self.core.session, async move {
                        let stored =
                            dispatch!(tenant, AnyTenant, |handle| handle.$update(record).await)?;
                        Ok($updated::from(stored))
                    })
                }
            )*

            $(
                #[doc = $delete_doc]
                fn $delete<'py>(
                    &self,
                    py: Python<'py>,
                    id: &Bound<'py, PyAny>,
                ) -> PyResult<Bound<'py, PyAny>> {
                    let id: $delete_id = id_arg(id)?;
                    let tenant = self.core.handle()?;
                    $run(py, &self.core.session, async move {
                        dispatch!(tenant, AnyTenant, |handle| handle.$delete(id).await)?;
                        Ok(Nothing)
                    })
                }
            )*

            /// The tenant's id.
            #[getter]
            fn id(&self) -> PyResult<String> {
                let tenant = self.core.handle()?;
                Ok(dispatch!(&tenant, AnyTenant, |handle| handle.id().to_string()))
            }

            /// The tenant's configuration: ``{"dimension": int | None, "metric": str}``.
            fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let config = dispatch!(tenant, AnyTenant, |handle| handle.config().await)?;
                    Ok(config_json(config))
                })
            }

            /// Creates a resource; returns it with its id and timestamps.
            #[pyo3(signature = (content, *, embedding = None, metadata = None, uri = None))]
            fn create_resource<'py>(
                &self,
                py: Python<'py>,
                content: String,
                embedding: Option<&Bound<'py, PyAny>>,
                metadata: Option<&Bound<'py, PyAny>>,
                uri: Option<String>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let new = new_resource(content, embedding, metadata, uri)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let resource =
                        dispatch!(tenant, AnyTenant, |handle| handle.create_resource(new).await)?;
                    Ok(PyResource::from(resource))
                })
            }

            /// Creates many resources in one atomic write; all are searchable when it returns.
            /// ``embeddings`` is a 2-D float32 array (one row per content) or a list of vectors.
            #[pyo3(signature = (contents, *, embeddings = None, metadatas = None, uris = None))]
            fn batch_create_resources<'py>(
                &self,
                py: Python<'py>,
                contents: &Bound<'py, PyAny>,
                embeddings: Option<&Bound<'py, PyAny>>,
                metadatas: Option<&Bound<'py, PyAny>>,
                uris: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let batch = batch_arg(contents, embeddings, metadatas, uris)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let resources = dispatch!(tenant, AnyTenant, |handle| {
                        handle.batch_create_resources(batch).await
                    })?;
                    Ok(resources.into_iter().map(PyResource::from).collect::<Vec<_>>())
                })
            }

            /// The ``k`` nearest resources to ``vector`` whose metadata matches ``filter``,
            /// nearest first. ``ef`` (rocksdb) widens the HNSW search for better recall.
            #[pyo3(signature = (vector, k = 10, *, filter = None, ef = None))]
            fn search_resources<'py>(
                &self,
                py: Python<'py>,
                vector: &Bound<'py, PyAny>,
                k: usize,
                filter: Option<&Bound<'py, PyAny>>,
                ef: Option<usize>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let query = SearchQuery {
                    vector: vectors::vector(vector)?,
                    k,
                    filter: filter_arg(filter, "filter")?,
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    Ok(Hits(search(tenant, query, ef).await?))
                })
            }

            /// The ``k`` resources (or, with ``moments=True``, moments) whose content best
            /// matches ``text`` by BM25, best first, as ``TextHit``s. Only records whose
            /// metadata matches ``filter``, and resources created (moments overlapping) between
            /// ``since`` and ``until`` (``datetime``s), count.
            #[pyo3(signature = (text, k = 10, *, moments = false, filter = None, since = None, until = None))]
            #[allow(clippy::too_many_arguments)]
            fn text_search<'py>(
                &self,
                py: Python<'py>,
                text: String,
                k: usize,
                moments: bool,
                filter: Option<&Bound<'py, PyAny>>,
                since: Option<&Bound<'py, PyAny>>,
                until: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let query = TextQuery {
                    text,
                    target: if moments { TextTarget::Moments } else { TextTarget::Resources },
                    k,
                    filter: filter_arg(filter, "filter")?,
                    window: window_arg(since, until)?,
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let hits =
                        dispatch!(tenant, AnyTenant, |handle| handle.text_search(&query).await)?;
                    Ok(TextHits(hits))
                })
            }

            /// The ``k`` resources that best fuse full text (``text``) and vector
            /// (``vector``) nearest neighbours by reciprocal rank fusion, as ``RecallHit``s
            /// that carry their fused score and their rank in each signal. Give one signal or
            /// both; ``filter``, ``since`` and ``until`` restrict every signal's candidates;
            /// each signal contributes ``candidates`` (0: ``max(4k, 50)``), weighted by
            /// ``text_weight`` and ``vector_weight``.
            #[pyo3(signature = (k = 10, *, text = None, vector = None, filter = None, since = None, until = None, candidates = 0, text_weight = 1.0, vector_weight = 1.0))]
            #[allow(clippy::too_many_arguments)]
            fn recall<'py>(
                &self,
                py: Python<'py>,
                k: usize,
                text: Option<String>,
                vector: Option<&Bound<'py, PyAny>>,
                filter: Option<&Bound<'py, PyAny>>,
                since: Option<&Bound<'py, PyAny>>,
                until: Option<&Bound<'py, PyAny>>,
                candidates: usize,
                text_weight: f64,
                vector_weight: f64,
            ) -> PyResult<Bound<'py, PyAny>> {
                let query = RecallQuery {
                    text,
                    vector: match vector {
                        Some(vector) if !vector.is_none() => Some(vectors::vector(vector)?),
                        _ => None,
                    },
                    window: window_arg(since, until)?,
                    filter: filter_arg(filter, "filter")?,
                    k,
                    candidates,
                    weights: RecallWeights { text: text_weight, vector: vector_weight },
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let hits = dispatch!(tenant, AnyTenant, |handle| handle.recall(&query).await)?;
                    Ok(RecallHits(hits))
                })
            }

            /// Creates an entity.
            #[pyo3(signature = (name, kind, *, properties = None))]
            fn create_entity<'py>(
                &self,
                py: Python<'py>,
                name: String,
                kind: String,
                properties: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let new = new_entity(name, kind, properties)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let entity =
                        dispatch!(tenant, AnyTenant, |handle| handle.create_entity(new).await)?;
                    Ok(PyEntity::from(entity))
                })
            }

            /// Entities whose names match ``text`` (every word a prefix of a word of the
            /// name), of ``kind`` and matching the ``properties`` filter when given.
            #[pyo3(signature = (text = String::new(), *, kind = None, properties = None, limit = 100))]
            fn search_entities<'py>(
                &self,
                py: Python<'py>,
                text: String,
                kind: Option<String>,
                properties: Option<&Bound<'py, PyAny>>,
                limit: usize,
            ) -> PyResult<Bound<'py, PyAny>> {
                let query = EntityQuery {
                    text,
                    kind,
                    properties: filter_arg(properties, "properties")?,
                    limit,
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let entities = dispatch!(tenant, AnyTenant, |handle| {
                        handle.search_entities(&query).await
                    })?;
                    Ok(entities.into_iter().map(PyEntity::from).collect::<Vec<_>>())
                })
            }

            /// Creates an edge ``from_id -relation-> to_id`` between two existing entities.
            #[pyo3(signature = (from_id, to_id, relation, *, weight = 1.0, properties = None))]
            fn create_edge<'py>(
                &self,
                py: Python<'py>,
                from_id: &Bound<'py, PyAny>,
                to_id: &Bound<'py, PyAny>,
                relation: String,
                weight: f32,
                properties: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let new = new_edge(from_id, to_id, relation, weight, properties)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let edge = dispatch!(tenant, AnyTenant, |handle| handle.create_edge(new).await)?;
                    Ok(PyEdge::from(edge))
                })
            }

            /// The edges of an entity: ``direction`` is "out", "in" or "both"; only those of
            /// ``relation`` when given.
            #[pyo3(signature = (entity_id, direction = "out", *, relation = None))]
            fn get_edges<'py>(
                &self,
                py: Python<'py>,
                entity_id: &Bound<'py, PyAny>,
                direction: &str,
                relation: Option<String>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let entity: EntityId = id_arg(entity_id)?;
                let direction = direction_arg(direction)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let edges = dispatch!(tenant, AnyTenant, |handle| {
                        handle.get_edges(entity, direction, relation.as_deref()).await
                    })?;
                    Ok(edges.into_iter().map(PyEdge::from).collect::<Vec<_>>())
                })
            }

            /// Breadth-first traversal from ``start``, at most ``depth`` hops, following edges
            /// in ``direction`` ("out", "in" or "both") and only of ``relations`` when given.
            /// The start is not included; each entity comes once, with its fewest hops.
            #[pyo3(signature = (start, depth = 1, *, direction = "out", relations = None))]
            fn traverse<'py>(
                &self,
                py: Python<'py>,
                start: &Bound<'py, PyAny>,
                depth: u32,
                direction: &str,
                relations: Option<Vec<String>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let query = TraverseQuery {
                    start: id_arg(start)?,
                    depth,
                    direction: direction_arg(direction)?,
                    relations: relations.unwrap_or_default(),
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let reached =
                        dispatch!(tenant, AnyTenant, |handle| handle.traverse(&query).await)?;
                    Ok(reached.into_iter().map(PyReached::from).collect::<Vec<_>>())
                })
            }

            /// Creates a moment over ``[start, end]`` (``datetime``s).
            #[pyo3(signature = (start, end, kind, *, content = String::new(), entities = None, metadata = None))]
            #[allow(clippy::too_many_arguments)]
            fn create_moment<'py>(
                &self,
                py: Python<'py>,
                start: &Bound<'py, PyAny>,
                end: &Bound<'py, PyAny>,
                kind: String,
                content: String,
                entities: Option<&Bound<'py, PyAny>>,
                metadata: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let new = new_moment(start, end, kind, content, entities, metadata)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let moment = dispatch!(tenant, AnyTenant, |handle| handle.create_moment(new).await)?;
                    Ok(PyMoment::from(moment))
                })
            }

            /// Moments overlapping ``[start, end]`` (``datetime``s; ``None`` is open), ordered
            /// by start. Touching counts as overlapping.
            #[pyo3(signature = (start = None, end = None))]
            fn moments_in_range<'py>(
                &self,
                py: Python<'py>,
                start: Option<&Bound<'py, PyAny>>,
                end: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let range = TimeRange {
                    start: optional_timestamp(start, "start")?,
                    end: optional_timestamp(end, "end")?,
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let moments =
                        dispatch!(tenant, AnyTenant, |handle| handle.moments_in_range(&range).await)?;
                    Ok(moments.into_iter().map(PyMoment::from).collect::<Vec<_>>())
                })
            }

            /// A page of at most ``limit`` records of ``kind`` ("resource", "entity", "edge"
            /// or "moment") with ids after ``after``, in id order (creation order). Pass the
            /// last id of a page as ``after`` to get the next.
            #[pyo3(signature = (kind, *, after = None, limit = 1000))]
            fn scan<'py>(
                &self,
                py: Python<'py>,
                kind: &str,
                after: Option<&Bound<'py, PyAny>>,
                limit: usize,
            ) -> PyResult<Bound<'py, PyAny>> {
                let kind = kind_arg(kind)?;
                let after = match after {
                    Some(value) if !value.is_none() => {
                        Some(id_arg::<ResourceId>(value)?.as_uuid())
                    }
                    _ => None,
                };
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let records = dispatch!(tenant, AnyTenant, |handle| {
                        handle.scan(kind, after, limit).await
                    })?;
                    Ok(Records(records))
                })
            }

            /// Writes the tenant in the portable export format (JSON Lines, checksummed) to
            /// ``destination``: a path, or a binary file object. Returns a summary dict.
            fn export<'py>(
                &self,
                py: Python<'py>,
                destination: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let sink = Sink::from_py(destination)?;
                let tenant = self.core.handle()?;
                $run(py, &self.core.session, async move {
                    let out = std::io::BufWriter::with_capacity(1 << 20, sink);
                    let summary = dispatch!(tenant, AnyTenant, |handle| {
                        crate::portable::export(&handle, out, |_| {}).await
                    })?;
                    Ok(Json(serde_json::to_value(summary).unwrap_or(Value::Null)))
                })
            }

            fn __repr__(&self) -> String {
                match self.core.handle() {
                    Ok(tenant) => dispatch!(&tenant, AnyTenant, |handle| {
                        format!("{}(id='{}')", stringify!($class).trim_start_matches("Py"), handle.id())
                    }),
                    Err(_) => format!("{}(closed)", stringify!($class).trim_start_matches("Py")),
                }
            }

            $($extra)*
        }
    };
}

/// One tenant's records, with blocking methods that release the GIL while they run. Get one
/// from ``MemoryEngine.tenant(id)`` or ``create_tenant(id)``.
#[pyclass(name = "Tenant", module = "percolate_core", subclass)]
pub(crate) struct PyTenant {
    pub(crate) core: TenantCore,
}

record_methods!(PyTenant, run_blocking, {
    /// Begins a transaction; use it as ``with tenant.transaction() as tx:`` to commit when
    /// the block succeeds and roll back when it raises. A commit that loses a race with a
    /// concurrent writer raises ``ConflictError``.
    fn transaction(&self, py: Python<'_>) -> PyResult<super::txn::PyTransaction> {
        super::txn::PyTransaction::begin(py, Arc::clone(&self.core.session), self.core.handle()?)
    }
});

/// One tenant's records, with methods that return awaitables driven by the engine's runtime.
#[pyclass(name = "AsyncTenant", module = "percolate_core", subclass)]
pub(crate) struct PyAsyncTenant {
    pub(crate) core: TenantCore,
}

record_methods!(PyAsyncTenant, run_async, {});
