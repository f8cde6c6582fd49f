//! Vector search on PostgreSQL: the HNSW index scan or an exact scan, the exact filter
//! applied in Rust, distances recomputed under the contract's metric. All SQL is in `sql`.

#[allow(unused_imports)]
use super::*;
use crate::model::Filter;
use tokio_postgres::types::ToSql;

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
        let (schema, metric, tail) = (&tenant.0.schema, tenant.0.metric, tenant.0.tail);
        let Some(index) = sql::create_vector_index(schema, dimension, metric, tail) else {
            return;
        };
        // The search function goes with the index, in the same transaction: a tenant has
        // both or neither.
        let function = sql::create_search_function(schema, dimension, metric, &self.app_role, tail);
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
        let tenant_id = tenant.0.id.as_str();
        if self.searched_exactly(tenant).await? {
            // A small tenant: a scan in true distance order, the tenant alone set.
            let mut conn = self.app.get().await?;
            let hits = match &query.filter {
                None => {
                    conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant_id, None);
                    let result = nearest_unfiltered(&conn, tenant, dimension, query, None).await;
                    conn.finish(result).await?
                }
                Some(filter) => {
                    conn.begin_lazy(sql::BEGIN_SNAPSHOT, tenant_id, None);
                    let scan = Candidates::new(filter, self.filter_scan_limit);
                    let result = scan.stream(&conn, tenant, query, false).await;
                    conn.finish(result).await?
                }
            };
            return Ok(rerank(tenant.0.metric, query, hits));
        }
        self.index_searches.fetch_add(1, Ordering::Relaxed);
        // The HNSW parameters travel with BEGIN, transaction-local like the tenant.
        let ef = self.ef_search.max(query.k).min(MAX_EF_SEARCH);
        let order = if query.filter.is_some() { "relaxed_order" } else { "strict_order" };
        let settings =
            (sql::SET_SEARCH, vec![ef.to_string(), order.to_owned(), "20000".to_owned()]);
        let mut conn = self.app.get().await?;
        // The search function reads the tail exactly; a long tail is read through its index.
        let tail_order = tenant.0.tail_state.order();
        let function =
            tenant.0.search_function.load(Ordering::Relaxed) && tail_order == sql::TailOrder::Exact;
        let mut hits = match &query.filter {
            None if function => {
                // One statement in its own implicit transaction: the function sets the tenant
                // and the settings for it. Nothing to commit, nothing left open.
                let statement = sql::call_search_function(&tenant.0.schema);
                let vector = pgvector::Vector::from(query.vector.clone());
                let limit = i64::try_from(query.k).unwrap_or(i64::MAX);
                let rows =
                    conn.query(&statement, &[&vector, &limit, &tenant_id, &ef.to_string()]).await?;
                rows.iter().map(store::resource_from_row).collect::<Result<Vec<_>>>()?
            }
            None => {
                // One statement: BEGIN, settings, search and COMMIT in one round trip.
                conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant_id, Some(settings));
                let order = Some((layout, tail_order));
                let result = nearest_unfiltered(&conn, tenant, dimension, query, order).await;
                conn.finish(result).await?
            }
            Some(filter) => {
                conn.begin_lazy(sql::BEGIN_SNAPSHOT, tenant_id, Some(settings));
                let result = async {
                    let hits =
                        nearest_filtered_by_index(&conn, tenant, dimension, layout, query).await?;
                    if let Some(hits) = hits {
                        return Ok(hits);
                    }
                    // The index scan gave up before `k` rows passed the filter (a selective
                    // filter, or one with nothing to push down): an exact scan, which finds
                    // `k` whenever `k` match among the first `filter_scan_limit`.
                    let scan = Candidates::new(filter, self.filter_scan_limit);
                    scan.stream(&conn, tenant, query, true).await
                }
                .await;
                conn.finish(result).await?
            }
        };
        if query.filter.is_none() && hits.len() < query.k {
            // The walk ended before `k` (pgvector's iterative scan stops at max_scan_tuples,
            // and churn can leave graph entries the walk does not reach): an exact scan of the
            // records' own embeddings, which returns `k` whenever `k` exist.
            let mut conn = self.app.get().await?;
            conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant_id, None);
            let result = nearest_unfiltered(&conn, tenant, dimension, query, None).await;
            hits = conn.finish(result).await?;
        }
        Ok(rerank(tenant.0.metric, query, hits))
    }
}

