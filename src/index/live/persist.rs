//! Writing the live index's snapshot: atomically, only when the graph changed, never from a
//! reader or a tenant being deleted, and from the indexer once enough changed. Reading a
//! snapshot back is `index::snapshot`'s; this file must not change the index's state.

use super::*;

impl VectorIndex {
    /// Writes the graph (pending points are not in it: they are re-found in the store on
    /// open) to `dir` atomically: a temporary file, fsync, rename, fsync of the directory.
    /// Does nothing when the graph has not changed since it was loaded or last written.
    /// In an encrypted tenant the whole file is one sealed value.
    pub(crate) fn write_snapshot(
        &self,
        dir: &Path,
        crypto: Option<&TenantCrypto>,
    ) -> std::io::Result<()> {
        let _writing = self.snapshot_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut out = Vec::new();
        {
            let state = self.state.read();
            self.changed.store(0, Ordering::Relaxed);
            out.reserve(state.graph.memory_bytes() + state.points.len() * 24 + 64);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            state.graph.encode(&mut out);
            for point in &state.points {
                out.extend_from_slice(point.id.as_bytes());
            }
            for point in &state.points {
                out.extend_from_slice(&point.hash.to_le_bytes());
            }
        }
        let checksum = hash_bytes(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        if let Some(crypto) = crypto {
            out = crypto.seal(SNAPSHOT_FILE, b"", &out).map_err(std::io::Error::other)?;
        }
        let path = dir.join(SNAPSHOT_FILE);
        let temporary = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let result = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&out)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    /// Writes a snapshot now to the tenant's directory, if the graph changed since the last
    /// one and the tenant is not being deleted.
    pub(crate) fn persist_now(&self) -> std::io::Result<()> {
        match &self.persist {
            Some(persist) if !persist.read_only && !persist.discarded.load(Ordering::Acquire) => {
                self.write_snapshot(&persist.dir, persist.crypto.as_deref())
            }
            _ => Ok(()),
        }
    }

    /// Writes a snapshot from the indexer once it is idle (nothing pending) and enough of the
    /// graph changed since the last one: an eighth of it, and never fewer than
    /// [`SNAPSHOT_MIN_CHANGES`] points. A process killed before it closes its tenants (a phone
    /// kills apps at any moment) then reopens from the last one and inserts only what changed
    /// since, instead of building the whole graph again. A failed write is left for the next
    /// one: the snapshot is only ever a cache.
    ///
    /// Only when idle: a snapshot is the whole graph (80 MB at 50k × 384-d) copied, hashed,
    /// written and synced, which would compete with a load still being indexed.
    pub(super) fn snapshot_if_due(&self, idle: bool) {
        let changed = self.changed.load(Ordering::Relaxed);
        if !idle || self.persist.is_none() || changed < SNAPSHOT_MIN_CHANGES {
            return;
        }
        if changed >= self.state.read().graph.len() / 8 {
            let _ = self.persist_now();
        }
    }
}
