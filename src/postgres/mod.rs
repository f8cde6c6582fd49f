//! The PostgreSQL provider: one shared server, a schema per tenant, forced row-level security,
//! pgvector HNSW indexes.
//!
//! Design decisions:
//! - **Two roles, two pools.** [`PgConfig::admin_url`] connects as the *owner* role, which runs
//!   schema setup (tenant creation and deletion, fixing a dimension). [`PgConfig::url`] connects
//!   as the *application* role, which runs every data query: it must not be a superuser, must not
//!   have `BYPASSRLS` and owns nothing, so row-level security always applies to it.
//!   [`PgProvider::connect`] checks that and refuses such a role (also when `admin_url` is
//!   `None` or connects as the same role: one role would do both) unless
//!   [`PgConfig::allow_privileged_app_role`] asks for single-role development.
//! - **TLS** with rustls, libpq's `sslmode` and `sslrootcert`, `verify-full` by default for a
//!   server off loopback (`tls`).
//! - **Isolation by schema and by policy.** Each tenant's tables live in a schema named only by
//!   [`tenant`] (collision-free, at most 63 bytes, quoted) and recorded in the registry
//!   `percolate.tenants` (`schema` unique). Every table has `tenant_id`; RLS is enabled and
//!   forced, and its policy checks, in `USING` and `WITH CHECK`, that a row's `tenant_id` is
//!   both `current_setting('app.current_tenant')` and the schema's own tenant (a one-row table
//!   of the schema, written by the owner role): a transaction set to one tenant can neither
//!   write nor see rows in another's schema, whatever it tags them with. Every transaction sets the tenant
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
//! - **Writes do not wait for the graph.** pgvector inserts into an HNSW index inside the
//!   statement that writes the row (about 2 ms per 384-d embedding here), so the index is
//!   not on `resources`: a write puts its embeddings in an unindexed tail table, in the same
//!   statement, and merges move them into the indexed graph table, in the background or on
//!   [`Provider::flush_vector_index`]; searches read graph and tail in one statement
//!   (`sql::tail` states the invariant, `tail` schedules the merges).
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
//!   containment to push down, the search is exact and streamed (`vector`): `id` and metadata
//!   in true distance order from a cursor, in batches, up to `k` matches or
//!   [`PgConfig::filter_scan_limit`] rows, then the full rows of the winners only, so `k`
//!   results come back whenever `k` resources match among that many. Entity search with a
//!   properties filter reads keyed pages in name order the same way. Every search statement has a
//!   `LIMIT`. Distances are recomputed with
//!   [`Metric::distance`], so they are exactly the contract's (cosine `1 - cos`, squared L2,
//!   negative dot) on every provider.
//! - **Values are bind parameters**; all SQL text is in `sql`.

mod batch;
mod conn;
mod entity_search;
mod json;
mod prefilter;
mod sql;
mod store;
mod tail;
pub mod tenant;
mod text;
mod tls;
mod txn;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod};
use tokio_postgres::types::Json;
use uuid::Uuid;

pub use sql::{HNSW_EF_CONSTRUCTION, HNSW_M};
pub use tls::PgSslMode;
pub use txn::PgTxn;

use crate::error::{Error, Result};
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, EntityQuery, Metric, Moment, MomentId, Reached,
    Record, RecordKind, Resource, ResourceId, ScoredResource, SearchQuery, TenantConfig, TenantId,
    TextHit, TextQuery, TimeRange, TraverseQuery,
};
use crate::provider::{Capabilities, Provider, VectorIndexKind};
use conn::{PgConn, is_unique_violation};
use tenant::SchemaName;

mod config;
mod pool;
#[cfg(feature = "testing")]
mod probe;
mod vector;

pub use config::PgConfig;
use config::*;
use pool::Pooled;
#[cfg(feature = "testing")]
pub use probe::SessionProbe;
use vector::*;

