//! The statements of the vector tail: embeddings written but not yet in the HNSW graph. Owns
//! the SQL that writes resources through the tail, merges the tail into the graph and searches
//! graph and tail together; the rest of the resource statements stay in `sql`.
//!
//! A schema with the tail keeps three places for a resource's embedding:
//! - `resources.embedding`, the record's own, which every read returns;
//! - [`TAIL`] (`id`, `embedding`): embeddings written and not yet merged; once the tenant has
//!   enough embeddings to train it, with an IVF index ([`create_tail_index`]) that a search of a
//!   long tail reads instead of scanning every row;
//! - [`VECTORS`] (`id`, `embedding`): the graph, the table that carries the HNSW index.
//!
//! A write (insert or update) stores the record and, in the same statement, puts its embedding
//! in the tail: pgvector does no graph work inside the write. A merge moves tail rows into
//! [`VECTORS`], one statement per batch, so a crash or a dropped connection at any point moves
//! a row whole or not at all. What holds at every commit: each resource with an embedding has
//! it in the tail or in [`VECTORS`], equal to the record's, and a search reads both in one
//! statement (one snapshot), so a merge committing meanwhile can neither hide a row nor show
//! it twice. [`VECTORS`] may also hold stale entries, whose embedding differs from their
//! record's or whose record is gone (a transaction re-embedded or deleted it; transactions
//! leave the graph table alone): a search joins every graph entry to its record and keeps
//! only those whose embedding is the record's; merging the resource's new tail row replaces
//! a stale entry, clean-ups after deletes remove theirs, and an index rebuild sweeps whatever
//! is left.
//!
//! No merge writes `resources`, and no write inside a [`super::super::PgTxn`] deletes from the
//! tail or the graph: a `REPEATABLE READ` transaction that touched a row a merge changed after
//! its snapshot would fail to commit for a change the caller never made.

use super::*;

/// The tail table: ids and embeddings written and not yet in the graph.
pub(crate) const TAIL: &str = "resource_vec_tail";
/// The graph table: ids and embeddings under the HNSW index `resources_embedding`.
pub(crate) const VECTORS: &str = "resource_vectors";

/// The tail and graph tables of a new schema (their row-level security is set with the other
/// tables').
pub(crate) fn create_tail_tables(schema: &SchemaName, tenant_column: &str) -> String {
    [TAIL, VECTORS]
        .map(|table| {
            format!(
                "CREATE TABLE {schema}.{table} (
                    {tenant_column},
                    id uuid PRIMARY KEY,
                    embedding vector NOT NULL
                ) WITH (autovacuum_vacuum_scale_factor = 0.05);
                "
            )
        })
        .concat()
}

/// The rows of a batch of resources from one array per column (`$1` to `$7`).
const UNNEST_RESOURCES: &str = "unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[],
    $5::vector[], $6::bigint[], $7::bigint[])
    AS r(id, uri, content, metadata, embedding, created_at, updated_at)";

/// Inserts a batch of resources and the tail rows of those with an embedding, in one
/// statement: with `as_tenant`, as the tenant `$8` in a statement of its own (see
/// [`AS_TENANT`]), else in the connection's transaction.
pub(crate) fn insert_resources_through_tail(schema: &SchemaName, as_tenant: bool) -> String {
    let (with, tenant, from) = match as_tenant {
        true => (format!("{AS_TENANT},"), "tenant.id, ", "tenant CROSS JOIN "),
        false => ("WITH".to_owned(), "", ""),
    };
    let tenant_column = if as_tenant { "tenant_id, " } else { "" };
    format!(
        "{with} stored AS (
             INSERT INTO {schema}.resources ({tenant_column}{RESOURCE_COLUMNS})
             SELECT {tenant}r.* FROM {from}{UNNEST_RESOURCES}
             RETURNING {tenant_column}id, embedding)
         INSERT INTO {schema}.{TAIL} ({tenant_column}id, embedding)
         SELECT {tenant_column}id, embedding FROM stored WHERE embedding IS NOT NULL"
    )
}

