//! When the vector tail is merged into the HNSW graph: a background task per tenant handle
//! that moves tail rows in small transactions, and the explicit flush that bulk loads end
//! with. The statements, and the invariant each keeps, are in `sql::tail`; this module owns
//! only the scheduling and touches no other table.
//!
//! Writes never wait for the graph: a write stores its embeddings in the tail and starts the
//! background merge (or marks it due if it runs), which moves [`MERGE_BATCH`] rows per
//! transaction until the tail is empty. pgvector inserts each moved row into the graph: the
//! graph work a write would otherwise do, off the caller's path. Searches read graph
//! and tail together, so nothing waits for the merge to be correct; a long tail only makes
//! searches slower (an exact scan of it). A merge that fails (the tenant deleted, the server
//! gone) stops; the next write through the handle, or the next open, starts it again, so rows
//! a process leaves in the tail when it exits are merged when the tenant is next opened.

use std::sync::atomic::{AtomicBool, Ordering};

use super::pool::Pooled;
use super::{PgProvider, PgTenant, sql, store};
use crate::error::{Error, Result};

/// Tail rows one background merge transaction moves: each costs pgvector a graph insertion
/// (about 2 ms at 384 dimensions), so a transaction holds its rows' locks for a fraction of a
/// second, and a write to one of them waits at most that long.
const MERGE_BATCH: i64 = 128;
/// Tail rows one merge transaction of [`PgProvider::flush_tail`] moves.
const FLUSH_BATCH: i64 = 512;
/// A flush rebuilds the index instead of moving rows when the tail holds at least this many
/// and at least as many as the graph: building a graph is several times faster per row than
/// inserting into one, but the rebuild locks the tenant's resources until it ends.
const REBUILD_AT: i64 = 5_000;

/// Whether a tenant handle's background merge runs, and whether more is due.
#[derive(Debug, Default)]
pub(super) struct MergeState {
    running: AtomicBool,
    due: AtomicBool,
}

impl PgProvider {
    /// Starts the background merge of `tenant`'s tail, or marks it due if it runs (it then
    /// goes on once more after finishing), so every write is followed by a merge that starts
    /// after it. Does nothing for a schema without a tail, or when
    /// [`super::PgConfig::background_merge`] is off.
    pub(super) fn merge_in_background(&self, tenant: &PgTenant) {
        if !tenant.0.tail || !self.background_merge {
            return;
        }
        let state = &tenant.0.merge;
        state.due.store(true, Ordering::SeqCst);
        if state.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (app, tenant) = (self.app.clone(), tenant.clone());
        tokio::spawn(async move {
            loop {
                let state = &tenant.0.merge;
                state.due.store(false, Ordering::SeqCst);
                loop {
                    match merge_once(&app, &tenant, MERGE_BATCH).await {
                        Ok(moved) if moved == MERGE_BATCH as u64 => {}
                        // Empty, or the rest is locked by writes that start their own merge,
                        // or an error: see the module docs.
                        _ => break,
                    }
                }
                state.running.store(false, Ordering::SeqCst);
                if !state.due.load(Ordering::SeqCst) || state.running.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Merges the whole of `tenant`'s tail into the graph and returns when the tail is empty:
    /// by rebuilding the index when the tail is large (see [`REBUILD_AT`]), else by moving
    /// its rows in transactions of [`FLUSH_BATCH`], beside the background merge.
    ///
    /// # Errors
    /// [`Error::Backend`] on storage failure; [`Error::Conflict`] if rows stay locked by
    /// open writes for longer than a few seconds.
    pub(super) async fn flush_tail(&self, tenant: &PgTenant) -> Result<()> {
        if !tenant.0.tail {
            return Ok(());
        }
        let (tail, graph) = self.count_tail(tenant).await?;
        if tail >= REBUILD_AT && tail >= graph {
            self.rebuild(tenant).await?;
        }
        let mut idle = 0;
        loop {
            let moved = merge_once(&self.app, tenant, FLUSH_BATCH).await?;
            if moved > 0 {
                idle = 0;
                continue;
            }
            if self.count_tail(tenant).await?.0 == 0 {
                // The merged rows are dead tuples the next search's scan of the tail would
                // read until autovacuum comes.
                let conn = self.admin.get().await?;
                return conn.batch(&sql::vacuum_tail(&tenant.0.schema)).await;
            }
            // Rows locked by a background merge or an open write: wait for them.
            idle += 1;
            if idle > 500 {
                return Err(Error::Conflict(
                    "vector tail rows stayed locked by other transactions".to_owned(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Deletes the tail rows and graph entries of the resources `ids` that are gone or have no
    /// embedding: after a transaction that deleted them or removed it commits (see
    /// `sql::tail`).
    pub(super) async fn forget_unembedded(
        &self,
        tenant: &PgTenant,
        ids: &[uuid::Uuid],
    ) -> Result<()> {
        if !tenant.0.tail || ids.is_empty() {
            return Ok(());
        }
        let conn = self.auto_one(tenant).await?;
        let result = store::forget_unembedded(&conn, &tenant.0.schema, ids).await;
        conn.finish(result).await
    }

    /// The number of rows in `tenant`'s tail and in its graph.
    async fn count_tail(&self, tenant: &PgTenant) -> Result<(i64, i64)> {
        let conn = self.auto_one(tenant).await?;
        let result = async {
            let row = conn.query_opt(&sql::count_tail(&tenant.0.schema), &[]).await?;
            let row = row.ok_or_else(|| Error::corrupt("vector tail count", "no row"))?;
            let bad = |e| Error::corrupt("vector tail count", e);
            Ok((row.try_get(0).map_err(bad)?, row.try_get(1).map_err(bad)?))
        }
        .await;
        conn.finish(result).await
    }

    /// Moves the whole tail into a freshly built index ([`sql::rebuild_with_tail`]), as the
    /// owner role. Nothing to do for a dimension without an index: the merge moves the rows.
    async fn rebuild(&self, tenant: &PgTenant) -> Result<()> {
        let Some(dimension) = self.dimension(tenant).await? else { return Ok(()) };
        let (schema, metric) = (&tenant.0.schema, tenant.0.metric);
        let Some(index) = sql::create_vector_index(schema, dimension, metric, true) else {
            return Ok(());
        };
        let mut conn = self.admin.get().await?;
        conn.begin(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str()).await?;
        let result = conn.batch(&sql::rebuild_with_tail(schema, &index)).await;
        conn.finish(result).await
    }
}

/// One merge transaction of up to `batch` tail rows ([`sql::merge_tail`]); the rows moved.
async fn merge_once(app: &Pooled, tenant: &PgTenant, batch: i64) -> Result<u64> {
    let mut conn = app.get().await?;
    conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str(), None);
    let result = async {
        let row = conn.query_opt(&sql::merge_tail(&tenant.0.schema), &[&batch]).await?;
        let row = row.ok_or_else(|| Error::corrupt("vector tail merge", "no row"))?;
        let moved: i64 = row.try_get(0).map_err(|e| Error::corrupt("vector tail merge", e))?;
        Ok(u64::try_from(moved).unwrap_or(0))
    }
    .await;
    conn.finish(result).await
}
