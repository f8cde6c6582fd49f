//! The PostgreSQL provider: one shared server, a schema per tenant, forced row-level security,
//! pgvector HNSW indexes.
//!
//! Design decisions:
//! - **Two roles, two pools.** [`PgConfig::admin_url`] connects as the *owner* role, which runs
//!   schema setup (tenant creation and deletion, fixing a dimension). [`PgConfig::url`] connects
//!   as the *application* role, which runs every data query: it must not be a superuser, must not
//!   have `BYPASSRLS` and owns nothing, so row-level security always applies to it. When
//!   `admin_url` is `None` one role does both; row-level security is still `FORCE`d, but a
//!   compromised application could then alter its own tables.
//! - **Isolation by schema and by policy.** Each tenant's tables live in a schema named only by
//!   [`tenant`] (collision-free, at most 63 bytes, quoted) and recorded in the registry
//!   `percolate.tenants` (`schema` unique). Every table has `tenant_id`; RLS is enabled and
//!   forced, and its policy checks, in `USING` and `WITH CHECK`, that a row's `tenant_id` is
//!   both `current_setting('app.current_tenant')` and the schema's own tenant (a one-row table
//!   of the schema, written by the owner role): a transaction set to one tenant can neither
//!   write nor see rows in another's schema, whatever it tags them with. Schemas made before
//!   that table existed are tied to their tenant when opened. Every transaction sets the tenant
//!   with `set_config(.., true)`, which lasts until the transaction ends, never a session-level
//!   `SET` that would leak to the next user of a pooled connection.
//! - **Transactions.** Each auto-commit operation is one `READ COMMITTED` transaction whose row
//!   locks and foreign keys keep it atomic and consistent; its `BEGIN`, tenant setting,
//!   statement and (for single-statement operations) `COMMIT` are pipelined into one round trip
//!   (`conn`). Inserts (`create_resource`, batches, entities, edges, moments) are instead
//!   one statement in its own implicit transaction that sets the tenant itself
//!   (`sql::AS_TENANT` says why that is as safe): the server parses and answers one message,
//!   not four. Updates and deletes keep the transaction (their row-level security filter could
//!   run before a setting made in the same statement). [`PgTxn`] is optimistic (see `txn`).
//!   A connection dropped inside a transaction never returns to the pool (`conn`).
//! - **Vectors.** Embeddings live in an untyped `vector` column, at full precision; fixing
//!   the dimension adds a check constraint and an HNSW index (`sql::Layout`): for cosine
//!   tenants over the unit vectors at half precision by inner product (half the index, one
//!   product per distance: cheaper searches and inserts), for L2 and dot on the typed
//!   expression with the metric's operator class (`halfvec` between 2001 and 4000 dimensions;
//!   an exact scan above). Tenants with fewer than [`PgConfig::exact_below`] embeddings (as
//!   last counted: see `TenantSize`) are searched by an exact scan, which costs about what
//!   the index does at that size, so the graph's parameters can suit large tenants
//!   (`sql::HNSW_M`). Other searches use the index with `hnsw.ef_search` from
//!   [`PgConfig::ef_search`] (at least `k`), all settings
//!   transaction-local and sent with `BEGIN`: an unfiltered search is one round trip
//!   (`strict_order` iterative scan). A filtered search pushes the part of the
//!   [`crate::Filter`] that containment can express (`prefilter`) into SQL and scans the
//!   HNSW index iteratively (`relaxed_order`, up to `hnsw.max_scan_tuples`), evaluating the
//!   exact filter in Rust. With fewer than `k` matches (a selective filter), or with no
//!   containment to push down, the search is exact: a scan with rows in true distance order,
//!   the window growing until `k` match or the table is exhausted, so
//!   `k` results come back whenever `k` resources match. Distances are recomputed with
//!   [`Metric::distance`], so they are exactly the contract's (cosine `1 - cos`, squared L2,
//!   negative dot) on every provider.
//! - **Values are bind parameters**; all SQL text is in `sql`.

mod conn;
mod json;
mod prefilter;
mod sql;
mod store;
pub mod tenant;
mod txn;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;
use uuid::Uuid;

pub use sql::{HNSW_EF_CONSTRUCTION, HNSW_M};
pub use txn::PgTxn;

use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, Metric, Moment, MomentId, Reached,
    Record, RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId,
    TimeRange, TraverseQuery, words,
};
use crate::provider::{Capabilities, Provider, VectorIndexKind};
use conn::{PgConn, is_unique_violation};
use tenant::SchemaName;

pub(crate) const NAME: &str = "postgres";

/// Settings of the PostgreSQL provider.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// The application role's connection URL (`postgres://user:password@host:port/db`).
    pub url: String,
    /// The owner role's connection URL, for schema setup; `None` uses `url` for both.
    pub admin_url: Option<String>,
    /// Connections in the application pool.
    pub pool_size: usize,
    /// Connections in the owner pool.
    pub admin_pool_size: usize,
    /// HNSW `ef_search` of unfiltered searches (default 32; pgvector's is 40): the candidate
    /// list size, trading latency for recall. A search for `k` results uses at least `k`.
    pub ef_search: usize,
    /// Tenants with fewer embeddings than this are searched exactly, by a scan in true distance
    /// order (recall 1), not through the HNSW index (default 500; 0 always uses the index).
    /// Below it a scan costs about what an index search does at 384 dimensions, and the index
    /// can then be built for large tenants alone (`sql::HNSW_M`).
    pub exact_below: usize,
}