/// Replaces a resource's fields (as [`update_resource`]) and puts its embedding, if any, in
/// the tail; returns the kept `created_at`. A graph entry of the old embedding stays, and no
/// search returns it (see the module docs).
pub(crate) fn update_resource_through_tail(schema: &SchemaName) -> String {
    format!(
        "WITH updated AS (
             UPDATE {schema}.resources
             SET uri = $2, content = $3, metadata = $4, embedding = $5, updated_at = $6, {}
             WHERE id = $1 RETURNING id, created_at, embedding),
         tailed AS (
             INSERT INTO {schema}.{TAIL} (id, embedding)
             SELECT id, embedding FROM updated WHERE embedding IS NOT NULL
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding)
         SELECT created_at FROM updated",
        super::text_terms_after_update("$3")
    )
}

/// Deletes a resource and its tail row; returns how many resources it deleted (0 or 1). Its
/// graph entry goes with [`forget_unembedded`], run next in the same transaction: tail rows
/// are locked before graph rows, as a merge locks them, so the two never deadlock.
pub(crate) fn delete_resource_through_tail(schema: &SchemaName) -> String {
    format!(
        "WITH deleted AS (DELETE FROM {schema}.resources WHERE id = $1 RETURNING id),
         untailed AS (DELETE FROM {schema}.{TAIL} t USING deleted d WHERE t.id = d.id)
         SELECT count(*) FROM deleted"
    )
}

/// Deletes the tail rows and graph entries of the resources of `$1` that are gone or have no
/// embedding: after an auto-commit delete or an update that removed the embedding, in its
/// transaction, and after a transaction that did either commits (see the module docs).
pub(crate) fn forget_unembedded(schema: &SchemaName) -> String {
    format!(
        "WITH untailed AS (
             DELETE FROM {schema}.{TAIL} t WHERE t.id = ANY($1) AND NOT EXISTS (
                 SELECT 1 FROM {schema}.resources r
                 WHERE r.id = t.id AND r.embedding IS NOT NULL))
         DELETE FROM {schema}.{VECTORS} v WHERE v.id = ANY($1) AND NOT EXISTS (
             SELECT 1 FROM {schema}.resources r WHERE r.id = v.id AND r.embedding IS NOT NULL)"
    )
}

/// Moves up to `$1` of the oldest tail rows into the graph: deletes them from the tail and
/// writes them to [`VECTORS`] (replacing an older entry of the same resource), which makes
/// pgvector insert them into the HNSW index. Returns the number of tail rows taken.
///
/// Tail rows are locked before graph rows, as every other statement locks them; a tail row a
/// concurrent write holds is skipped (`SKIP LOCKED`) and moved by a later merge. A tail row
/// locked after a concurrent update returns its latest embedding. One statement, so one
/// transaction: a merge cut short anywhere (a crash, a dropped connection) moves nothing, and
/// a repeated or concurrent merge finds only rows still in the tail.
pub(crate) fn merge_tail(schema: &SchemaName) -> String {
    format!(
        "WITH picked AS (
             DELETE FROM {schema}.{TAIL} WHERE id IN (
                 SELECT id FROM {schema}.{TAIL} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, embedding),
         merged AS (
             INSERT INTO {schema}.{VECTORS} (id, embedding) SELECT id, embedding FROM picked
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding)
         SELECT count(*) FROM picked"
    )
}

/// Reclaims the tail's dead rows, which every search's scan of the tail would otherwise read:
/// run by the owner role, outside a transaction, once a flush has emptied the tail. With
/// `INDEX_CLEANUP ON`: when only a few dead rows are left, a plain `VACUUM` skips the index
/// pass and keeps their line pointers, so their pages are not empty and the table cannot be
/// truncated past them; the emptied pages of a merged load (thousands) would then stay, and
/// every search would read them all (an empty tail of 11,000 pages cost 4 ms per search).
pub(crate) fn vacuum_tail(schema: &SchemaName) -> String {
    format!("VACUUM (INDEX_CLEANUP ON) {schema}.{TAIL}")
}

/// The number of tail rows and of graph entries.
pub(crate) fn count_tail(schema: &SchemaName) -> String {
    format!(
        "SELECT (SELECT count(*) FROM {schema}.{TAIL}), (SELECT count(*) FROM {schema}.{VECTORS})"
    )
}

