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
//!
//! A long tail (a load faster than pgvector inserts, [`CELLS_FROM`] rows or more) is searched
//! through the tail's IVF index, not scanned: this module also decides when that index is
//! trained and when a search reads it, from an estimate of the tail's length that each handle
//! keeps from its own writes and merges ([`TailState`]). The estimate only picks the faster
//! way to read the same rows: a stale one costs speed or recall, never a row.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// A tail this long (as a handle estimates it) is searched through the tail index, when it
/// exists; a shorter one is scanned exactly, which costs less than a millisecond.
pub(super) const CELLS_FROM: u64 = 1_000;

/// A tenant handle's view of its tail: whether the background merge runs and whether more is
/// due; the tail's length as this handle estimates it (counted at open, plus the embeddings
/// it wrote, minus the rows its merges moved; other processes' writes are not in it); whether
/// the tail index is known to exist (never unset: it is only dropped with the schema).
#[derive(Debug, Default)]
pub(super) struct TailState {
    running: AtomicBool,
    due: AtomicBool,
    rows: AtomicU64,
    cells: AtomicBool,
}

impl TailState {
    /// Whether a search of the tail reads its index ([`sql::TailOrder::Cells`]).
    pub(super) fn order(&self) -> sql::TailOrder {
        match self.cells.load(Ordering::Relaxed) && self.rows.load(Ordering::Relaxed) >= CELLS_FROM
        {
            true => sql::TailOrder::Cells,
            false => sql::TailOrder::Exact,
        }
    }

    /// What a tenant's opening found: the tail's rows and whether it has its index.
    pub(super) fn opened(&self, rows: u64, cells: bool) {
        self.rows.store(rows, Ordering::Relaxed);
        self.cells.store(cells, Ordering::Relaxed);
    }

    fn moved(&self, rows: u64) {
        let _ = self
            .rows
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(rows)));
    }
}

impl PgProvider {
    /// Notes that `written` embeddings went into `tenant`'s tail, and starts its background
    /// merge, or marks it due if it runs (it then goes on once more after finishing), so every
    /// write is followed by a merge that starts after it. Does nothing for a schema without a
    /// tail; starts no merge when [`super::PgConfig::background_merge`] is off. A merge that
    /// moved at least [`CELLS_FROM`] rows in one go (writes outpace pgvector) trains the tail
    /// index if the tenant has none, for the next long tail.
    pub(super) fn merge_in_background(&self, tenant: &PgTenant, written: u64) {
        if !tenant.0.tail {
            return;
        }
        let state = &tenant.0.tail_state;
        state.rows.fetch_add(written, Ordering::Relaxed);
        if !self.background_merge {
            return;
        }
        state.due.store(true, Ordering::SeqCst);
        if state.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (app, admin, tenant) = (self.app.clone(), self.admin.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut moved_in_run = 0;
            loop {
                let state = &tenant.0.tail_state;
                state.due.store(false, Ordering::SeqCst);
                // Until a merge moves less than a batch: the tail is empty, or the rest is
                // locked by writes that start their own merge, or an error (see the module
                // docs).
                while let Ok(moved) = merge_once(&app, &tenant, MERGE_BATCH).await {
                    moved_in_run += moved;
                    if moved < MERGE_BATCH as u64 {
                        break;
                    }
                }
                if moved_in_run >= CELLS_FROM && !state.cells.load(Ordering::Relaxed) {
                    // Not trained yet (or the tail's lock was busy): a later run tries again.
                    let _ = train_tail_index(&admin, &tenant).await;
                    moved_in_run = 0;
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
        if !tenant.0.tail_state.cells.load(Ordering::Relaxed) {
            // Before the merge empties the tail: a long one is part of what trains the index.
            // Writes holding the tail's lock only put the training off to a later merge.
            match train_tail_index(&self.admin, tenant).await {
                Ok(()) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut idle = 0;
        loop {
            let moved = merge_once(&self.app, tenant, FLUSH_BATCH).await?;
            if moved > 0 {
                idle = 0;
                continue;
            }
            if self.count_tail(tenant).await?.0 == 0 {
                tenant.0.tail_state.rows.store(0, Ordering::Relaxed);
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

    /// Reads the length of a tenant's tail and whether it has its index, for a handle that
    /// opens it ([`TailState::opened`]).
    pub(super) async fn open_tail(&self, tenant: &PgTenant) -> Result<()> {
        let conn = self.auto_one(tenant).await?;
        let schema = &tenant.0.schema;
        let result = async {
            let row = conn.query_opt(&sql::tail_on_open(schema), &[&schema.as_str()]).await?;
            let row = row.ok_or_else(|| Error::corrupt("vector tail", "no row"))?;
            let bad = |e| Error::corrupt("vector tail", e);
            Ok((row.try_get::<_, i64>(0).map_err(bad)?, row.try_get::<_, bool>(1).map_err(bad)?))
        }
        .await;
        let (rows, cells) = conn.finish(result).await?;
        tenant.0.tail_state.opened(u64::try_from(rows).unwrap_or(0), cells);
        Ok(())
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
    let moved = conn.finish(result).await?;
    tenant.0.tail_state.moved(moved);
    Ok(moved)
}

/// Trains and builds the tail index ([`sql::create_tail_index`]) of a tenant that has none, as
/// the owner role, from a sample of the graph and what the tail holds; then vacuums the tail,
/// whose training copies are dead rows. Does nothing before the tenant's dimension is known
/// to this handle, for a dimension without an index, or while graph and tail together hold
/// fewer rows than the training wants.
///
/// # Errors
/// [`Error::Conflict`] when writes held the tail's lock for longer than the build waits;
/// [`Error::Backend`] on storage failure.
async fn train_tail_index(admin: &Pooled, tenant: &PgTenant) -> Result<()> {
    let Some(&dimension) = tenant.0.dimension.get() else { return Ok(()) };
    let (schema, metric) = (&tenant.0.schema, tenant.0.metric);
    let mut conn = admin.get().await?;
    conn.begin(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str()).await?;
    let result = async {
        let row = conn.query_opt(&sql::tail_rows_and_graph_estimate(schema), &[]).await?;
        let row = row.ok_or_else(|| Error::corrupt("vector tail count", "no row"))?;
        let bad = |e| Error::corrupt("vector tail count", e);
        let tail: i64 = row.try_get(0).map_err(bad)?;
        let graph: f64 = row.try_get::<_, Option<f64>>(1).map_err(bad)?.unwrap_or(-1.0);
        let training = f64::from(sql::TAIL_TRAINING_ROWS);
        if (tail as f64) + graph.max(0.0) < training {
            return Ok(false);
        }
        let percent = 100.0 * training / graph.max(1.0);
        match sql::create_tail_index(schema, dimension, metric, percent) {
            Some(ddl) => conn.batch(&ddl).await.map(|()| true),
            None => Ok(false),
        }
    }
    .await;
    if conn.finish(result).await? {
        tenant.0.tail_state.cells.store(true, Ordering::Relaxed);
        admin.get().await?.batch(&sql::vacuum_tail(schema)).await?;
    }
    Ok(())
}