/// The nearest resources by the index order (`layout`) or, without one, the exact order: one
/// statement, at most `k` rows; with the vector tail and a layout, the graph's `k` and the
/// tail's `k` found in the tail's order ([`sql::search_with_tail`]), for [`rerank`] to cut to
/// `k`.
async fn nearest_unfiltered(
    conn: &PgConn,
    tenant: &PgTenant,
    dimension: u32,
    query: &SearchQuery,
    order: Option<(sql::Layout, sql::TailOrder)>,
) -> Result<Vec<Resource>> {
    let (schema, metric) = (&tenant.0.schema, tenant.0.metric);
    let statement = match order {
        Some((layout, tail_order)) if tenant.0.tail => {
            sql::search_with_tail(schema, dimension, metric, layout, false, tail_order)
        }
        _ => {
            let order = order.map_or(sql::Order::Exact, |(layout, _)| sql::Order::Index(layout));
            sql::search_resources(schema, dimension, metric, order, false)
        }
    };
    let vector = pgvector::Vector::from(query.vector.clone());
    let limit = i64::try_from(query.k).unwrap_or(i64::MAX);
    conn.query(&statement, &[&vector, &limit]).await?.iter().map(store::resource_from_row).collect()
}

/// A filtered search through the HNSW index (iterative scan with the settings of
/// [`sql::SET_SEARCH`]): rows that contain the pushed-down part of the filter ([`prefilter`]),
/// of which those matching the whole filter; with the vector tail, also the tail's nearest
/// such rows; up to [`filtered_candidates`] from the graph, for [`rerank`] to cut to the `k`
/// nearest. `None` when that may miss one of the `k` nearest matches, and an exact scan must
/// answer: nothing can be pushed down (the index scan would return `k` rows that the filter
/// may all reject), the index gave fewer than `k` matches, or the tail's `k` nearest
/// containment matches include one the whole filter rejects (a match further on may then be
/// nearer than the graph's).
async fn nearest_filtered_by_index(
    conn: &PgConn,
    tenant: &PgTenant,
    dimension: u32,
    layout: sql::Layout,
    query: &SearchQuery,
) -> Result<Option<Vec<Resource>>> {
    let Some(filter) = &query.filter else { return Ok(None) };
    let Some(contains) = pushed_down(filter) else { return Ok(None) };
    let (schema, metric, tail) = (&tenant.0.schema, tenant.0.metric, tenant.0.tail);
    let statement = match tail {
        true => {
            sql::search_with_tail(schema, dimension, metric, layout, true, sql::TailOrder::Exact)
        }
        false => sql::search_resources(schema, dimension, metric, sql::Order::Index(layout), true),
    };
    let vector = pgvector::Vector::from(query.vector.clone());
    let limit = i64::try_from(query.k).unwrap_or(i64::MAX);
    let candidates = i64::try_from(filtered_candidates(query.k)).unwrap_or(i64::MAX);
    let rows = match tail {
        true => conn.query(&statement, &[&vector, &limit, &contains, &candidates]).await?,
        false => conn.query(&statement, &[&vector, &candidates, &contains]).await?,
    };
    let mut hits = Vec::with_capacity(rows.len());
    let (mut graph_matches, mut tail_rows, mut tail_rejected) = (0, 0, 0);
    for row in &rows {
        let resource = store::resource_from_row(row)?;
        let from_tail =
            tail && row.try_get::<_, bool>(7).map_err(|e| Error::corrupt("search row", e))?;
        let matches = filter.matches(&resource.metadata);
        match (from_tail, matches) {
            (false, true) => graph_matches += 1,
            (false, false) => {}
            (true, true) => tail_rows += 1,
            (true, false) => {
                tail_rows += 1;
                tail_rejected += 1;
            }
        }
        if matches {
            hits.push(resource);
        }
    }
    let complete = graph_matches >= query.k && (tail_rows < query.k || tail_rejected == 0);
    Ok(complete.then_some(hits))
}

