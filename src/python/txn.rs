//! `Transaction`: an engine transaction as a Python context manager.
//!
//! An [`EngineTxn`] borrows the tenant handle it runs on, and a Python object must own what it
//! holds; `self_cell` ties the handle and the transaction together safely (one cell type per
//! provider: `self_cell` types cannot be generic). The cell sits in a mutex: Python may call
//! from any thread, and a transaction is `Send` but not `Sync`. Every call blocks on the
//! runtime with the GIL released.
//!
//! `with tenant.transaction() as tx:` commits when the block ends normally and rolls back
//! when it raises; a commit that loses a race raises `ConflictError`. A transaction dropped
//! unfinished rolls back.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::records::{
    PyEdge, PyEntity, PyMoment, PyResource, id_arg, new_edge, new_entity, new_moment, new_resource,
};
use super::{AnyTenant, Session, check_pid};
use crate::error::{Error, Result};
use crate::model::{EdgeId, EntityId, MomentId, ResourceId};
use crate::postgres::PgProvider;
use crate::rocks::RocksProvider;
use crate::{EngineTxn, TenantHandle};

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTransaction>()
}

/// `None` once committed or rolled back: both consume the transaction.
type RocksDependent<'a> = Option<EngineTxn<'a, RocksProvider>>;
type PgDependent<'a> = Option<EngineTxn<'a, PgProvider>>;

self_cell::self_cell!(
    struct RocksTxnCell {
        owner: TenantHandle<RocksProvider>,
        #[not_covariant]
        dependent: RocksDependent,
    }
);

self_cell::self_cell!(
    struct PgTxnCell {
        owner: TenantHandle<PgProvider>,
        #[not_covariant]
        dependent: PgDependent,
    }
);

enum AnyTxn {
    Rocks(RocksTxnCell),
    Pg(PgTxnCell),
}

fn finished() -> Error {
    Error::invalid("transaction", "already committed or rolled back")
}

/// Runs `$body` (a future over `$txn`, the provider's `EngineTxn`) to completion on `$runtime`.
macro_rules! with_txn {
    ($any:expr, $runtime:expr, |$txn:ident| $body:expr) => {
        match $any {
            AnyTxn::Rocks(cell) => cell.with_dependent_mut(|_, dependent| match dependent {
                Some($txn) => $runtime.block_on($body),
                None => Err(finished()),
            }),
            AnyTxn::Pg(cell) => cell.with_dependent_mut(|_, dependent| match dependent {
                Some($txn) => $runtime.block_on($body),
                None => Err(finished()),
            }),
        }
    };
}

/// Ends the transaction in `$any` with `$method` (`commit` or `rollback`).
macro_rules! finish {
    ($any:expr, $runtime:expr, $method:ident) => {
        match $any {
            AnyTxn::Rocks(cell) => cell.with_dependent_mut(|_, dependent| match dependent.take() {
                Some(txn) => $runtime.block_on(txn.$method()),
                None => Err(finished()),
            }),
            AnyTxn::Pg(cell) => cell.with_dependent_mut(|_, dependent| match dependent.take() {
                Some(txn) => $runtime.block_on(txn.$method()),
                None => Err(finished()),
            }),
        }
    };
}

/// A transaction on one tenant: it sees its own writes on top of one snapshot, is invisible to
/// others until it commits, and vanishes on rollback. Use it as a context manager.
#[pyclass(name = "Transaction", module = "percolate_core")]
pub(crate) struct PyTransaction {
    pid: u32,
    session: Arc<Session>,
    txn: Mutex<Option<AnyTxn>>,
}

impl PyTransaction {
    /// Begins a transaction on `tenant`.
    pub(crate) fn begin(
        py: Python<'_>,
        session: Arc<Session>,
        tenant: AnyTenant,
    ) -> PyResult<Self> {
        let runtime = session.runtime()?;
        let txn = py.detach(|| -> Result<AnyTxn> {
            Ok(match tenant {
                AnyTenant::Rocks(handle) => {
                    AnyTxn::Rocks(RocksTxnCell::try_new(handle, |handle| {
                        runtime.block_on(handle.begin()).map(Some)
                    })?)
                }
                AnyTenant::Pg(handle) => AnyTxn::Pg(PgTxnCell::try_new(handle, |handle| {
                    runtime.block_on(handle.begin()).map(Some)
                })?),
            })
        })?;
        Ok(Self { pid: std::process::id(), session, txn: Mutex::new(Some(txn)) })
    }

    /// Runs `op` on the open transaction with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&tokio::runtime::Runtime, &mut AnyTxn) -> Result<T> + Send,
    ) -> PyResult<T> {
        check_pid(self.pid)?;
        // After the engine's close() a transaction may only be rolled back.
        self.session.engine()?;
        let runtime = self.session.runtime()?;
        Ok(py.detach(|| {
            let mut guard = self.txn.lock();
            match guard.as_mut() {
                Some(txn) => op(&runtime, txn),
                None => Err(finished()),
            }
        })?)
    }

    /// Takes the transaction out and ends it with `commit` (or rolls it back).
    fn end(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        check_pid(self.pid)?;
        if commit {
            self.session.engine()?;
        }
        let runtime = self.session.runtime()?;
        Ok(py.detach(|| {
            let Some(mut txn) = self.txn.lock().take() else { return Err(finished()) };
            if commit {
                finish!(&mut txn, runtime, commit)
            } else {
                finish!(&mut txn, runtime, rollback)
            }
        })?)
    }
}

