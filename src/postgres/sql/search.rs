//! The statements of vector search: the nearest resources by the HNSW index or an exact
//! scan, the candidate cursor of a filtered search and the rows of its winners, and the
//! server-side search function. What a statement returns is decoded in `postgres::store`.

use super::*;

/// How a search statement orders its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// By the indexed expression (see [`Layout`]): what the HNSW index can serve.
    Index(Layout),
    /// By the exact distance at full precision: a scan, for the exact fallback.
    Exact,
}

/// The nearest resources with an embedding: `$1` the query vector, `$2` the limit; with
/// `filtered`, only resources whose metadata contains `$3` (a `jsonb` document from
/// [`super::prefilter`]). Rows come ordered by `order`'s distance, then id.
pub(crate) fn search_resources(
    schema: &SchemaName,
    dimension: u32,
    metric: Metric,
    order: Order,
    filtered: bool,
) -> String {
    let distance = match order {
        Order::Index(layout) => distance_expression(dimension, metric, layout),
        Order::Exact => exact_distance(metric),
    };
    let filter = if filtered { " AND metadata @> $3::jsonb" } else { "" };
    format!(
        "SELECT {RESOURCE_COLUMNS} FROM {schema}.resources
         WHERE embedding IS NOT NULL{filter}
         ORDER BY {distance}, id LIMIT $2"
    )
}

/// The cursor of a filtered search's candidates ([`declare_candidates`]).
const CANDIDATES: &str = "percolate_candidates";

/// Opens a cursor over the candidates of an exact filtered search: `id` and `metadata` of the
/// resources with an embedding, in true distance order to `$1` (then id), at most `$2`; with
/// `filtered`, only those whose metadata contains `$3`. Read in batches with
/// [`fetch_candidates`], it lets the search stop at `k` matches: the server sorts once and
/// sends only the rows fetched, and no content or embedding travels but the winners'. The
/// cursor is `WITHOUT HOLD`: it ends with its transaction and leaves nothing on the session.
pub(crate) fn declare_candidates(schema: &SchemaName, metric: Metric, filtered: bool) -> String {
    let distance = exact_distance(metric);
    let filter = if filtered { " AND metadata @> $3::jsonb" } else { "" };
    format!(
        "DECLARE {CANDIDATES} NO SCROLL CURSOR WITHOUT HOLD FOR
         SELECT id, metadata FROM {schema}.resources
         WHERE embedding IS NOT NULL{filter}
         ORDER BY {distance}, id LIMIT $2"
    )
}

/// The next `rows` candidates of [`declare_candidates`]'s cursor (a count cannot be a
/// parameter; callers use a few fixed counts, so a few statements are prepared).
pub(crate) fn fetch_candidates(rows: usize) -> String {
    format!("FETCH FORWARD {rows} FROM {CANDIDATES}")
}

/// The resources whose ids are in `$1`, at most `$2`: the winners of a filtered search.
pub(crate) fn select_resources_by_id(schema: &SchemaName) -> String {
    format!("SELECT {RESOURCE_COLUMNS} FROM {schema}.resources WHERE id = ANY($1) LIMIT $2")
}

/// How many of a tenant's resources have an embedding, counted up to `$1` and no further:
/// what tells a small tenant, searched exactly, from a large one (see
/// `PgConfig::exact_below`). It reads at most `$1` rows, however large the tenant.
pub(crate) fn count_embeddings_up_to(schema: &SchemaName) -> String {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {schema}.resources WHERE embedding IS NOT NULL \
         LIMIT $1) AS bounded"
    )
}

/// The settings of an unfiltered index search, as [`SET_SEARCH`] makes them with `$2`
/// `ef_search`, `strict_order`, 20000 and the tail's probes; for [`create_search_function`], whose third and
/// fourth parameters are the tenant and `ef_search`.
const FUNCTION_SETTINGS: &str = "set_config('app.current_tenant', tenant, true),
        set_config('hnsw.ef_search', ef, true),
        set_config('hnsw.iterative_scan', 'strict_order', true),
        set_config('hnsw.max_scan_tuples', '20000', true),
        set_config('ivfflat.probes', '8', true),
        set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true),
        set_config('plan_cache_mode', 'force_generic_plan', true)";

/// A tenant's unfiltered search as one statement, created with its vector index:
/// `{schema}.nearest_resources(query, k, tenant, ef_search)` sets the tenant and the search
/// settings for its transaction exactly as [`SET_SEARCH`] does, then returns
/// [`search_resources`]'s rows (`$1` and `$2` are its first two parameters there too). Called
/// alone ([`call_search_function`]), it runs in the implicit transaction of its statement, so
/// the settings end with it, and the call needs no `BEGIN`, settings statement or `COMMIT`:
/// one statement to parse, run and answer instead of four (50 us less per search on loopback,
/// measured). It runs as its caller (not `SECURITY DEFINER`), so row-level security applies
/// as to any statement, and sets nothing its caller could not set itself. With `tail` it
/// returns the graph's rows and the tail's ([`search_with_tail`], one statement and so one
/// snapshot), up to `2 k` rows for the caller to re-rank. `None` when the dimension has no
/// index.
pub(crate) fn create_search_function(
    schema: &SchemaName,
    dimension: u32,
    metric: Metric,
    app_role: &str,
    tail: bool,
) -> Option<String> {
    let layout = new_layout(metric);
    indexed_expression(dimension, metric, layout)?;
    let search = match tail {
        true => search_with_tail(schema, dimension, metric, layout, false, TailOrder::Exact),
        false => search_resources(schema, dimension, metric, Order::Index(layout), false),
    };
    let app = quote_identifier(app_role);
    let signature = format!("{schema}.nearest_resources(vector, bigint, text, text)");
    Some(format!(
        "CREATE OR REPLACE FUNCTION {schema}.nearest_resources(
            query vector, k bigint, tenant text, ef text)
        RETURNS TABLE (id uuid, uri text, content text, metadata jsonb, embedding vector,
            created_at bigint, updated_at bigint)
        LANGUAGE plpgsql AS $search$
        #variable_conflict use_column
        BEGIN
            PERFORM {FUNCTION_SETTINGS};
            RETURN QUERY {search};
        END
        $search$;
        REVOKE ALL ON FUNCTION {signature} FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION {signature} TO {app};"
    ))
}

/// Calls [`create_search_function`]'s function: `$1` the query vector, `$2` the limit, `$3` the
/// tenant id, `$4` `hnsw.ef_search`.
pub(crate) fn call_search_function(schema: &SchemaName) -> String {
    format!("SELECT {RESOURCE_COLUMNS} FROM {schema}.nearest_resources($1, $2, $3, $4)")
}
