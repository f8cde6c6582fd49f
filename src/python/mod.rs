//! The Python extension module `percolate_core._native`, re-exported by the pure-Python package
//! `percolate_core` (`python/percolate_core/`). Built by maturin with the `python` feature.
//!
//! Design decisions:
//! - **Both providers, one class.** Python chooses the provider at run time, so a session holds
//!   an [`AnyEngine`]: a `MemoryEngine<RocksProvider>` or a `MemoryEngine<PgProvider>`. Every
//!   call matches once and then runs the generic, monomorphised engine code (the house rule:
//!   no `dyn Provider`).
//! - **One tokio runtime per process, owned here.** Blocking calls run `block_on` on it with
//!   the GIL released ([`Python::detach`]); awaitables are spawned on it through
//!   pyo3-async-runtimes' generic interface ([`asyncio`]). So sync and async calls share the
//!   runtime the providers' background work (PostgreSQL connections) lives on.
//! - **Fork safety.** A session records the pid that opened it and every call compares it: in
//!   a forked child, a parent's engine raises instead of touching threads, locks, connections
//!   or nonce state that did not survive the fork. Nothing the parent opened is dropped in the
//!   child either (dropping would join threads that do not exist there or close the parent's
//!   sockets); it is forgotten. A child that opens its own engine gets a fresh runtime.
//! - **Closing is deterministic.** [`Session`] keeps every tenant slot it handed out;
//!   `close()` empties them all, so the store is released when calls in flight finish, not
//!   when the garbage collector gets to the last tenant object; `delete_tenant` empties the
//!   slots of that tenant first (RocksDB refuses to delete a tenant open handles hold).
//! - **Records convert lazily.** A record object holds the Rust record and builds its `dict`
//!   and numpy array on first access (then keeps them, so edits in place are seen by
//!   `update_*`): a search or batch that returns many records pays only for what is read.
//!
//! No `unsafe` here: the FFI glue pyo3's and numpy's macros generate is theirs, and the
//! crate-wide `unsafe_code = "deny"` holds for this module's own code.

mod asyncio;
mod bench;
mod engine;
mod errors;
mod recall;
mod records;
mod tenant;
mod txn;
mod vectors;

use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;

use crate::config::ProviderKind;
use crate::postgres::PgProvider;
use crate::rocks::RocksProvider;
use crate::{MemoryEngine, TenantHandle};

/// The module `percolate_core._native`.
#[pymodule(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    records::register(m)?;
    recall::register(m)?;
    tenant::register(m)?;
    engine::register(m)?;
    txn::register(m)?;
    bench::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// An engine over whichever provider the caller chose.
#[derive(Clone)]
pub(crate) enum AnyEngine {
    /// The embedded provider.
    Rocks(MemoryEngine<RocksProvider>),
    /// The PostgreSQL provider.
    Pg(MemoryEngine<PgProvider>),
}

/// A tenant handle of whichever provider the caller chose.
#[derive(Clone)]
pub(crate) enum AnyTenant {
    /// The embedded provider.
    Rocks(TenantHandle<RocksProvider>),
    /// The PostgreSQL provider.
    Pg(TenantHandle<PgProvider>),
}

/// Runs `$body` with `$handle` bound to the provider-specific value inside an [`AnyEngine`] or
/// [`AnyTenant`]: each arm is the same generic code, monomorphised per provider.
macro_rules! dispatch {
    ($value:expr, $kind:ident, |$handle:ident| $body:expr) => {
        match $value {
            $crate::python::$kind::Rocks($handle) => $body,
            $crate::python::$kind::Pg($handle) => $body,
        }
    };
}
pub(crate) use dispatch;

/// A value owned by the process that made it. Dropped in that process as usual; in a forked
/// child it is forgotten instead, because dropping it there would join threads or close
/// sockets that belong to the parent.
pub(crate) struct ProcessLocal<T> {
    pid: u32,
    value: RwLock<Option<T>>,
}

impl<T: Clone> ProcessLocal<T> {
    fn new(value: T) -> Self {
        Self { pid: std::process::id(), value: RwLock::new(Some(value)) }
    }

    /// A clone of the value; an error in a forked child or once the value was taken.
    fn get(&self) -> PyResult<T> {
        check_pid(self.pid)?;
        self.value.read().clone().ok_or_else(errors::closed)
    }

    /// Takes the value out, so it drops when its last clone does.
    fn take(&self) -> Option<T> {
        self.value.write().take()
    }
}

impl<T> Drop for ProcessLocal<T> {
    fn drop(&mut self) {
        // `get_mut` takes no lock: a lock a parent thread held at fork time stays held forever
        // in the child.
        let value = self.value.get_mut().take();
        if std::process::id() != self.pid {
            std::mem::forget(value);
        }
    }
}