pub(crate) const NAME: &str = "postgres";

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
    /// Whether its schema is known to have the search function
    /// ([`sql::create_search_function`]): read with the index definition, or set by the build
    /// that created it (never unset: the function is only dropped with the schema).
    search_function: std::sync::atomic::AtomicBool,
    /// Its embeddings as last counted, for choosing exact search.
    size: TenantSize,
    /// Whether its schema has the vector tail (`sql::tail`): embeddings are written there and
    /// merged into the HNSW index later. Schemas made before the tail existed have none.
    tail: bool,
    /// The background merge of the tail (`tail`), its estimated length and its index.
    tail_state: tail::TailState,
}

/// The PostgreSQL provider. See the [module docs](self).
pub struct PgProvider {
    app: Pooled,
    admin: Pooled,
    app_role: String,
    ef_search: usize,
    exact_below: usize,
    filter_scan_limit: usize,
    /// [`PgConfig::background_merge`].
    background_merge: bool,
    /// Searches served by the HNSW index (see [`PgProvider::index_searches`]).
    index_searches: AtomicU64,
}

impl PgProvider {
    /// Connects, refuses an application role that row-level security would not bind, creates
    /// the tenant registry if needed and grants the application role access to it.
    ///
    /// The application role must not be a superuser, have `BYPASSRLS`, be the owner role, or
    /// own (itself or through a role it is a member of) the registry's or a tenant's schema or
    /// a table in them: any of these turns the policies off for it. Such a role is refused
    /// unless [`PgConfig::allow_privileged_app_role`] asks for a single-role development setup.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed URL or TLS setting, or a privileged application
    /// role; [`Error::Backend`] naming the server address (and what went wrong with TLS, when
    /// that is the cause) if it cannot be reached or refuses the setup.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let app = Pooled::new(&config.url, &config, config.pool_size)?;
        let admin = match &config.admin_url {
            Some(url) => Pooled::new(url, &config, config.admin_pool_size)?,
            None => Pooled::new(&config.url, &config, config.admin_pool_size)?,
        };
        let allow = config.allow_privileged_app_role;
        let (app_role, privileges): (String, Vec<String>) = {
            let conn = app.get().await?;
            let row = conn
                .query_opt(sql::APP_ROLE_PRIVILEGES, &[])
                .await?
                .ok_or_else(|| Error::corrupt("current_user", "no row"))?;
            let bad = |e| Error::corrupt("current_user", e);
            (row.try_get(0).map_err(bad)?, row.try_get(1).map_err(bad)?)
        };
        if !allow && !privileges.is_empty() {
            return Err(privileged(&app_role, &privileges.join(", ")));
        }
        let conn = admin.get().await?;
        if !allow {
            let row = conn
                .query_opt(sql::CURRENT_USER, &[])
                .await?
                .ok_or_else(|| Error::corrupt("current_user", "no row"))?;
            let owner: String = row.try_get(0).map_err(|e| Error::corrupt("current_user", e))?;
            if owner == app_role {
                let how = match config.admin_url {
                    None => "no admin url is set, so",
                    Some(_) => "the admin url connects as the same role:",
                };
                return Err(privileged(
                    &app_role,
                    &format!("{how} it would own the tenant schemas it creates"),
                ));
            }
        }
        // Providers connecting at once race on `CREATE ... IF NOT EXISTS` and on `GRANT`
        // (PostgreSQL reports "tuple concurrently updated"); the loser retries.
        let setup = format!(
            "{}\n{}\n{}",
            sql::CREATE_REGISTRY,
            sql::CREATE_TEXT_CONFIG,
            sql::grant_registry(&app_role)
        );
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
        drop(conn);
        if !allow {
            let conn = app.get().await?;
            let row = conn
                .query_opt(sql::APP_ROLE_OWNERSHIP, &[])
                .await?
                .ok_or_else(|| Error::corrupt("schema owners", "no row"))?;
            let owned: Vec<String> =
                row.try_get(0).map_err(|e| Error::corrupt("schema owners", e))?;
            if !owned.is_empty() {
                return Err(privileged(&app_role, &format!("it owns {}", owned.join(", "))));
            }
        }
        Ok(Self {
            app,
            admin,
            app_role,
            ef_search: config.ef_search.clamp(1, MAX_EF_SEARCH),
            exact_below: config.exact_below,
            filter_scan_limit: config.filter_scan_limit.max(1),
            background_merge: config.background_merge,
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

    /// A tenant's registry row ([`decode_registry`]).
    async fn registry_row(&self, id: &TenantId) -> Result<Option<(String, Option<u32>, Metric)>> {
        let conn = self.app.get().await?;
        let row = conn.query_opt(sql::SELECT_TENANT, &[&id.as_str()]).await?;
        row.map(|row| decode_registry(&row)).transpose()
    }
}

/// The refusal of an application role that row-level security would not bind, and why.
fn privileged(role: &str, why: &str) -> Error {
    Error::invalid(
        "postgres application role",
        format!(
            "{role} is not bound by row-level security ({why}); connect the application as a \
             role that is not a superuser, has no BYPASSRLS and owns nothing, with admin_url \
             for the owner role (see docs/postgres.md), or set allow_privileged_app_role \
             (PERCOLATE_POSTGRES_ALLOW_PRIVILEGED_APP_ROLE) for single-role development"
        ),
    )
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
                let index = sql::create_vector_index(&schema, dimension, config.metric, true);
                let function = sql::create_search_function(
                    &schema,
                    dimension,
                    config.metric,
                    &self.app_role,
                    true,
                );
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
        let (schema, dimension, metric) =
            self.registry_row(id).await?.ok_or_else(|| Error::not_found("tenant", id))?;
        let expected = SchemaName::of(id);
        if schema != expected.as_str() {
            return Err(Error::corrupt("tenant registry", format!("schema {schema} for {id}")));
        }
        let (tail, text) = {
            let conn = self.app.get().await?;
            let row = conn.query_opt(sql::SELECT_SCHEMA_FEATURES, &[&expected.as_str()]).await?;
            let row = row.ok_or_else(|| Error::corrupt("tenant schema", "no row"))?;
            let bad = |e| Error::corrupt("tenant schema", e);
            (row.try_get::<_, bool>(0).map_err(bad)?, row.try_get::<_, bool>(1).map_err(bad)?)
        };
        if !text {
            self.admin.get().await?.batch(&sql::create_text_columns(&expected)).await?;
        }
        let tenant = PgTenant(Arc::new(TenantInner {
            id: id.clone(),
            schema: expected,
            metric,
            dimension: std::sync::OnceLock::new(),
            search_function: std::sync::atomic::AtomicBool::new(false),
            size: TenantSize::new(),
            tail,
            tail_state: tail::TailState::default(),
        }));
        if tail {
            self.open_tail(&tenant).await?;
        }
        // Opening a tenant merges what the tail holds: rows a process left when it exited.
        self.merge_in_background(&tenant, 0);
        if let Some(dimension) = dimension {
            let _ = tenant.0.dimension.set(dimension);
            // A background build the last process did not finish is started again.
            if sql::create_vector_index(&tenant.0.schema, dimension, metric, tail).is_some() {
                let conn = self.app.get().await?;
                let row =
                    conn.query_opt(sql::SELECT_VECTOR_INDEX, &[&tenant.0.schema.as_str()]).await?;
                drop(conn);
                match row {
                    Some(row) => record_vector_index(&tenant, &row)?,
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

    /// Closes the idle connections of both pools: the server holds the data, and a pool
    /// reconnects on the next call.
    async fn release_memory(&self) -> Result<()> {
        self.app.close_idle();
        self.admin.close_idle();
        Ok(())
    }

    fn tenant_id(tenant: &PgTenant) -> &TenantId {
        &tenant.0.id
    }

    async fn tenant_config(&self, tenant: &PgTenant) -> Result<TenantConfig> {
        let (_, dimension, metric) = self
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
            let (_, fixed, _) = decode_registry(&row)?;
            if let Some(fixed) = fixed {
                return Ok(fixed);
            }
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
        let (schema, id, tail) = (&tenant.0.schema, Some(tenant.0.id.as_str()), tenant.0.tail);
        match resources {
            [one] => store::insert_resource(&conn, schema, one, id, tail).await,
            _ => store::insert_resources(&conn, schema, resources, id, tail).await,
        }?;
        drop(conn);
        let embedded = resources.iter().filter(|r| r.embedding.is_some()).count();
        tenant.0.size.added(embedded as u64);
        if embedded > 0 {
            self.merge_in_background(tenant, embedded as u64);
        }
        Ok(())
    }

    async fn get_resource(&self, tenant: &PgTenant, id: ResourceId) -> Result<Resource> {
        let conn = self.auto_one(tenant).await?;
        let result = store::get_resource(&conn, &tenant.0.schema, id).await;
        conn.finish(result).await.and_then(not_found_or("resource", id))
    }

    async fn update_resource(&self, tenant: &PgTenant, resource: &Resource) -> Result<Resource> {
        let (schema, tail) = (&tenant.0.schema, tenant.0.tail);
        // Removing an embedding takes its tail row and graph entry out in a second statement.
        let forget = tail && resource.embedding.is_none();
        let conn = match forget {
            true => self.auto(tenant).await?,
            false => self.auto_one(tenant).await?,
        };
        let result = async {
            let updated = store::update_resource(&conn, schema, resource, tail).await?;
            if forget && updated.is_some() {
                store::forget_unembedded(&conn, schema, &[resource.id.as_uuid()]).await?;
            }
            Ok(updated)
        }
        .await;
        let updated = conn.finish(result).await.and_then(not_found_or("resource", resource.id))?;
        if updated.embedding.is_some() {
            self.merge_in_background(tenant, 1);
        }
        Ok(updated)
    }

    async fn delete_resource(&self, tenant: &PgTenant, id: ResourceId) -> Result<()> {
        let (schema, tail) = (&tenant.0.schema, tenant.0.tail);
        // With the tail, its graph entry goes in a second statement (see `sql::tail`).
        let conn = match tail {
            true => self.auto(tenant).await?,
            false => self.auto_one(tenant).await?,
        };
        let result = async {
            let deleted = store::delete_resource(&conn, schema, id, tail).await?;
            if tail && deleted {
                store::forget_unembedded(&conn, schema, &[id.as_uuid()]).await?;
            }
            Ok(deleted)
        }
        .await;
        conn.finish(result).await.and_then(missing("resource", id))
    }

    async fn insert_entity(&self, tenant: &PgTenant, entity: &Entity) -> Result<()> {
        let conn = self.app.get().await?;
        store::insert_entity(&conn, &tenant.0.schema, entity, Some(tenant.0.id.as_str())).await
    }

    async fn insert_entities(&self, tenant: &PgTenant, entities: &[Entity]) -> Result<()> {
        let conn = self.app.get().await?;
        batch::insert_entities(&conn, &tenant.0.schema, entities, tenant.0.id.as_str()).await
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

    async fn insert_edges(&self, tenant: &PgTenant, edges: &[Edge]) -> Result<()> {
        let conn = self.app.get().await?;
        batch::insert_edges(&conn, &tenant.0.schema, edges, tenant.0.id.as_str()).await
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

    async fn insert_moments(&self, tenant: &PgTenant, moments: &[Moment]) -> Result<()> {
        let conn = self.app.get().await?;
        batch::insert_moments(&conn, &tenant.0.schema, moments, tenant.0.id.as_str()).await
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
        self.search(tenant, query).await
    }

    async fn text_search(&self, tenant: &PgTenant, query: &TextQuery) -> Result<Vec<TextHit>> {
        self.text_search_rows(tenant, query).await
    }

    async fn search_entities(&self, tenant: &PgTenant, query: &EntityQuery) -> Result<Vec<Entity>> {
        self.entity_search(tenant, query).await
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

    /// Merges the tenant's vector tail into the HNSW index (see `tail`): rebuilds the index
    /// when the tail outgrows it, else moves the rows in small transactions.
    async fn flush_vector_index(&self, tenant: &PgTenant) -> Result<()> {
        self.flush_tail(tenant).await
    }

    async fn begin<'p>(&'p self, tenant: &PgTenant) -> Result<PgTxn<'p>> {
        let conn = self.app.get().await?;
        PgTxn::begin(self, conn, tenant.clone()).await
    }
}
