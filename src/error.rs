//! The one error type of percolate.
//!
//! Every provider maps its backend failures onto these kinds at the boundary, so callers can
//! write the same retry and reporting logic whatever backend they compiled in:
//! - [`Error::Invalid`]: the input was rejected before anything reached storage; do not retry.
//! - [`Error::NotFound`] / [`Error::AlreadyExists`]: the record or tenant is absent / present.
//! - [`Error::Conflict`]: a concurrent writer won; retrying the whole transaction may succeed.
//! - [`Error::FormatVersion`] / [`Error::Corrupt`]: stored bytes this build cannot or must not
//!   decode; never silently returned as data.
//! - [`Error::Backend`]: the storage backend failed (I/O, connection, server error).
//! - [`Error::DiskFull`]: the storage ran out of space (ENOSPC, a quota, PostgreSQL's
//!   `53100`); the failed write left nothing behind, and writes succeed again once space is
//!   freed.
//! - [`Error::Locked`] / [`Error::ReadOnly`]: another process holds the store for writing, or
//!   this handle was opened to read only; open read-only, or write through the holder.

use std::fmt;

/// The result type of every fallible percolate operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in percolate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected before it reached storage.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The argument or field that was wrong, e.g. `"tenant id"` or `"embedding"`.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The record or tenant does not exist (in this tenant).
    #[error("{what} not found: {id}")]
    NotFound {
        /// The kind of thing that was looked up, e.g. `"resource"`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A record or tenant with this id already exists.
    #[error("{what} already exists: {id}")]
    AlreadyExists {
        /// The kind of thing, e.g. `"tenant"`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A concurrent writer changed what this operation read or wrote; retrying may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data was written in a format version this build does not read.
    #[error("unsupported format version {found} in {what} (this build reads {expected})")]
    FormatVersion {
        /// What held the version byte.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this build reads.
        expected: u8,
    },
    /// Stored bytes failed to decode: the store is damaged or was written by something else.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What failed to decode.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A key is missing or wrong, or sealed data failed authentication.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The storage backend failed.
    #[error("{provider} backend error")]
    Backend {
        /// The provider's [`crate::Provider::NAME`].
        provider: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The storage ran out of space: the disk or filesystem is full or a quota is reached
    /// (ENOSPC/EDQUOT, RocksDB's `NoSpace`, PostgreSQL's `53100 disk_full`). The write that
    /// met it left nothing behind; acknowledged writes are kept. Free space and retry: RocksDB
    /// resumes by itself once it sees free space again (it polls every few seconds), and
    /// PostgreSQL at the next statement.
    #[error("{provider} storage is full: no space left on the device")]
    DiskFull {
        /// The provider's [`crate::Provider::NAME`], or the file that could not be written
        /// (e.g. `"import spool file"`).
        provider: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Another process holds the store for writing: one writer per store at a time. Readers
    /// open it read-only beside the writer (`RocksConfig::read_only`).
    #[error("{}", locked_message(path, *holder_pid))]
    Locked {
        /// The lock file.
        path: std::path::PathBuf,
        /// The process that holds it, as it wrote its id into the file (`None` if unreadable).
        holder_pid: Option<u32>,
    },
    /// A write was asked of a store opened read-only.
    #[error(
        "cannot {what}: the store is open read-only (a reader beside the process that writes it)"
    )]
    ReadOnly {
        /// The refused operation, e.g. `"write records"`.
        what: &'static str,
    },
}

fn locked_message(path: &std::path::Path, holder_pid: Option<u32>) -> String {
    let holder = match holder_pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    };
    format!(
        "store is locked by {holder} (lock file {}): one process writes a store at a time; \
         open it read-only to read beside the writer (RocksConfig::read_only, \
         PERCOLATE_ROCKSDB_READ_ONLY=true)",
        path.display()
    )
}

impl Error {
    /// The message followed by each of its causes, `": "`-separated: what the CLI prints and
    /// the Python exceptions carry.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// An [`Error::Invalid`] for `what`, with a reason.
    pub fn invalid(what: &'static str, reason: impl fmt::Display) -> Self {
        Error::Invalid { what, reason: reason.to_string() }
    }

    /// An [`Error::NotFound`] for `what` with the given id.
    pub fn not_found(what: &'static str, id: impl fmt::Display) -> Self {
        Error::NotFound { what, id: id.to_string() }
    }

    /// An [`Error::AlreadyExists`] for `what` with the given id.
    pub fn already_exists(what: &'static str, id: impl fmt::Display) -> Self {
        Error::AlreadyExists { what, id: id.to_string() }
    }

    /// An [`Error::Corrupt`] for `what`, with a reason.
    pub fn corrupt(what: &'static str, reason: impl fmt::Display) -> Self {
        Error::Corrupt { what, reason: reason.to_string() }
    }

    /// An I/O failure of `provider`: [`Error::DiskFull`] when the device or a quota is full,
    /// [`Error::Backend`] otherwise.
    pub fn io(provider: &'static str, error: std::io::Error) -> Self {
        if is_out_of_space(&error) {
            Error::DiskFull { provider, source: Box::new(error) }
        } else {
            Error::Backend { provider, source: Box::new(error) }
        }
    }

    /// Whether retrying the operation (or the whole transaction) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

/// Whether an I/O error says the device (or the user's quota on it) has no space left.
fn is_out_of_space(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}