/// The error for a value used in a process forked from the one that opened it.
fn check_pid(pid: u32) -> PyResult<()> {
    if std::process::id() == pid {
        Ok(())
    } else {
        Err(errors::PercolateError::new_err(format!(
            "this engine was opened in process {pid} and cannot be used in forked process {}: \
             its threads, locks and connections did not survive the fork; open a new engine \
             in the child (or use the 'spawn' start method)",
            std::process::id()
        )))
    }
}

/// One opened engine and what hangs off it: the runtime it runs on and every tenant slot it
/// handed out.
pub(crate) struct Session {
    pid: u32,
    kind: ProviderKind,
    runtime: ProcessLocal<Arc<tokio::runtime::Runtime>>,
    engine: ProcessLocal<AnyEngine>,
    tenants: Mutex<Vec<Weak<ProcessLocal<AnyTenant>>>>,
}

impl Session {
    fn new(kind: ProviderKind, runtime: Arc<tokio::runtime::Runtime>, engine: AnyEngine) -> Self {
        Self {
            pid: std::process::id(),
            kind,
            runtime: ProcessLocal::new(runtime),
            engine: ProcessLocal::new(engine),
            tenants: Mutex::new(Vec::new()),
        }
    }

    /// The engine; an error after `close()` or in a forked child.
    fn engine(&self) -> PyResult<AnyEngine> {
        self.engine.get()
    }

    /// The runtime; an error in a forked child.
    fn runtime(&self) -> PyResult<Arc<tokio::runtime::Runtime>> {
        check_pid(self.pid)?;
        self.runtime.value.read().clone().ok_or_else(errors::closed)
    }

    /// Registers a tenant handle so that `close()` releases it.
    fn adopt(&self, tenant: AnyTenant) -> Arc<ProcessLocal<AnyTenant>> {
        let slot = Arc::new(ProcessLocal::new(tenant));
        let mut tenants = self.tenants.lock();
        tenants.retain(|weak| weak.strong_count() > 0);
        tenants.push(Arc::downgrade(&slot));
        slot
    }

    /// Releases every handle this session gave out to tenant `id`, before the tenant is
    /// deleted: RocksDB refuses to delete a tenant that open handles hold, and when Python
    /// drops an object is up to its garbage collector. Returns them, to be dropped by the
    /// caller.
    fn release_tenant(&self, id: &crate::model::TenantId) -> Vec<AnyTenant> {
        let mut released = Vec::new();
        for weak in self.tenants.lock().iter() {
            let Some(slot) = weak.upgrade() else { continue };
            let mut value = slot.value.write();
            let matches = value
                .as_ref()
                .is_some_and(|tenant| dispatch!(tenant, AnyTenant, |handle| handle.id() == id));
            if matches {
                released.extend(value.take());
            }
        }
        released
    }

    /// Releases the engine and every tenant handle it gave out; what they hold is dropped
    /// here unless a call in flight still holds a clone. Returns what was released, to be
    /// dropped by the caller (with the GIL released: closing a RocksDB flushes and joins).
    fn close(&self) -> Vec<Released> {
        let mut released = Vec::new();
        for weak in self.tenants.lock().drain(..) {
            if let Some(tenant) = weak.upgrade().and_then(|slot| slot.take()) {
                released.push(Released::Tenant(tenant));
            }
        }
        if let Some(engine) = self.engine.take() {
            released.push(Released::Engine(engine));
        }
        released
    }
}

/// Something [`Session::close`] released, dropped when this is.
pub(crate) enum Released {
    /// A tenant handle.
    Tenant(#[allow(dead_code)] AnyTenant),
    /// The engine.
    Engine(#[allow(dead_code)] AnyEngine),
}

/// The runtime of this process, made on first use; a forked child makes its own, because the
/// parent's worker threads do not exist in it.
fn process_runtime() -> PyResult<Arc<tokio::runtime::Runtime>> {
    static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RUNTIME.lock();
    match slot.as_ref() {
        Some((owner, runtime)) if *owner == pid => return Ok(Arc::clone(runtime)),
        _ => {}
    }
    if let Some(inherited) = slot.take() {
        // The parent's runtime: its threads are gone, so it must never be shut down here.
        std::mem::forget(inherited);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("percolate-py")
            .build()
            .map_err(|e| errors::PercolateError::new_err(format!("cannot start runtime: {e}")))?,
    );
    *slot = Some((pid, Arc::clone(&runtime)));
    Ok(runtime)
}
