//! The writer lock of a store: owns the file `root/percolate.lock` and nothing else.
//!
//! One process writes a store at a time; readers ([`super::RocksConfig::read_only`]) take no
//! lock. A writer holds an exclusive `flock` on the lock file for as long as its provider is
//! open, and writes its process id into it, so a second writer is refused with
//! [`Error::Locked`] naming the file and the holder instead of RocksDB's own per-tenant `LOCK`
//! error (an `fcntl` lock that names no one, met only on the first tenant both touch).
//!
//! Invariants:
//! - the lock is the kernel's, tied to the open file: it is released when the last provider of
//!   the process closes, and by the kernel when the process dies (a crash leaves a file with a
//!   stale pid but no lock, and the next writer takes it);
//! - within one process, providers on the same root share one lock (a process-wide table of
//!   weak references by canonical root), so an app may open one store through two providers
//!   (on different tenants: RocksDB's per-tenant `LOCK` still refuses two opens of one tenant).
//! - the lock file is never a tenant: tenant ids cannot contain a dot.
//!
//! The lock is std's `File::try_lock`: `flock` on Unix, `LockFileEx` on Windows (where the
//! holder's file cannot be read by others, so the pid is reported as unknown).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// The lock file's name in the store root.
pub(crate) const LOCK_FILE: &str = "percolate.lock";

/// The writer lock of one store, held while any provider of this process writes it.
pub(crate) struct StoreLock {
    /// Holds the `flock`; closing it releases the lock.
    _file: File,
}

/// Locks held by this process, by canonical store root.
fn held() -> &'static Mutex<HashMap<PathBuf, Weak<StoreLock>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<StoreLock>>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

impl StoreLock {
    /// Takes (or, within this process, shares) the writer lock of the store at `root`, which
    /// exists.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds it; [`Error::Backend`] when the file
    /// cannot be opened or written.
    pub(crate) fn acquire(root: &Path) -> Result<Arc<StoreLock>> {
        let root = root.canonicalize().map_err(|e| super::tenants::io_error(root, e))?;
        let path = root.join(LOCK_FILE);
        let mut held = held().lock();
        if let Some(lock) = held.get(&root).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let io = |e| super::tenants::io_error(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked { holder_pid: holder_pid(&mut file), path });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        let lock = Arc::new(StoreLock { _file: file });
        held.retain(|_, lock| lock.strong_count() > 0);
        held.insert(root, Arc::downgrade(&lock));
        Ok(lock)
    }
}

/// The process id the holder wrote into the lock file; `None` while it has not written it
/// yet, or if the file holds anything else.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
