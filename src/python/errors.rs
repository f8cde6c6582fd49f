//! Python exceptions: `PercolateError` and one subclass per kind of [`Error`], each carrying the
//! Rust error's message (with its chain of causes, so a backend failure says what failed).
//!
//! | Rust | Python |
//! |---|---|
//! | `Error::NotFound` | `NotFoundError` |
//! | `Error::AlreadyExists` | `AlreadyExistsError` |
//! | `Error::Conflict` | `ConflictError` (retrying the transaction may succeed) |
//! | `Error::Invalid` | `InvalidInputError` |
//! | `Error::Crypto` | `CryptoError` |
//! | `Error::DiskFull` | `DiskFullError`, a `BackendError` |
//! | `Error::Locked` | `LockedError`, a `BackendError` (another process writes the store) |
//! | `Error::Backend`, `Error::Corrupt`, `Error::FormatVersion`, `Error::ReadOnly` | `BackendError` |
//!
//! Misuse that is not a storage outcome (a closed engine, a forked process, a finished
//! transaction) raises `PercolateError` itself.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::Error;

pyo3::create_exception!(
    percolate_core,
    PercolateError,
    PyException,
    "Base class of every error percolate raises."
);
pyo3::create_exception!(
    percolate_core,
    NotFoundError,
    PercolateError,
    "The record or tenant does not exist (in this tenant)."
);
pyo3::create_exception!(
    percolate_core,
    AlreadyExistsError,
    PercolateError,
    "A record or tenant with this id already exists."
);
pyo3::create_exception!(
    percolate_core,
    ConflictError,
    PercolateError,
    "A concurrent writer won; retrying the whole transaction may succeed."
);
pyo3::create_exception!(
    percolate_core,
    InvalidInputError,
    PercolateError,
    "The input was rejected before it reached storage."
);
pyo3::create_exception!(
    percolate_core,
    CryptoError,
    PercolateError,
    "A key is missing or wrong, or sealed data failed authentication."
);
pyo3::create_exception!(
    percolate_core,
    BackendError,
    PercolateError,
    "The storage backend failed (I/O, connection, server), or stored data is unreadable."
);

pyo3::create_exception!(
    percolate_core,
    DiskFullError,
    BackendError,
    "The device is full: the write that met it left nothing behind; free space and retry."
);
pyo3::create_exception!(
    percolate_core,
    LockedError,
    BackendError,
    "Another process (or another engine in this one) holds the store for writing."
);

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PercolateError", py.get_type::<PercolateError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("DiskFullError", py.get_type::<DiskFullError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    Ok(())
}

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        let text = error.with_causes();
        match error {
            Error::NotFound { .. } => NotFoundError::new_err(text),
            Error::AlreadyExists { .. } => AlreadyExistsError::new_err(text),
            Error::Conflict(_) => ConflictError::new_err(text),
            Error::Invalid { .. } => InvalidInputError::new_err(text),
            Error::Crypto(_) => CryptoError::new_err(text),
            Error::DiskFull { .. } => DiskFullError::new_err(text),
            Error::Locked { .. } => LockedError::new_err(text),
            _ => BackendError::new_err(text),
        }
    }
}

/// An `InvalidInputError` for `what`, in the engine's own wording.
pub(crate) fn invalid(what: &'static str, reason: impl std::fmt::Display) -> PyErr {
    Error::invalid(what, reason).into()
}

/// The error for an engine, tenant or transaction used after `close()`, or a tenant handle
/// used after its tenant was deleted through the engine.
pub(crate) fn closed() -> PyErr {
    PercolateError::new_err("the engine is closed (or this tenant was deleted through it)")
}