impl PgConfig {
    /// Defaults for a server at `url`: a pool of 10, the same role for setup.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            admin_url: None,
            pool_size: 10,
            admin_pool_size: 2,
            ef_search: DEFAULT_EF_SEARCH,
            exact_below: DEFAULT_EXACT_BELOW,
        }
    }

    /// Schema setup runs as the role of `admin_url`.
    pub fn with_admin_url(mut self, admin_url: impl Into<String>) -> Self {
        self.admin_url = Some(admin_url.into());
        self
    }

    /// An application pool of `size` connections.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// HNSW `ef_search` for unfiltered searches (clamped to pgvector's 1..=1000).
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search;
        self
    }

    /// Tenants with fewer than `exact_below` embeddings are searched exactly (0: never).
    pub fn with_exact_below(mut self, exact_below: usize) -> Self {
        self.exact_below = exact_below;
        self
    }
}

/// The default `hnsw.ef_search`: the smallest that keeps recall@10 above 0.95 with a margin on
/// 100k 384-d MiniLM embeddings (the bench's data: the shared dataset plus noisy copies, cosine,
/// its 200 queries) in the graph of [`sql::HNSW_M`] (m 8, ef_construction 200), built row by
/// row as the bench ingests: recall 0.952 at 32, 0.955 at 36, 0.958 at 40 (2026-11-27,
/// `postgres_perf knn`). Pgvector's m 16 / 64 needed 32 for 0.961; m 8 / 128 needed 40 for
/// 0.956 and 48 for 0.968.
const DEFAULT_EF_SEARCH: usize = 40;
/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;
/// The default [`PgConfig::exact_below`]: about where a scan of 384-d embeddings costs what the
/// index does. Measured through the provider (`postgres_perf knn` with `PERCOLATE_PERF_N` and
/// `PERCOLATE_PERF_EXACT_BELOW`, 2026-11-27, load 0.8-1.6): 999 rows, exact 0.72-1.00 ms p50
/// against 0.47-0.80 ms through the index (recall 0.983); 1999 rows, exact 1.00-1.16 ms against
/// 0.55-0.72 ms (0.975). Lower dimensions scan faster; the conformance suite's tenants (up to
/// 400 rows) are all below it.
const DEFAULT_EXACT_BELOW: usize = 500;
/// How long a tenant's count of embeddings is trusted before the next search counts again.
const RECOUNT_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for PgConfig {
    /// Never prints the URLs: they may hold passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("pool_size", &self.pool_size)
            .field("admin_pool_size", &self.admin_pool_size)
            .field("ef_search", &self.ef_search)
            .field("exact_below", &self.exact_below)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Pooled {
    pool: Pool,
    /// `host:port`, for error messages (never the password).
    address: String,
    /// Its connections that may carry session state ([`conn`]).
    tainted: conn::Tainted,
}

impl Pooled {
    fn new(url: &str, size: usize) -> Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| Error::invalid("postgres url", e))?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports = config.get_ports();
        let address = format!(
            "{}:{}",
            hosts.first().map_or("localhost", String::as_str),
            ports.first().copied().unwrap_or(5432)
        );
        // `Fast` only checks that the connection is open: the cleanup of `Clean` runs at the
        // checkout of a connection that may carry session state, pipelined with the checkout's
        // first statement ([`conn`]).
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(|e| Error::invalid("postgres pool", e))?;
        Ok(Self { pool, address, tainted: conn::Tainted::default() })
    }

    async fn get(&self) -> Result<PgConn> {
        PgConn::get(&self.pool, &self.address, &self.tainted).await
    }
}

/// An opened tenant of the [`PgProvider`].
#[derive(Clone, Debug)]
pub struct PgTenant(Arc<TenantInner>);

#[derive(Debug)]
struct TenantInner {
    id: TenantId,
    schema: SchemaName,
    metric: Metric,
    /// The embedding dimension once fixed (it never changes after that).
    dimension: std::sync::OnceLock<u32>,
    /// How its embeddings are indexed, once known (it never changes after that).
    layout: std::sync::OnceLock<sql::Layout>,
    /// Whether its schema is known to have the search function
    /// ([`sql::create_search_function`]): read with the index definition, or set by the build
    /// that created it (never unset: the function is only dropped with the schema).
    search_function: std::sync::atomic::AtomicBool,
    /// Its embeddings as last counted, for choosing exact search.
    size: TenantSize,
}

/// What a provider knows of a tenant's number of embeddings, to search small tenants exactly
/// ([`PgConfig::exact_below`]) without counting on every search. Either choice gives correct
/// results (the scan exactly; the index approximately, as for any large tenant), so a stale
/// count costs at most speed or recall, and only until the next count: a search counts again
/// when the count is older than [`RECOUNT_AFTER`], and a count never reads more than
/// `exact_below` rows ([`sql::count_embeddings_up_to`]), however large the tenant.
#[derive(Debug)]
struct TenantSize {
    /// Embeddings counted (up to `exact_below`) plus those inserted through this handle since;
    /// [`TenantSize::UNCOUNTED`] until the first count.
    embeddings: AtomicU64,
    /// When last counted, in milliseconds after `opened`; the search that moves it counts.
    counted_at: AtomicU64,
    opened: std::time::Instant,
}

impl TenantSize {
    const UNCOUNTED: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            embeddings: AtomicU64::new(Self::UNCOUNTED),
            counted_at: AtomicU64::new(0),
            opened: std::time::Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The count, or `None` when this caller must count (never counted, or counted too long
    /// ago and no concurrent search has claimed the recount).
    fn known(&self) -> Option<u64> {
        let embeddings = self.embeddings.load(Ordering::Relaxed);
        if embeddings == Self::UNCOUNTED {
            return None;
        }
        let (at, now) = (self.counted_at.load(Ordering::Relaxed), self.now());
        let recount = u64::try_from(RECOUNT_AFTER.as_millis()).unwrap_or(u64::MAX);
        let due = now.saturating_sub(at) >= recount
            && self
                .counted_at
                .compare_exchange(at, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due { None } else { Some(embeddings) }
    }

    fn counted(&self, embeddings: u64) {
        self.embeddings.store(embeddings, Ordering::Relaxed);
        self.counted_at.store(self.now(), Ordering::Relaxed);
    }

    /// `added` embeddings were inserted through this handle.
    fn added(&self, added: u64) {
        let _ = self.embeddings.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n != Self::UNCOUNTED).then(|| n.saturating_add(added).min(Self::UNCOUNTED - 1))
        });
    }
}