/// How many graph candidates a filtered index search takes for `k` results, to re-rank by the
/// exact distance. The iterative scan (`relaxed_order`) hands out matches in batches that are
/// only roughly in distance order, and the index orders by a half-precision copy: the first
/// `k` it yields miss some of the true `k` nearest, which the next `k` mostly hold (see
/// docs/postgres.md for the recall either way).
fn filtered_candidates(k: usize) -> usize {
    k.saturating_mul(2)
}

/// The containment document of `filter` ([`prefilter::containment`]), `None` when empty.
fn pushed_down(filter: &Filter) -> Option<Json<serde_json::Value>> {
    let contains = prefilter::containment(filter);
    contains.as_object().is_some_and(|doc| !doc.is_empty()).then_some(Json(contains))
}

/// The first batch of candidates a filtered scan fetches, and the largest: the batches double
/// in between, so a scan that must read far takes few round trips, and one that finds `k`
/// matches early reads little past them. Powers of two, so few `FETCH` statements are
/// prepared.
const FIRST_BATCH: usize = 64;
const LARGEST_BATCH: usize = 4096;

/// An exact filtered scan, streamed: candidates (`id` and metadata) come in true distance order
/// from a cursor in batches, the filter runs on each, and the scan stops at `k` matches, at the
/// end of the table, or after `limit` candidates. Only the winners' full rows are fetched, in
/// the same snapshot, with the transaction's `COMMIT` behind them. So a filter that matches
/// fewer than `k` rows costs one sort of the tenant on the server, never a reload of it, and
/// the client holds one batch and `k` rows at a time.
struct Candidates<'f> {
    filter: &'f Filter,
    limit: usize,
}

impl<'f> Candidates<'f> {
    fn new(filter: &'f Filter, limit: usize) -> Self {
        Self { filter, limit: limit.max(1) }
    }

    /// Streams the candidates of `query` on `conn`, inside its transaction; with
    /// `after_index`, first undoes the index settings sent with `BEGIN` ([`sql::EXACT_SEARCH`]).
    async fn stream(
        &self,
        conn: &PgConn,
        tenant: &PgTenant,
        query: &SearchQuery,
        after_index: bool,
    ) -> Result<Vec<Resource>> {
        let schema = &tenant.0.schema;
        let k = query.k;
        let vector = pgvector::Vector::from(query.vector.clone());
        let limit = i64::try_from(self.limit).unwrap_or(i64::MAX);
        let contains = pushed_down(self.filter);
        let declare = sql::declare_candidates(schema, tenant.0.metric, contains.is_some());
        let mut declare_params: Vec<&(dyn ToSql + Sync)> = vec![&vector, &limit];
        if let Some(contains) = &contains {
            declare_params.push(contains);
        }
        let mut before: Vec<conn::Statement<'_>> = Vec::with_capacity(2);
        if after_index {
            before.push((sql::EXACT_SEARCH, &[]));
        }
        before.push((&declare, &declare_params));
        let mut batch = (k.saturating_mul(4)).next_power_of_two().clamp(FIRST_BATCH, LARGEST_BATCH);
        // The cursor is opened and its first batch fetched in one round trip.
        let mut rows = conn.fetch_after(&before, &sql::fetch_candidates(batch)).await?;
        let mut winners: Vec<Uuid> = Vec::with_capacity(k);
        let mut read = 0;
        loop {
            read += rows.len();
            for row in &rows {
                let (id, metadata) = store::candidate_from_text(row)?;
                if self.filter.matches(&metadata) {
                    winners.push(id);
                    if winners.len() == k {
                        break;
                    }
                }
            }
            if winners.len() == k || rows.len() < batch || read >= self.limit {
                break;
            }
            batch = (batch * 2).min(LARGEST_BATCH);
            rows = conn.fetch_after(&[], &sql::fetch_candidates(batch)).await?;
        }
        if winners.is_empty() {
            return Ok(Vec::new());
        }
        conn.commit_after_next();
        let count = i64::try_from(winners.len()).unwrap_or(i64::MAX);
        let rows = conn.query(&sql::select_resources_by_id(schema), &[&winners, &count]).await?;
        rows.iter().map(store::resource_from_row).collect()
    }
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
    // The graph and the tail never hold the same resource in one snapshot; a repeat would sit
    // next to itself.
    scored.dedup_by(|a, b| a.resource.id == b.resource.id);
    scored.truncate(query.k);
    scored
}
