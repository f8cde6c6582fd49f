//! Vector search on PostgreSQL: the HNSW index scan or an exact scan, the exact filter
//! applied in Rust, distances recomputed under the contract's metric. All SQL is in `sql`.

#[allow(unused_imports)]
use super::*;

/// What a provider knows of a tenant's number of embeddings, to search small tenants exactly
/// ([`PgConfig::exact_below`]) without counting on every search. Either choice gives correct
/// results (the scan exactly; the index approximately, as for any large tenant), so a stale
/// count costs at most speed or recall, and only until the next count: a search counts again
/// when the count is older than [`RECOUNT_AFTER`], and a count never reads more than
/// `exact_below` rows ([`sql::count_embeddings_up_to`]), however large the tenant.
#[derive(Debug)]
pub(super) struct TenantSize {
    /// Embeddings counted (up to `exact_below`) plus those inserted through this handle since;
    /// [`TenantSize::UNCOUNTED`] until the first count.
    embeddings: AtomicU64,
    /// When last counted, in milliseconds after `opened`; the search that moves it counts.
    counted_at: AtomicU64,
    opened: std::time::Instant,
}

impl TenantSize {
    const UNCOUNTED: u64 = u64::MAX;

    pub(crate) fn new() -> Self {
        Self {
            embeddings: AtomicU64::new(Self::UNCOUNTED),
            counted_at: AtomicU64::new(0),
            opened: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The count, or `None` when this caller must count (never counted, or counted too long
    /// ago and no concurrent search has claimed the recount).
    pub(crate) fn known(&self) -> Option<u64> {
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

    pub(crate) fn counted(&self, embeddings: u64) {
        self.embeddings.store(embeddings, Ordering::Relaxed);
        self.counted_at.store(self.now(), Ordering::Relaxed);
    }

    /// `added` embeddings were inserted through this handle.
    pub(crate) fn added(&self, added: u64) {
        let _ = self.embeddings.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n != Self::UNCOUNTED).then(|| n.saturating_add(added).min(Self::UNCOUNTED - 1))
        });
    }
}

/// Records what a row of [`sql::SELECT_VECTOR_INDEX`] says of `tenant`'s index: whether the
/// search function built with it exists.
pub(super) fn record_vector_index(tenant: &PgTenant, row: &tokio_postgres::Row) -> Result<()> {
    let bad = |e| Error::corrupt("vector index", e);
    let function: bool = row.try_get(1).map_err(bad)?;
    if function {
        tenant.0.search_function.store(true, Ordering::Relaxed);
    }
    Ok(())
}

impl PgProvider {
    /// Whether a search of `tenant` is exact: it has fewer than `exact_below` embeddings, as
    /// last counted (see [`TenantSize`]).
    pub(super) async fn searched_exactly(&self, tenant: &PgTenant) -> Result<bool> {
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

    /// The tenant's embedding dimension, `None` while unfixed; read once fixed.
    pub(super) async fn dimension(&self, tenant: &PgTenant) -> Result<Option<u32>> {
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
    pub(super) fn build_vector_index(&self, tenant: &PgTenant, dimension: u32) {
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

    /// The `k` nearest resources (see [`Provider::search_resources`]).
    pub(super) async fn search(
        &self,
        tenant: &PgTenant,
        query: &SearchQuery,
    ) -> Result<Vec<ScoredResource>> {
        let Some(dimension) = self.dimension(tenant).await? else {
            return Ok(Vec::new());
        };
        let layout = sql::new_layout(tenant.0.metric);
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
        let function = tenant.0.search_function.load(Ordering::Relaxed);
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
}

/// Runs a search statement: `$1` the vector, `$2` the limit, `$3` the containment document
/// when the statement has one.
pub(super) async fn nearest(
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
pub(super) async fn search(
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
pub(super) fn rerank(
    metric: Metric,
    query: &SearchQuery,
    hits: Vec<Resource>,
) -> Vec<ScoredResource> {
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