/// Moves the whole tail into a freshly built index, as the owner role with the tenant set, in
/// one transaction: drops the index, moves every tail row into [`VECTORS`] in one statement,
/// deletes the entries that do not match their record (left by writes that raced a merge; no
/// merge runs meanwhile, the table is locked) and builds the index (`create_index`,
/// [`create_vector_index`]) over all entries at once.
/// pgvector builds a graph in memory several times faster than it inserts the same rows one by
/// one; writes go on meanwhile (into the tail), but searches wait for the build, which holds
/// [`VECTORS`]' exclusive lock: only for a tail larger than the graph (a bulk load).
pub(crate) fn rebuild_with_tail(schema: &SchemaName, create_index: &str) -> String {
    format!(
        "SET LOCAL maintenance_work_mem = '{REBUILD_MEMORY}';
         DROP INDEX IF EXISTS {schema}.resources_embedding;
         WITH picked AS (DELETE FROM {schema}.{TAIL} RETURNING id, embedding)
         INSERT INTO {schema}.{VECTORS} (id, embedding) SELECT id, embedding FROM picked
         ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding;
         DELETE FROM {schema}.{VECTORS} v WHERE NOT EXISTS (
             SELECT 1 FROM {schema}.resources r WHERE r.id = v.id AND r.embedding = v.embedding);
         {create_index};"
    )
}

/// Memory for an index build: a graph that fits is built in memory, much faster than on disk
/// (about 70 MB per 50,000 384-d embeddings at `m` 8).
const REBUILD_MEMORY: &str = "1GB";

/// The nearest resources in the graph and in the tail together, one statement: `$1` the query
/// vector, `$2` `k`; with `filtered`, only resources whose metadata contains `$3`, and the
/// graph part returns up to `$4` candidates (the caller filters and re-ranks them). The graph
/// part reads the HNSW index of [`VECTORS`] in its order and keeps the entries whose
/// embedding is their record's (the scan goes on past the others), at most `k`: the check is
/// a scalar subquery, evaluated per entry the scan yields, which the planner cannot turn into
/// a join over the whole table as it may an `EXISTS`; the tail part
/// takes the `k` tail rows nearest by `tail_order`. With `filtered` each row ends with
/// `from_tail`, saying which part it came from. Callers re-rank the union with exact distances
/// and keep `k`.
pub(crate) fn search_with_tail(
    schema: &SchemaName,
    dimension: u32,
    metric: Metric,
    layout: Layout,
    filtered: bool,
    tail_order: TailOrder,
) -> String {
    let distance = distance_expression(dimension, metric, layout);
    let tail_distance = match (tail_order, filtered) {
        (TailOrder::Cells, false) => distance.clone(),
        _ => exact_distance_of(metric, "t.embedding"),
    };
    let (filter, tail_filter, graph_mark, tail_mark, graph_limit) = match filtered {
        true => (
            " AND r.metadata @> $3::jsonb",
            format!(
                " WHERE EXISTS (SELECT 1 FROM {schema}.resources f \
                 WHERE f.id = t.id AND f.metadata @> $3::jsonb)"
            ),
            ", false AS from_tail",
            ", true AS from_tail",
            "$4",
        ),
        false => ("", String::new(), "", "", "$2"),
    };
    format!(
        "(SELECT {RESOURCE_COLUMNS}{graph_mark} FROM {schema}.resources
          WHERE id = ANY(ARRAY(
              SELECT id FROM {schema}.{VECTORS}
              WHERE (SELECT r.embedding = {VECTORS}.embedding{filter} FROM {schema}.resources r
                     WHERE r.id = {VECTORS}.id)
              ORDER BY {distance}, id LIMIT {graph_limit})))
         UNION ALL
         (SELECT {RESOURCE_COLUMNS}{tail_mark} FROM {schema}.resources
          WHERE id = ANY(ARRAY(
              SELECT t.id FROM {schema}.{TAIL} t{tail_filter}
              ORDER BY {tail_distance}, t.id LIMIT $2)))"
    )
}