impl Drop for PyTransaction {
    fn drop(&mut self) {
        let txn = self.txn.get_mut().take();
        if std::process::id() != self.pid {
            // A forked child: the transaction's connection and locks are the parent's.
            std::mem::forget(txn);
        }
    }
}

/// The `#[pymethods]` of `Transaction`: a read, an update and a delete per record kind, from
/// the tables of the one invocation below (each kind's is the same code over another type),
/// then `$extra`, the methods written out.
macro_rules! transaction_methods {
    (
        get: [$($get:ident($get_id:ty) -> $got:ident: $get_doc:literal),* $(,)?],
        update: [$($update:ident($updated:ident): $update_doc:literal),* $(,)?],
        delete: [$($delete:ident($delete_id:ty): $delete_doc:literal),* $(,)?],
        { $($extra:tt)* }
    ) => {
        #[pymethods]
        impl PyTransaction {
            $(
                #[doc = $get_doc]
                fn $get<'py>(
                    &self,
                    py: Python<'py>,
                    id: &Bound<'py, PyAny>,
                ) -> PyResult<Bound<'py, PyAny>> {
                    let id: $get_id = id_arg(id)?;
                    let record =
                        self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.$get(id)))?;
                    $got::from(record).into_bound_py_any(py)
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
                    let stored =
                        self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.$update(record)))?;
                    $updated::from(stored).into_bound_py_any(py)
                }
            )*

            $(
                #[doc = $delete_doc]
                fn $delete(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<()> {
                    let id: $delete_id = id_arg(id)?;
                    self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.$delete(id)))
                }
            )*

            $($extra)*
        }
    };
}

transaction_methods!(
    get: [
        get_resource(ResourceId) -> PyResource:
            "Reads a resource, seeing this transaction's writes.",
        get_entity(EntityId) -> PyEntity: "Reads an entity, seeing this transaction's writes.",
        get_edge(EdgeId) -> PyEdge: "Reads an edge, seeing this transaction's writes.",
        get_moment(MomentId) -> PyMoment: "Reads a moment, seeing this transaction's writes.",
    ],
    update: [
        update_resource(PyResource): "Replaces a resource in the transaction.",
        update_entity(PyEntity): "Replaces an entity in the transaction.",
        update_moment(PyMoment): "Replaces a moment in the transaction.",
    ],
    delete: [
        delete_resource(ResourceId): "Deletes a resource in the transaction.",
        delete_entity(EntityId): "Deletes an entity and its edges in the transaction.",
        delete_edge(EdgeId): "Deletes an edge in the transaction.",
        delete_moment(MomentId): "Deletes a moment in the transaction.",
    ],
    {
        /// Creates a resource in the transaction.
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
            let resource =
                self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.create_resource(new)))?;
            PyResource::from(resource).into_bound_py_any(py)
        }

        /// Creates an entity in the transaction.
        #[pyo3(signature = (name, kind, *, properties = None))]
        fn create_entity<'py>(
            &self,
            py: Python<'py>,
            name: String,
            kind: String,
            properties: Option<&Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let new = new_entity(name, kind, properties)?;
            let entity =
                self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.create_entity(new)))?;
            PyEntity::from(entity).into_bound_py_any(py)
        }

        /// Creates an edge in the transaction; its ends may be entities created in it.
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
            let edge = self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.create_edge(new)))?;
            PyEdge::from(edge).into_bound_py_any(py)
        }

        /// The edges of an entity, seeing this transaction's writes.
        #[pyo3(signature = (entity_id, direction = "out", *, relation = None))]
        fn get_edges<'py>(
            &self,
            py: Python<'py>,
            entity_id: &Bound<'py, PyAny>,
            direction: &str,
            relation: Option<String>,
        ) -> PyResult<Vec<PyEdge>> {
            let entity: EntityId = id_arg(entity_id)?;
            let direction = direction.parse::<crate::model::Direction>()?;
            let edges = self.run(py, move |rt, any| {
                with_txn!(any, rt, |txn| txn.get_edges(entity, direction, relation.as_deref()))
            })?;
            Ok(edges.into_iter().map(PyEdge::from).collect())
        }

        /// Creates a moment in the transaction.
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
            let moment =
                self.run(py, move |rt, any| with_txn!(any, rt, |txn| txn.create_moment(new)))?;
            PyMoment::from(moment).into_bound_py_any(py)
        }

        /// Commits; ``ConflictError`` if a concurrent commit won (nothing of this transaction is
        /// kept then).
        fn commit(&self, py: Python<'_>) -> PyResult<()> {
            self.end(py, true)
        }

        /// Rolls back: nothing of this transaction is kept.
        fn rollback(&self, py: Python<'_>) -> PyResult<()> {
            self.end(py, false)
        }

        /// Whether it is still open (neither committed nor rolled back).
        #[getter]
        fn active(&self) -> bool {
            self.txn.lock().is_some()
        }

        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        /// Commits if the block succeeded and the transaction is still open; rolls back if it
        /// raised (a failed rollback does not hide the block's exception).
        fn __exit__(
            &self,
            py: Python<'_>,
            exc_type: Option<&Bound<'_, PyType>>,
            _exc: Option<&Bound<'_, PyAny>>,
            _traceback: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<bool> {
            if !self.active() {
                return Ok(false);
            }
            match exc_type {
                None => self.end(py, true)?,
                Some(_) => {
                    let _ = self.end(py, false);
                }
            }
            Ok(false)
        }

        fn __repr__(&self) -> String {
            format!("Transaction(active={})", self.active())
        }
    }
);