/// What [`PgProvider::probe_session`] found on a pooled connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionProbe {
    /// The server process behind the connection.
    pub backend_pid: i32,
    /// `app.current_tenant` as the next statement would see it (empty when unset).
    pub current_tenant: String,
    /// Whether a transaction was open on the connection.
    pub in_transaction: bool,
    /// Session state found on it, one line each (`setting application_name`, `cursor c`,
    /// `listening c`, `advisory lock 42`, `temporary table t`, `role r`); empty when clean.
    pub leftovers: Vec<String>,
}

/// The PostgreSQL provider. See the [module docs](self).
pub struct PgProvider {
    app: Pooled,
    admin: Pooled,
    app_role: String,
    ef_search: usize,
    exact_below: usize,
    /// Searches served by the HNSW index (see [`PgProvider::index_searches`]).
    index_searches: AtomicU64,
}

impl PgProvider {
    /// Connects, creates the tenant registry if needed and grants the application role access
    /// to it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed URL; [`Error::Backend`] naming the server address if
    /// it cannot be reached or refuses the setup.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let app = Pooled::new(&config.url, config.pool_size)?;
        let admin = match &config.admin_url {
            Some(url) => Pooled::new(url, config.admin_pool_size)?,
            None => Pooled::new(&config.url, config.admin_pool_size)?,
        };
        let app_role: String = {
            let conn = app.get().await?;
            let row = conn.query_opt(sql::CURRENT_USER, &[]).await?;
            row.and_then(|r| r.try_get(0).ok())
                .ok_or_else(|| Error::corrupt("current_user", "no row"))?
        };
        let conn = admin.get().await?;
        // Providers connecting at once race on `CREATE ... IF NOT EXISTS` and on `GRANT`
        // (PostgreSQL reports "tuple concurrently updated"); the loser retries.
        let setup = format!("{}\n{}", sql::CREATE_REGISTRY, sql::grant_registry(&app_role));
        let mut attempt = 0;
        loop {
            match conn.batch(&setup).await {
                Ok(()) => break,
                Err(_) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            app,
            admin,
            app_role,
            ef_search: config.ef_search.clamp(1, MAX_EF_SEARCH),
            exact_below: config.exact_below,
            index_searches: AtomicU64::new(0),
        })
    }

    /// The role data queries run as.
    pub fn app_role(&self) -> &str {
        &self.app_role
    }

    /// How many searches since [`PgProvider::connect`] went to the HNSW index rather than an
    /// exact scan: a diagnostic, for tests that the index path is exercised and checked.
    pub fn index_searches(&self) -> u64 {
        self.index_searches.load(Ordering::Relaxed)
    }

    /// Whether a search of `tenant` is exact: it has fewer than `exact_below` embeddings, as
    /// last counted (see [`TenantSize`]).
    async fn searched_exactly(&self, tenant: &PgTenant) -> Result<bool> {
        if self.exact_below == 0 {
            return Ok(false);
        }
        let size = &tenant.0.size;
        let embeddings = match size.known() {
            Some(embeddings) => embeddings,
            None => {
                let conn = self.auto_one(tenant).await?;
                let limit = i64::try_from(self.exact_below).unwrap_or(i64::MAX);
                let statement = sql::count_embeddings_up_to(&tenant.0.schema);
                let result = async {
                    let row = conn.query_opt(&statement, &[&limit]).await?;
                    let count: i64 = row
                        .ok_or_else(|| Error::corrupt("embedding count", "no row"))?
                        .try_get(0)
                        .map_err(|e| Error::corrupt("embedding count", e))?;
                    Ok(u64::try_from(count).unwrap_or(0))
                }
                .await;
                let embeddings = conn.finish(result).await?;
                size.counted(embeddings);
                embeddings
            }
        };
        Ok(embeddings < self.exact_below as u64)
    }

    /// Takes a connection from the application pool, as the next operation would, and
    /// reports what it carries. A diagnostic for isolation tests: the tenant setting must be
    /// empty and no transaction open, whatever the previous user of the connection did.
    ///
    /// # Errors
    /// [`Error::Backend`] if the server cannot be reached.
    pub async fn probe_session(&self) -> Result<SessionProbe> {
        let mut conn = self.app.get().await?;
        let in_transaction = conn.batch(sql::PROBE_TRANSACTION).await.is_ok();
        if in_transaction {
            // Never hand this connection out again.
            conn.mark_in_transaction();
        }
        probe(&conn, in_transaction).await
    }

    /// Leaves session state of every kind the application role can make (settings, a
    /// session-level tenant, a listened channel, an advisory lock, an open cursor) on a pooled
    /// connection, as a careless user of a pool would, and returns it probed just before the
    /// connection goes back. For the test that the next user finds it clean: not for use.
    ///
    /// # Errors
    /// [`Error::Backend`] if the server cannot be reached.
    #[doc(hidden)]
    pub async fn leave_session_state(&self) -> Result<SessionProbe> {
        let conn = self.app.get().await?;
        conn.batch(sql::LEAVE_SESSION_STATE).await?;
        probe(&conn, false).await
    }

    /// One auto-commit transaction with the tenant set, sent with its first statement; end
    /// it with [`PgConn::finish`].
    async fn auto(&self, tenant: &PgTenant) -> Result<PgConn> {
        let mut conn = self.app.get().await?;
        conn.begin_lazy(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str(), None);
        Ok(conn)
    }

    /// One auto-commit transaction of a single statement: `BEGIN`, the tenant, the statement
    /// and `COMMIT` in one round trip.
    async fn auto_one(&self, tenant: &PgTenant) -> Result<PgConn> {
        let mut conn = self.app.get().await?;
        conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str(), None);
        Ok(conn)
    }

    /// The tenant's embedding dimension, `None` while unfixed; read once fixed.
    async fn dimension(&self, tenant: &PgTenant) -> Result<Option<u32>> {
        if let Some(dimension) = tenant.0.dimension.get() {
            return Ok(Some(*dimension));
        }
        let dimension = self.tenant_config(tenant).await?.dimension;
        if let Some(dimension) = dimension {
            let _ = tenant.0.dimension.set(dimension);
        }
        Ok(dimension)
    }

    /// Builds the tenant's HNSW index in the background once its dimension is fixed.
    ///
    /// Not inline: `CREATE INDEX` needs a lock that an open transaction which wrote resources
    /// holds until it ends, and that transaction may belong to the very task that fixed the
    /// dimension (its first embedding) — waiting for it would never end. So the build retries
    /// with a short `lock_timeout` until it gets the lock, the index exists, or the tenant is
    /// gone. Until then searches are exact scans ordered by the same expression: correct, and
    /// fast at the size a tenant has when its first embedding arrives. A build cut short by
    /// the process ending is started again when the tenant is next opened.
    fn build_vector_index(&self, tenant: &PgTenant, dimension: u32) {
        let (schema, metric) = (&tenant.0.schema, tenant.0.metric);
        let Some(index) = sql::create_vector_index(schema, dimension, metric) else {
            return;
        };
        // The search function goes with the index, in the same transaction: a tenant has
        // both or neither.
        let function = sql::create_search_function(schema, dimension, metric, &self.app_role);
        let ddl = format!("{index};\n{}", function.unwrap_or_default());
        let admin = self.admin.clone();
        let id = tenant.0.id.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let mut pause = std::time::Duration::from_millis(20);
            loop {
                let attempt = async {
                    let mut conn = admin.get().await?;
                    conn.begin(sql::BEGIN_READ_COMMITTED, id.as_str()).await?;
                    let result = async {
                        conn.batch(sql::SET_INDEX_LOCK_TIMEOUT).await?;
                        conn.batch(&ddl).await
                    }
                    .await;
                    conn.finish(result).await
                };
                match attempt.await {
                    Ok(()) => {
                        tenant.0.search_function.store(true, Ordering::Relaxed);
                        return;
                    }
                    // The lock timed out (a conflict) or the pool was busy: try again later.
                    Err(Error::Conflict(_) | Error::Invalid { .. }) => {}
                    // The schema was dropped with its tenant, or the server went away.
                    Err(_) => return,
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
        });
    }

    /// How the tenant's embeddings are indexed (see [`sql::Layout`]): read from its index
    /// definition once, since tenants fixed by earlier versions keep their layout.
    async fn layout(&self, tenant: &PgTenant) -> Result<sql::Layout> {
        if let Some(layout) = tenant.0.layout.get() {
            return Ok(*layout);
        }
        let conn = self.app.get().await?;
        let row = conn.query_opt(sql::SELECT_VECTOR_INDEX, &[&tenant.0.schema.as_str()]).await?;
        match row {
            Some(row) => record_vector_index(tenant, &row)?,
            // Not built yet (see `build_vector_index`): it will be built in today's layout.
            None => {
                let _ = tenant.0.layout.set(sql::new_layout(tenant.0.metric));
            }
        }
        Ok(*tenant.0.layout.get_or_init(|| sql::new_layout(tenant.0.metric)))
    }

    /// A tenant's registry row ([`decode_registry`]) and whether its schema is tied to it
    /// ([`sql::SELECT_TENANT`]).
    async fn registry_row(
        &self,
        id: &TenantId,
    ) -> Result<Option<((String, Option<u32>, Metric), bool)>> {
        let conn = self.app.get().await?;
        let row = conn.query_opt(sql::SELECT_TENANT, &[&id.as_str()]).await?;
        row.map(|row| {
            let tied = row.try_get(3).map_err(|e| Error::corrupt("tenant registry", e))?;
            Ok((decode_registry(&row)?, tied))
        })
        .transpose()
    }

    /// Ties the schema of a tenant created by an earlier version to its tenant
    /// ([`sql::tie_schema`]), as the owner role, once: concurrent openers wait on the registry
    /// row, and the later ones find the schema tied.
    async fn tie_schema(&self, id: &TenantId, schema: &SchemaName) -> Result<()> {
        let mut conn = self.admin.get().await?;
        conn.begin(sql::BEGIN_READ_COMMITTED, id.as_str()).await?;
        let result = async {
            conn.query_opt(sql::SELECT_TENANT_FOR_UPDATE, &[&id.as_str()])
                .await?
                .ok_or_else(|| Error::not_found("tenant", id))?;
            let tied: bool = conn
                .query_opt(sql::SELECT_TENANT, &[&id.as_str()])
                .await?
                .ok_or_else(|| Error::not_found("tenant", id))?
                .try_get(3)
                .map_err(|e| Error::corrupt("tenant registry", e))?;
            if !tied {
                conn.batch(&sql::tie_schema(schema, &self.app_role)).await?;
                conn.execute(&sql::insert_schema_tenant(schema), &[&id.as_str()]).await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }
}

/// Records what a row of [`sql::SELECT_VECTOR_INDEX`] says of `tenant`'s index: its layout
/// and whether the search function exists.
fn record_vector_index(tenant: &PgTenant, row: &tokio_postgres::Row) -> Result<()> {
    let bad = |e| Error::corrupt("vector index", e);
    let indexdef: String = row.try_get(0).map_err(bad)?;
    let function: bool = row.try_get(1).map_err(bad)?;
    let _ = tenant.0.layout.set(sql::layout_of(&indexdef));
    if function {
        tenant.0.search_function.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs [`sql::PROBE_SESSION`] on `conn`.
async fn probe(conn: &PgConn, in_transaction: bool) -> Result<SessionProbe> {
    let row = conn
        .query_opt(sql::PROBE_SESSION, &[])
        .await?
        .ok_or_else(|| Error::corrupt("session probe", "no row"))?;
    let bad = |e| Error::corrupt("session probe", e);
    Ok(SessionProbe {
        backend_pid: row.try_get(0).map_err(bad)?,
        current_tenant: row.try_get(1).map_err(bad)?,
        in_transaction,
        leftovers: row.try_get(2).map_err(bad)?,
    })
}

fn decode_registry(row: &tokio_postgres::Row) -> Result<(String, Option<u32>, Metric)> {
    let bad = |e: tokio_postgres::Error| Error::corrupt("tenant registry", e);
    let schema: String = row.try_get(0).map_err(bad)?;
    let dimension: Option<i32> = row.try_get(1).map_err(bad)?;
    let metric: String = row.try_get(2).map_err(bad)?;
    let dimension = dimension
        .map(|d| u32::try_from(d).map_err(|e| Error::corrupt("tenant dimension", e)))
        .transpose()?;
    let metric = metric.parse().map_err(|_| Error::corrupt("tenant metric", metric))?;
    Ok((schema, dimension, metric))
}

fn dimension_param(dimension: Option<u32>) -> Result<Option<i32>> {
    dimension.map(|d| i32::try_from(d).map_err(|e| Error::invalid("dimension", e))).transpose()
}

fn not_found_or<T>(
    what: &'static str,
    id: impl std::fmt::Display,
) -> impl FnOnce(Option<T>) -> Result<T> {
    move |found| found.ok_or_else(|| Error::not_found(what, id))
}

fn missing(what: &'static str, id: impl std::fmt::Display) -> impl FnOnce(bool) -> Result<()> {
    move |existed| if existed { Ok(()) } else { Err(Error::not_found(what, id)) }
}

impl Provider for PgProvider {
    type Tenant = PgTenant;
    type Txn<'p> = PgTxn<'p>;
    const NAME: &'static str = NAME;

    fn capabilities(&self) -> Capabilities {
        Capabilities { vector_index: VectorIndexKind::Hnsw, persistent: true }
    }

    async fn create_tenant(&self, id: &TenantId, config: &TenantConfig) -> Result<()> {
        let schema = SchemaName::of(id);
        let mut conn = self.admin.get().await?;
        conn.begin(sql::BEGIN_READ_COMMITTED, id.as_str()).await?;
        let result = async {
            conn.execute(
                sql::INSERT_TENANT,
                &[
                    &id.as_str(),
                    &schema.as_str(),
                    &dimension_param(config.dimension)?,
                    &config.metric.as_str(),
                ],
            )
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    match conn::violating_key(&e) {
                        Some(key) if key == schema.as_str() => Error::Conflict(format!(
                            "schema {} is registered to another tenant",
                            schema.as_str()
                        )),
                        _ => Error::already_exists("tenant", id),
                    }
                } else {
                    e
                }
            })?;
            conn.batch(&sql::create_schema(&schema, &self.app_role)).await?;
            conn.execute(&sql::insert_schema_tenant(&schema), &[&id.as_str()]).await?;
            // A new schema has no other users yet: its index and search function are built
            // right here.
            if let Some(dimension) = config.dimension {
                let index = sql::create_vector_index(&schema, dimension, config.metric);
                let function =
                    sql::create_search_function(&schema, dimension, config.metric, &self.app_role);
                if let (Some(index), Some(function)) = (index, function) {
                    conn.batch(&format!("{index};\n{function}")).await?;
                }
            }
            Ok(())
        }
        .await;
        conn.finish(result).await.map_err(|e| {
            if is_unique_violation(&e) { Error::already_exists("tenant", id) } else { e }
        })
    }

    async fn open_tenant(&self, id: &TenantId) -> Result<PgTenant> {
        let ((schema, dimension, metric), tied) =
            self.registry_row(id).await?.ok_or_else(|| Error::not_found("tenant", id))?;
        let expected = SchemaName::of(id);
        if schema != expected.as_str() {
            return Err(Error::corrupt("tenant registry", format!("schema {schema} for {id}")));
        }
        if !tied {
            self.tie_schema(id, &expected).await?;
        }
        let tenant = PgTenant(Arc::new(TenantInner {
            id: id.clone(),
            schema: expected,
            metric,
            dimension: std::sync::OnceLock::new(),
            layout: std::sync::OnceLock::new(),
            search_function: std::sync::atomic::AtomicBool::new(false),
            size: TenantSize::new(),
        }));
        if let Some(dimension) = dimension {
            let _ = tenant.0.dimension.set(dimension);
            // A background build the last process did not finish is started again.
            if sql::create_vector_index(&tenant.0.schema, dimension, metric).is_some() {
                let conn = self.app.get().await?;
                let row =
                    conn.query_opt(sql::SELECT_VECTOR_INDEX, &[&tenant.0.schema.as_str()]).await?;
                drop(conn);
                match row {
                    Some(row) => {
                        record_vector_index(&tenant, &row)?;
                        // Tenants created with their dimension by an earlier version got the
                        // index without the search function: the build adds it.
                        let current = tenant.0.layout.get() == Some(&sql::new_layout(metric));
                        if current && !tenant.0.search_function.load(Ordering::Relaxed) {
                            self.build_vector_index(&tenant, dimension);
                        }
                    }
                    None => self.build_vector_index(&tenant, dimension),
                }
            }
        }
        Ok(tenant)
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>> {
        let conn = self.app.get().await?;
        let rows = conn.query(sql::LIST_TENANTS, &[]).await?;
        rows.iter()
            .map(|row| {
                let id: String =
                    row.try_get(0).map_err(|e| Error::corrupt("tenant registry", e))?;
                TenantId::new(id)
            })
            .collect()
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        let mut conn = self.admin.get().await?;
        conn.begin(sql::BEGIN_READ_COMMITTED, id.as_str()).await?;
        let result = async {
            let row = conn.query_opt(sql::DELETE_TENANT, &[&id.as_str()]).await?;
            if row.is_none() {
                return Err(Error::not_found("tenant", id));
            }
            conn.batch(&sql::drop_schema(&SchemaName::of(id))).await
        }
        .await;
        conn.finish(result).await
    }

    fn tenant_id(tenant: &PgTenant) -> &TenantId {
        &tenant.0.id
    }

    async fn tenant_config(&self, tenant: &PgTenant) -> Result<TenantConfig> {
        let ((_, dimension, metric), _) = self
            .registry_row(&tenant.0.id)
            .await?
            .ok_or_else(|| Error::not_found("tenant", &tenant.0.id))?;
        Ok(TenantConfig { dimension, metric })
    }

    async fn fix_dimension(&self, tenant: &PgTenant, dimension: u32) -> Result<u32> {
        let mut conn = self.admin.get().await?;
        conn.begin(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str()).await?;
        let result = async {
            let row = conn
                .query_opt(sql::SELECT_TENANT_FOR_UPDATE, &[&tenant.0.id.as_str()])
                .await?
                .ok_or_else(|| Error::not_found("tenant", &tenant.0.id))?;
            let (_, fixed, metric) = decode_registry(&row)?;
            if let Some(fixed) = fixed {
                return Ok(fixed);
            }
            let _ = tenant.0.layout.set(sql::new_layout(metric));
            conn.execute(
                sql::UPDATE_TENANT_DIMENSION,
                &[&tenant.0.id.as_str(), &dimension_param(Some(dimension))?],
            )
            .await?;
            Ok(dimension)
        }
        .await;
        let fixed = conn.finish(result).await?;
        let _ = tenant.0.dimension.set(fixed);
        self.build_vector_index(tenant, fixed);
        Ok(fixed)
    }

    async fn insert_resources(&self, tenant: &PgTenant, resources: &[Resource]) -> Result<()> {
        // One statement in its own implicit transaction that sets the tenant (see
        // `sql::AS_TENANT`): nothing to begin or commit, nothing left open.
        let conn = self.app.get().await?;
        let (schema, id) = (&tenant.0.schema, Some(tenant.0.id.as_str()));
        match resources {
            [one] => store::insert_resource(&conn, schema, one, id).await,
            _ => store::insert_resources(&conn, schema, resources, id).await,
        }?;
        let embedded = resources.iter().filter(|r| r.embedding.is_some()).count();
        tenant.0.size.added(embedded as u64);
        Ok(())
    }

    async fn get_resource(&self, tenant: &PgTenant, id: ResourceId) -> Result<Resource> {
        let conn = self.auto_one(tenant).await?;
        let result = store::get_resource(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(not_found_or("resource", id))
    }

    async fn update_resource(&self, tenant: &PgTenant, resource: &Resource) -> Result<Resource> {
        let conn = self.auto_one(tenant).await?;
        let result = store::update_resource(&conn, &tenant.0.schema, resource).await;
        conn.finish(result).await.and_then(not_found_or("resource", resource.id))
    }

    async fn delete_resource(&self, tenant: &PgTenant, id: ResourceId) -> Result<()> {
        let conn = self.auto_one(tenant).await?;
        let result = store::delete_resource(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(missing("resource", id))
    }

    async fn insert_entity(&self, tenant: &PgTenant, entity: &Entity) -> Result<()> {
        let conn = self.app.get().await?;
        store::insert_entity(&conn, &tenant.0.schema, entity, Some(tenant.0.id.as_str())).await
    }

    async fn get_entity(&self, tenant: &PgTenant, id: EntityId) -> Result<Entity> {
        let conn = self.auto_one(tenant).await?;
        let result = store::get_entity(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(not_found_or("entity", id))
    }

    async fn update_entity(&self, tenant: &PgTenant, entity: &Entity) -> Result<Entity> {
        let conn = self.auto_one(tenant).await?;
        let result = store::update_entity(&conn, &tenant.0.schema, entity).await;
        conn.finish(result).await.and_then(not_found_or("entity", entity.id))
    }

    async fn delete_entity(&self, tenant: &PgTenant, id: EntityId) -> Result<()> {
        let conn = self.auto_one(tenant).await?;
        let result = store::delete_entity(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(missing("entity", id))
    }

    async fn insert_edge(&self, tenant: &PgTenant, edge: &Edge) -> Result<()> {
        let conn = self.app.get().await?;
        store::insert_edge_as_tenant(&conn, &tenant.0.schema, edge, tenant.0.id.as_str()).await
    }

    async fn get_edge(&self, tenant: &PgTenant, id: EdgeId) -> Result<Edge> {
        let conn = self.auto_one(tenant).await?;
        let result = store::get_edge(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(not_found_or("edge", id))
    }

    async fn get_edges(
        &self,
        tenant: &PgTenant,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        let conn = self.auto(tenant).await?;
        let result = async {
            // Sent together: one round trip (the edges are dropped if the entity is missing).
            let (exists, edges) = tokio::join!(
                store::entity_exists(&conn, &tenant.0.schema, entity),
                store::get_edges(&conn, &tenant.0.schema, entity, direction, relation)
            );
            if !exists? {
                return Err(Error::not_found("entity", entity));
            }
            edges
        }
        .await;
        conn.finish(result).await
    }

    async fn delete_edge(&self, tenant: &PgTenant, id: EdgeId) -> Result<()> {
        let conn = self.auto_one(tenant).await?;
        let result = store::delete_edge(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(missing("edge", id))
    }

    async fn insert_moment(&self, tenant: &PgTenant, moment: &Moment) -> Result<()> {
        let conn = self.app.get().await?;
        store::insert_moment(&conn, &tenant.0.schema, moment, Some(tenant.0.id.as_str())).await
    }

    async fn get_moment(&self, tenant: &PgTenant, id: MomentId) -> Result<Moment> {
        let conn = self.auto_one(tenant).await?;
        let result = store::get_moment(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(not_found_or("moment", id))
    }

    async fn update_moment(&self, tenant: &PgTenant, moment: &Moment) -> Result<Moment> {
        let conn = self.auto_one(tenant).await?;
        let result = store::update_moment(&conn, &tenant.0.schema, moment).await;
        conn.finish(result).await.and_then(missing("moment", moment.id)).map(|()| moment.clone())
    }

    async fn delete_moment(&self, tenant: &PgTenant, id: MomentId) -> Result<()> {
        let conn = self.auto_one(tenant).await?;
        let result = store::delete_moment(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(missing("moment", id))
    }

    async fn search_resources(
        &self,
        tenant: &PgTenant,
        query: &SearchQuery,
    ) -> Result<Vec<ScoredResource>> {
        let Some(dimension) = self.dimension(tenant).await? else {
            return Ok(Vec::new());
        };
        let layout = self.layout(tenant).await?;
        if self.searched_exactly(tenant).await? {
            // A small tenant: a scan in true distance order, the tenant alone set.
            let mut conn = self.app.get().await?;
            let tenant_id = tenant.0.id.as_str();
            if query.filter.is_some() {
                conn.begin_lazy(sql::BEGIN_READ_COMMITTED, tenant_id, None);
            } else {
                conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant_id, None);
            }
            let result = search(&conn, tenant, dimension, layout, query, true).await;
            return conn.finish(result).await;
        }
        self.index_searches.fetch_add(1, Ordering::Relaxed);
        // The HNSW parameters travel with BEGIN, transaction-local like the tenant.
        let ef = self.ef_search.max(query.k).min(MAX_EF_SEARCH);
        let order = if query.filter.is_some() { "relaxed_order" } else { "strict_order" };
        let settings =
            (sql::SET_SEARCH, vec![ef.to_string(), order.to_owned(), "20000".to_owned()]);
        let mut conn = self.app.get().await?;
        let tenant_id = tenant.0.id.as_str();
        let function = tenant.0.search_function.load(Ordering::Relaxed)
            && layout == sql::new_layout(tenant.0.metric);
        if query.filter.is_none() && function {
            // One statement in its own implicit transaction: the function sets the tenant and
            // the settings for it. Nothing to commit, nothing left open.
            let statement = sql::call_search_function(&tenant.0.schema);
            let vector = pgvector::Vector::from(query.vector.clone());
            let limit = i64::try_from(query.k).unwrap_or(i64::MAX);
            let rows =
                conn.query(&statement, &[&vector, &limit, &tenant_id, &ef.to_string()]).await?;
            let hits = rows.iter().map(store::resource_from_row).collect::<Result<Vec<_>>>()?;
            return Ok(rerank(tenant.0.metric, query, hits));
        }
        if query.filter.is_some() {
            conn.begin_lazy(sql::BEGIN_READ_COMMITTED, tenant_id, Some(settings));
        } else {
            // One statement: BEGIN, settings, search and COMMIT in one round trip.
            conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant_id, Some(settings));
        }
        let result = search(&conn, tenant, dimension, layout, query, false).await;
        conn.finish(result).await
    }

    async fn search_entities(&self, tenant: &PgTenant, query: &EntityQuery) -> Result<Vec<Entity>> {
        let conn = self.auto_one(tenant).await?;
        let result = async {
            // Without a property filter the database applies the limit; with one, the filter
            // runs here, so every name match is fetched and cut after filtering.
            let limit = match query.properties {
                None => i64::try_from(query.limit).unwrap_or(i64::MAX),
                Some(_) => i64::MAX,
            };
            let rows = conn
                .query(
                    &sql::search_entities(&tenant.0.schema),
                    &[&query.kind, &words(&query.text), &limit],
                )
                .await?;
            let mut found = Vec::new();
            for row in &rows {
                let entity = store::entity_from_row(row)?;
                if query.properties.as_ref().is_none_or(|f| f.matches(&entity.properties)) {
                    found.push(entity);
                    if found.len() >= query.limit {
                        break;
                    }
                }
            }
            Ok(found)
        }
        .await;
        conn.finish(result).await
    }

    async fn traverse(&self, tenant: &PgTenant, query: &TraverseQuery) -> Result<Vec<Reached>> {
        let conn = self.auto(tenant).await?;
        let result = async {
            let (out, incoming) = store::sides(query.direction);
            let with_relations = !query.relations.is_empty();
            let relations = with_relations.then_some(&query.relations);
            let depth = i32::try_from(query.depth).map_err(|e| Error::invalid("depth", e))?;
            let walk = sql::traverse(&tenant.0.schema, out, incoming, with_relations);
            // Sent together: one round trip (the walk is dropped if the start is missing).
            let start = query.start.as_uuid();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&start, &depth, &relations];
            let (exists, rows) = tokio::join!(
                store::entity_exists(&conn, &tenant.0.schema, query.start),
                conn.query(&walk, &params)
            );
            if !exists? {
                return Err(Error::not_found("entity", query.start));
            }
            let rows = rows?;
            rows.iter()
                .map(|row| {
                    let bad = |e| Error::corrupt("traversal row", e);
                    let id: Uuid = row.try_get(0).map_err(bad)?;
                    let depth: i64 = row.try_get(1).map_err(bad)?;
                    Ok(Reached {
                        entity: EntityId::from(id),
                        depth: u32::try_from(depth).map_err(|e| Error::corrupt("depth", e))?,
                    })
                })
                .collect()
        }
        .await;
        conn.finish(result).await
    }

    async fn moments_in_range(&self, tenant: &PgTenant, range: &TimeRange) -> Result<Vec<Moment>> {
        let conn = self.auto_one(tenant).await?;
        let result = async {
            let rows = conn
                .query(
                    &sql::moments_in_range(&tenant.0.schema),
                    &[&range.start_or_min().as_micros(), &range.end_or_max().as_micros()],
                )
                .await?;
            rows.iter().map(store::moment_from_row).collect()
        }
        .await;
        conn.finish(result).await
    }

    async fn scan(
        &self,
        tenant: &PgTenant,
        kind: RecordKind,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let table = match kind {
            RecordKind::Resource => sql::ScanTable::Resources,
            RecordKind::Entity => sql::ScanTable::Entities,
            RecordKind::Edge => sql::ScanTable::Edges,
            RecordKind::Moment => sql::ScanTable::Moments,
        };
        let conn = self.auto_one(tenant).await?;
        let result = async {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = conn.query(&sql::scan(&tenant.0.schema, table), &[&after, &limit]).await?;
            rows.iter()
                .map(|row| {
                    Ok(match kind {
                        RecordKind::Resource => Record::Resource(store::resource_from_row(row)?),
                        RecordKind::Entity => Record::Entity(store::entity_from_row(row)?),
                        RecordKind::Edge => Record::Edge(store::edge_from_row(row)?),
                        RecordKind::Moment => Record::Moment(store::moment_from_row(row)?),
                    })
                })
                .collect()
        }
        .await;
        conn.finish(result).await
    }

    async fn begin<'p>(&'p self, tenant: &PgTenant) -> Result<PgTxn<'p>> {
        let conn = self.app.get().await?;
        PgTxn::begin(conn, tenant.clone()).await
    }
}

/// Runs a search statement: `$1` the vector, `$2` the limit, `$3` the containment document
/// when the statement has one.
async fn nearest(
    conn: &PgConn,
    statement: &str,
    vector: &pgvector::Vector,
    limit: i64,
    contains: Option<&Json<serde_json::Value>>,
) -> Result<Vec<tokio_postgres::Row>> {
    match contains {
        Some(contains) => conn.query(statement, &[vector, &limit, contains]).await,
        None => conn.query(statement, &[vector, &limit]).await,
    }
}

/// Vector search inside an auto-commit transaction (see the module docs): through the index
/// with the settings of [`sql::SET_SEARCH`], or, when `exact`, by a scan in true distance order
/// with no setting but the tenant.
async fn search(
    conn: &PgConn,
    tenant: &PgTenant,
    dimension: u32,
    layout: sql::Layout,
    query: &SearchQuery,
    exact: bool,
) -> Result<Vec<ScoredResource>> {
    let vector = pgvector::Vector::from(query.vector.clone());
    let schema = &tenant.0.schema;
    let k = query.k;
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    let mut hits = Vec::with_capacity(k);
    match &query.filter {
        None => {
            let order = if exact { sql::Order::Exact } else { sql::Order::Index(layout) };
            let statement = sql::search_resources(schema, dimension, tenant.0.metric, order, false);
            for row in conn.query(&statement, &[&vector, &limit]).await? {
                hits.push(store::resource_from_row(&row)?);
            }
        }
        Some(filter) => {
            let contains = prefilter::containment(filter);
            let narrowed = contains.as_object().is_some_and(|doc| !doc.is_empty());
            let contains = Json(contains);
            let statement =
                |order| sql::search_resources(schema, dimension, tenant.0.metric, order, narrowed);
            let contains = narrowed.then_some(&contains);
            if narrowed && !exact {
                // An iterative scan goes on past rows the containment rejects, up to
                // `hnsw.max_scan_tuples`.
                let statement = statement(sql::Order::Index(layout));
                for row in nearest(conn, &statement, &vector, limit, contains).await? {
                    let resource = store::resource_from_row(&row)?;
                    if filter.matches(&resource.metadata) {
                        hits.push(resource);
                    }
                }
            }
            if hits.len() < k {
                // A small tenant, the index scan gave up (a selective filter), or the filter has
                // no containment to push down: an exact scan, rows in true distance order, the
                // window growing until `k` rows match or the table is exhausted. (A GIN index on `metadata`
                // cannot narrow it: under row-level security the planner never makes the
                // non-leakproof `@>` an index condition.)
                if !exact {
                    // Undoes the index settings sent with BEGIN.
                    conn.query(sql::EXACT_SEARCH, &[]).await?;
                }
                let statement = statement(sql::Order::Exact);
                let mut window = k.saturating_mul(4).max(64);
                loop {
                    let limit = i64::try_from(window).unwrap_or(i64::MAX);
                    let rows = nearest(conn, &statement, &vector, limit, contains).await?;
                    hits.clear();
                    for row in &rows {
                        let resource = store::resource_from_row(row)?;
                        if filter.matches(&resource.metadata) {
                            hits.push(resource);
                            if hits.len() == k {
                                break;
                            }
                        }
                    }
                    if hits.len() == k || rows.len() < window {
                        break;
                    }
                    window = window.saturating_mul(4);
                }
            }
        }
    }
    Ok(rerank(tenant.0.metric, query, hits))
}

/// `hits` with the contract's exact distances to the query, nearest first (ties by id), at
/// most `k`.
fn rerank(metric: Metric, query: &SearchQuery, hits: Vec<Resource>) -> Vec<ScoredResource> {
    let mut scored: Vec<ScoredResource> = hits
        .into_iter()
        .filter_map(|resource| {
            let distance = metric.distance(&query.vector, resource.embedding.as_deref()?);
            Some(ScoredResource { resource, distance })
        })
        .collect();
    scored.sort_by(|a, b| {
        a.distance.total_cmp(&b.distance).then_with(|| a.resource.id.cmp(&b.resource.id))
    });
    scored.truncate(query.k);
    scored
}