/// How the tail part of [`search_with_tail`] finds its `k` nearest rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TailOrder {
    /// Every tail row by the exact distance: a scan, exact, whose cost grows with the tail.
    Exact,
    /// By the graph's indexed expression, which the tail index serves ([`create_tail_index`]):
    /// the rows of the 8 lists nearest the query (`ivfflat.probes`, which `SET_SEARCH` sets),
    /// an eighth of the tail, not every row. Unfiltered
    /// only: a filtered tail part stays exact, since the probed lists may hold no match.
    Cells,
}

/// The tail's IVF index.
const TAIL_INDEX: &str = "resource_vec_tail_cells";
/// Lists of the tail's IVF index: a tail of 10,000 rows puts about 160 in each.
pub(crate) const TAIL_LISTS: u32 = 64;
/// Graph entries sampled to train the tail index's lists: pgvector's k-means reads up to 50 per
/// list.
pub(crate) const TAIL_TRAINING_ROWS: u32 = 50 * TAIL_LISTS;

/// Creates the tail's IVF index, as the owner role with the tenant set, in one transaction:
/// `percent` of the graph's pages (`TABLESAMPLE SYSTEM`), at most [`TAIL_TRAINING_ROWS`] rows,
/// are copied into the tail under fresh ids, the index is built (pgvector's k-means learns the
/// lists' centres from what the tail then holds) and the copies, tail rows with no resource,
/// are deleted before the commit, so no other transaction ever sees them. No tail row of a
/// resource is taken for a copy: a resource and its tail row are written in one statement,
/// which the build's lock on the tail holds off until the commit, so every tail row this
/// transaction can see has its resource visible too. The index is on the graph's indexed
/// expression, so a search orders both parts alike; its lists stay as trained (pgvector never
/// retrains), and every later write puts its row in the nearest list, which costs
/// [`TAIL_LISTS`] distances.
/// `None` when the dimension has no index. The build waits at most `lock_timeout` for the
/// tail's lock (writes hold it until they commit); a caller retries later.
pub(crate) fn create_tail_index(
    schema: &SchemaName,
    dimension: u32,
    metric: Metric,
    percent: f64,
) -> Option<String> {
    let (indexed, ops) = indexed_expression(dimension, metric, new_layout(metric))?;
    let percent = percent.clamp(0.0001, 100.0);
    Some(format!(
        "SET LOCAL lock_timeout = '100ms';
         SET LOCAL maintenance_work_mem = '256MB';
         INSERT INTO {schema}.{TAIL} (id, embedding)
             SELECT gen_random_uuid(), embedding FROM {schema}.{VECTORS}
             TABLESAMPLE SYSTEM ({percent:.4}) LIMIT {TAIL_TRAINING_ROWS};
         CREATE INDEX IF NOT EXISTS {TAIL_INDEX} ON {schema}.{TAIL}
             USING ivfflat (({indexed}) {ops}) WITH (lists = {TAIL_LISTS});
         DELETE FROM {schema}.{TAIL} t WHERE NOT EXISTS (
             SELECT 1 FROM {schema}.resources r WHERE r.id = t.id);"
    ))
}

/// The tail's rows, and the graph's row estimate (`reltuples`, -1 before the first `ANALYZE`),
/// as the owner role: for sampling the graph to train the tail index.
pub(crate) fn tail_rows_and_graph_estimate(schema: &SchemaName) -> String {
    format!(
        "SELECT (SELECT count(*) FROM {schema}.{TAIL}),
                (SELECT reltuples::float8 FROM pg_catalog.pg_class
                 WHERE oid = '{schema}.{VECTORS}'::regclass)"
    )
}

/// The tail's rows, and whether the schema (`$1`, bare) has the tail index: what a handle
/// starts from when it opens the tenant.
pub(crate) fn tail_on_open(schema: &SchemaName) -> String {
    format!(
        "SELECT (SELECT count(*) FROM {schema}.{TAIL}), EXISTS (SELECT 1 FROM pg_catalog.pg_indexes
             WHERE schemaname = $1 AND indexname = '{TAIL_INDEX}')"
    )
}
