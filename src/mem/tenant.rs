//! [`TenantCell`]: one tenant's committed state behind one lock, with the versions that
//! transactions validate against. It owns when a change becomes visible and the commit
//! protocol; it must not decide what an operation does to records (`store.rs`).
//!
//! The committed state is an `Arc<State>`: a transaction's snapshot is a clone of the `Arc`, and
//! a commit changes the state in place when no snapshot shares it, or a copy when one does
//! (`Arc::make_mut`), so snapshots never change under their readers.
//!
//! Optimistic concurrency, with a version per key: every commit takes the next version and,
//! while any transaction is open, records it against every key it changed. A transaction
//! commits only if no key of its footprint (what it wrote or validated) was changed after the
//! version it began at; otherwise it fails with [`Error::Conflict`] and nothing of it is
//! applied. Validation and application happen under the write lock, so commits are serial.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use super::store::{Change, Key, State, Write};
use crate::error::{Error, Result};
use crate::model::{TenantConfig, TenantId};

/// One tenant of a [`super::MemProvider`].
#[derive(Debug)]
pub(crate) struct TenantCell {
    pub(crate) id: TenantId,
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Set when the tenant is deleted: handles still open on it find nothing.
    deleted: bool,
    config: TenantConfig,
    committed: Arc<State>,
    /// The version of the latest commit.
    version: u64,
    /// The version of the latest commit that changed each key, kept while transactions are
    /// open. A key not listed was last changed before every open transaction began.
    changed: HashMap<Key, u64>,
    open_transactions: usize,
}

/// What a transaction begins with.
pub(crate) struct Snapshot {
    pub(crate) state: Arc<State>,
    pub(crate) version: u64,
}

impl TenantCell {
    pub(crate) fn new(id: TenantId, config: TenantConfig) -> Self {
        let inner = Inner {
            deleted: false,
            config,
            committed: Arc::new(State::default()),
            version: 0,
            changed: HashMap::new(),
            open_transactions: 0,
        };
        Self { id, inner: RwLock::new(inner) }
    }

    fn gone(&self) -> Error {
        Error::not_found("tenant", &self.id)
    }

    /// Runs `read` on the committed state: one committed state for the whole read.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&State, &TenantConfig) -> Result<T>,
    ) -> Result<T> {
        let inner = self.inner.read();
        if inner.deleted {
            return Err(self.gone());
        }
        read(&inner.committed, &inner.config)
    }

    /// The tenant's configuration.
    pub(crate) fn config(&self) -> Result<TenantConfig> {
        self.read(|_, config| Ok(*config))
    }

    /// Fixes the dimension unless it is fixed; returns the dimension in force.
    pub(crate) fn fix_dimension(&self, dimension: u32) -> Result<u32> {
        let mut inner = self.inner.write();
        if inner.deleted {
            return Err(self.gone());
        }
        Ok(*inner.config.dimension.get_or_insert(dimension))
    }

    /// Plans an operation on the committed state and, if it succeeds, commits its writes: one
    /// atomic auto-commit transaction.
    pub(crate) fn change<T>(&self, plan: impl FnOnce(&State) -> Result<Change<T>>) -> Result<T> {
        let mut inner = self.inner.write();
        if inner.deleted {
            return Err(self.gone());
        }
        let change = plan(&inner.committed)?;
        inner.apply(&change.writes);
        Ok(change.value)
    }

    /// Begins a transaction: its snapshot, and the version it validates against.
    pub(crate) fn begin(&self) -> Result<Snapshot> {
        let mut inner = self.inner.write();
        if inner.deleted {
            return Err(self.gone());
        }
        inner.open_transactions += 1;
        Ok(Snapshot { state: Arc::clone(&inner.committed), version: inner.version })
    }

    /// Ends a transaction begun with [`TenantCell::begin`], committed or not.
    pub(crate) fn end(&self) {
        let mut inner = self.inner.write();
        inner.open_transactions = inner.open_transactions.saturating_sub(1);
        if inner.open_transactions == 0 {
            inner.changed.clear();
        }
    }

    /// Commits a transaction that began at `began`: fails with [`Error::Conflict`], applying
    /// nothing, if a commit after `began` changed a key of `footprint`.
    pub(crate) fn commit(
        &self,
        began: u64,
        footprint: &HashSet<Key>,
        writes: &[Write],
    ) -> Result<()> {
        let mut inner = self.inner.write();
        if inner.deleted {
            return Err(self.gone());
        }
        if let Some(key) =
            footprint.iter().find(|key| inner.changed.get(key).is_some_and(|&v| v > began))
        {
            return Err(Error::Conflict(format!(
                "a concurrent commit changed {key:?}, which this transaction depends on"
            )));
        }
        inner.apply(writes);
        Ok(())
    }

    /// Deletes the tenant: handles still open on it find nothing from now on.
    pub(crate) fn delete(&self) {
        let mut inner = self.inner.write();
        inner.deleted = true;
        inner.committed = Arc::new(State::default());
        inner.changed.clear();
    }
}

impl Inner {
    /// Applies committed writes as the next version.
    fn apply(&mut self, writes: &[Write]) {
        if writes.is_empty() {
            return;
        }
        self.version += 1;
        let version = self.version;
        let state = Arc::make_mut(&mut self.committed);
        for write in writes {
            let keys = state.apply(write);
            if self.open_transactions > 0 {
                self.changed.extend(keys.into_iter().map(|key| (key, version)));
            }
        }
    }
}
