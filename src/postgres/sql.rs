//! Every SQL statement of the PostgreSQL provider.
//!
//! Statements that touch a tenant's tables are built from its [`SchemaName`] (which displays as
//! a quoted identifier made only by [`super::tenant`]) and, for vector search, its dimension and
//! metric (numbers and fixed operator names). Every value is a bind parameter: no text from a
//! caller is ever spliced into SQL.
//!
//! Times are stored as `bigint` microseconds since the epoch, exactly as [`crate::Timestamp`]
//! holds them: a round trip is lossless over the whole range, including the open range bounds
//! `Timestamp::MIN`/`MAX` that `timestamptz` cannot represent.

use super::tenant::{SchemaName, quote_identifier};
use crate::model::Metric;

mod batch;
mod search;
mod tail;
mod text;
pub(crate) use batch::*;
pub(crate) use search::*;
pub(crate) use tail::*;
pub(crate) use text::*;

/// The tenant each transaction runs as; read by every row-level security policy.
pub(crate) const SET_TENANT: &str = "SELECT set_config('app.current_tenant', $1, true)";
/// Begins an auto-commit operation: one short transaction.
pub(crate) const BEGIN_READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
/// Begins a [`super::PgTxn`]: its reads see one snapshot, and a concurrent commit of a row it
/// writes makes its own commit fail with a serialization failure.
pub(crate) const BEGIN_REPEATABLE_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ";
/// Commits.
pub(crate) const COMMIT: &str = "COMMIT";
/// Rolls back.
pub(crate) const ROLLBACK: &str = "ROLLBACK";
/// Begins a filtered search, whose statements must agree on one snapshot: the stream of
/// candidates ([`declare_candidates`]) and the rows of the winners ([`select_resources_by_id`]),
/// or the pages of an entity search. Read only, so it can never fail to serialize.
pub(crate) const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
/// The role a pool connects as.
pub(crate) const CURRENT_USER: &str = "SELECT current_user::text";
/// The role the application pool connects as, and the roles it is or may act as (it is a
/// member of them) that row-level security does not bind, each as `name is a superuser` or
/// `name has BYPASSRLS` (at most five).
pub(crate) const APP_ROLE_PRIVILEGES: &str = "SELECT current_user::text, ARRAY(
    SELECT r.rolname::text
        || CASE WHEN r.rolsuper THEN ' is a superuser' ELSE ' has BYPASSRLS' END
    FROM pg_catalog.pg_roles r
    WHERE (r.rolsuper OR r.rolbypassrls)
        AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
    ORDER BY 1 LIMIT 5)";
/// The schemas of percolate (the registry's and every tenant's) that the current role owns,
/// or owns a table of, itself or through a role it is a member of (at most five): an owner
/// can turn row-level security off.
pub(crate) const APP_ROLE_OWNERSHIP: &str = "SELECT ARRAY(
    SELECT n.nspname::text FROM pg_catalog.pg_namespace n
    WHERE (n.nspname = 'percolate' OR n.nspname IN (SELECT schema FROM percolate.tenants))
        AND (pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid
                AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')))
    ORDER BY 1 LIMIT 5)";
#[cfg(feature = "testing")]
/// What a pooled connection carries: its server process, the tenant setting the next
/// statement would run with, and any session state (what [`SESSION_CLEAN`] would reset):
/// settings made for the session, open cursors, listened channels, advisory locks held,
/// temporary tables, a role other than the session's.
pub(crate) const PROBE_SESSION: &str = "SELECT pg_backend_pid(),
    coalesce(current_setting('app.current_tenant', true), ''),
    ARRAY(SELECT 'setting ' || name FROM pg_catalog.pg_settings WHERE source = 'session'
        UNION ALL SELECT 'cursor ' || name FROM pg_catalog.pg_cursors WHERE name <> ''
        UNION ALL SELECT 'listening ' || c FROM pg_catalog.pg_listening_channels() c
        UNION ALL SELECT 'advisory lock ' || objid FROM pg_catalog.pg_locks
            WHERE locktype = 'advisory' AND pid = pg_backend_pid()
        UNION ALL SELECT 'temporary table ' || relname FROM pg_catalog.pg_class
            WHERE relnamespace = pg_my_temp_schema()
        UNION ALL SELECT 'role ' || current_user WHERE current_user <> session_user)";
#[cfg(feature = "testing")]
/// Session state of every kind [`PROBE_SESSION`] reports that the application role can make
/// (it may not create temporary tables): for the test that a connection left so is cleaned
/// before its next user runs anything.
pub(crate) const LEAVE_SESSION_STATE: &str = "SET application_name = 'percolate-leftover';
    SELECT set_config('app.current_tenant', 'percolate-leftover', false);
    LISTEN percolate_leftover;
    SELECT pg_advisory_lock(4242);
    BEGIN; DECLARE percolate_leftover CURSOR WITH HOLD FOR SELECT 1; COMMIT;";
#[cfg(feature = "testing")]
/// Succeeds only inside a transaction block: how a probe tells whether one is open.
pub(crate) const PROBE_TRANSACTION: &str = "SAVEPOINT percolate_probe";
/// The tenant (`$1`, as [`SET_TENANT`]) and the parameters of one search, for its transaction
/// only: `$2` `hnsw.ef_search`, `$3` `hnsw.iterative_scan`, `$4` `hnsw.max_scan_tuples`, and the
/// lists a search of the tail index reads (see [`TailOrder::Cells`]); and the
/// plan: the HNSW index, never a sequential scan and sort (which the planner would pick for a
/// selective metadata filter, reading every row), planned once per connection (a generic plan:
/// the index scan does not depend on the parameters).
pub(crate) const SET_SEARCH: &str = "SELECT set_config('app.current_tenant', $1, true),
    set_config('hnsw.ef_search', $2, true),
    set_config('hnsw.iterative_scan', $3, true), set_config('hnsw.max_scan_tuples', $4, true),
    set_config('ivfflat.probes', '8', true),
    set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true),
    set_config('plan_cache_mode', 'force_generic_plan', true)";
/// The tenant (`$1`, as [`SET_TENANT`]) of an entity search, and its plan: rows in name order
/// from the index `entities_name`, read only as far as the page needs, never a scan and sort of
/// every name match. Without it the planner takes row-level security's condition to leave a
/// handful of rows and sorts the whole table to return a page.
pub(crate) const SET_ENTITY_SEARCH: &str = "SELECT set_config('app.current_tenant', $1, true),
    set_config('enable_sort', 'off', true)";
/// An exact search for the rest of the transaction: no index scan, rows in true distance order
/// ([`Order::Exact`]), planned afresh under these settings rather than by a plan cached under
/// [`SET_SEARCH`]. Without JIT: a scan of a large tenant costs far above `jit_above_cost`, and
/// on servers built with LLVM compiling the plan would take longer than the scan saves (the
/// test server has no JIT; production builds usually do).
pub(crate) const EXACT_SEARCH: &str = "SELECT set_config('enable_indexscan', 'off', true),
    set_config('enable_seqscan', 'on', true), set_config('enable_sort', 'on', true),
    set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true)";

/// The session cleanup of deadpool's `RecyclingMethod::Clean`, run at every checkout (see
/// [`super::conn`]); a test checks it is deadpool's, statement for statement.
pub(crate) const SESSION_CLEAN: &str = "\
    CLOSE ALL; \
    SET SESSION AUTHORIZATION DEFAULT; \
    RESET ALL; \
    UNLISTEN *; \
    SELECT pg_advisory_unlock_all(); \
    DISCARD TEMP; \
    DISCARD SEQUENCES;\
";

/// The registry of tenants, shared by all; created by the owner role.
pub(crate) const CREATE_REGISTRY: &str = "
CREATE SCHEMA IF NOT EXISTS percolate;
CREATE TABLE IF NOT EXISTS percolate.tenants (
    id text PRIMARY KEY,
    schema text NOT NULL UNIQUE,
    dimension integer,
    metric text NOT NULL
);";

/// Lets the application role read the registry (and nothing else in it).
pub(crate) fn grant_registry(app_role: &str) -> String {
    let app = quote_identifier(app_role);
    format!(
        "GRANT USAGE ON SCHEMA percolate TO {app};
         GRANT SELECT ON percolate.tenants TO {app};"
    )
}

/// Registers a tenant: `$1` id, `$2` schema, `$3` dimension, `$4` metric.
pub(crate) const INSERT_TENANT: &str =
    "INSERT INTO percolate.tenants (id, schema, dimension, metric) VALUES ($1, $2, $3, $4)";
/// A tenant's registry row: schema, dimension, metric.
pub(crate) const SELECT_TENANT: &str =
    "SELECT schema, dimension, metric FROM percolate.tenants WHERE id = $1";
/// A tenant's registry row, locked for fixing its dimension.
pub(crate) const SELECT_TENANT_FOR_UPDATE: &str =
    "SELECT schema, dimension, metric FROM percolate.tenants WHERE id = $1 FOR UPDATE";
/// Records a tenant's dimension.
pub(crate) const UPDATE_TENANT_DIMENSION: &str =
    "UPDATE percolate.tenants SET dimension = $2 WHERE id = $1";
/// Every tenant id, sorted by bytes.
pub(crate) const LIST_TENANTS: &str = "SELECT id FROM percolate.tenants ORDER BY id COLLATE \"C\"";
/// Unregisters a tenant, returning its schema.
pub(crate) const DELETE_TENANT: &str =
    "DELETE FROM percolate.tenants WHERE id = $1 RETURNING schema";

/// Drops a tenant's schema and everything in it.
pub(crate) fn drop_schema(schema: &SchemaName) -> String {
    format!("DROP SCHEMA IF EXISTS {schema} CASCADE")
}

const TABLES: [&str; 6] = ["resources", "entities", "edges", "moments", TAIL, VECTORS];

/// The schema's own tenant: a table of one row (`only_row` is unique and must be true) holding
/// the id of the tenant the schema belongs to, written once by the owner role as a bind
/// parameter ([`insert_schema_tenant`]). The application role may only read it, and its own
/// policy shows the row only to a transaction set to that tenant. That policy reads the
/// setting with `missing_ok` (unset is no match, still failing closed): the planner evaluates
/// it to estimate the subquery of [`tenant_policy`], which a one-statement insert
/// ([`AS_TENANT`]) plans before its CTE has set the tenant.
fn create_tenant_table(schema: &SchemaName, app: &str) -> String {
    let s = schema;
    format!(
        "CREATE TABLE {s}.tenant (
            id text PRIMARY KEY,
            only_row boolean NOT NULL DEFAULT true UNIQUE CHECK (only_row)
        );
        ALTER TABLE {s}.tenant ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {s}.tenant FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON {s}.tenant
            USING (id = current_setting('app.current_tenant', true))
            WITH CHECK (id = current_setting('app.current_tenant', true));
        GRANT SELECT ON {s}.tenant TO {app};
        "
    )
}

/// Writes the schema's tenant (`$1`) into [`create_tenant_table`]'s table, once: run by the
/// owner role with the tenant set, as its policy requires.
pub(crate) fn insert_schema_tenant(schema: &SchemaName) -> String {
    format!("INSERT INTO {schema}.tenant (id) VALUES ($1) ON CONFLICT DO NOTHING")
}

/// The condition of every tenant table's policy, in `USING` and `WITH CHECK`: the row's
/// `tenant_id` is the transaction's tenant *and* the schema's own ([`create_tenant_table`]).
/// The setting alone would let a transaction set to tenant A write rows tagged A into B's
/// schema and read them back there; the second comparison ties each schema to its tenant
/// whatever the setting says. The subquery runs once per statement.
fn tenant_policy(schema: &SchemaName) -> String {
    format!(
        "tenant_id = current_setting('app.current_tenant') \
         AND tenant_id = (SELECT id FROM {schema}.tenant)"
    )
}

/// Creates a tenant's schema, tables, indexes and row-level security, and grants the
/// application role data access (no DDL, no ownership). The schema's tenant is written after,
/// in the same transaction, by [`insert_schema_tenant`].
pub(crate) fn create_schema(schema: &SchemaName, app_role: &str) -> String {
    let s = schema;
    // Every row names its tenant; the default comes from the transaction's setting and the
    // policy's WITH CHECK refuses any other value.
    let tenant = "tenant_id text NOT NULL DEFAULT current_setting('app.current_tenant', true)";
    // The tail and the graph table: see `sql::tail`.
    let tail = create_tail_tables(s, tenant);
    let mut sql = format!(
        "CREATE SCHEMA {s};
        REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
        CREATE TABLE {s}.resources (
            {tenant},
            id uuid PRIMARY KEY,
            uri text,
            content text NOT NULL,
            metadata jsonb NOT NULL,
            embedding vector,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL
        );
        {tail}CREATE TABLE {s}.entities (
            {tenant},
            id uuid PRIMARY KEY,
            name text NOT NULL,
            kind text NOT NULL,
            words text[] NOT NULL,
            properties jsonb NOT NULL,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL
        );
        CREATE INDEX entities_name ON {s}.entities (name COLLATE \"C\", id);
        CREATE INDEX entities_words ON {s}.entities USING gin (words);
        CREATE TABLE {s}.edges (
            {tenant},
            id uuid PRIMARY KEY,
            from_id uuid NOT NULL REFERENCES {s}.entities (id) ON DELETE CASCADE,
            to_id uuid NOT NULL REFERENCES {s}.entities (id) ON DELETE CASCADE,
            relation text NOT NULL,
            weight real NOT NULL,
            properties jsonb NOT NULL,
            created_at bigint NOT NULL
        );
        CREATE INDEX edges_from ON {s}.edges (from_id, relation, to_id);
        CREATE INDEX edges_to ON {s}.edges (to_id, relation, from_id);
        CREATE TABLE {s}.moments (
            {tenant},
            id uuid PRIMARY KEY,
            start_at bigint NOT NULL,
            end_at bigint NOT NULL CHECK (end_at >= start_at),
            kind text NOT NULL,
            content text NOT NULL,
            entities uuid[] NOT NULL,
            metadata jsonb NOT NULL
        );
        CREATE INDEX moments_start ON {s}.moments (start_at, id);
        CREATE INDEX moments_end ON {s}.moments (end_at);
        "
    );
    sql.push_str(&create_text_columns(s));
    let app = quote_identifier(app_role);
    sql.push_str(&format!("GRANT USAGE ON SCHEMA {s} TO {app};\n"));
    sql.push_str(&create_tenant_table(s, &app));
    let policy = tenant_policy(s);
    for table in TABLES {
        sql.push_str(&format!(
            "ALTER TABLE {s}.{table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {s}.{table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON {s}.{table} USING ({policy}) WITH CHECK ({policy});
            GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.{table} TO {app};
            "
        ));
    }
    sql
}

/// How a tenant's embeddings are indexed (its index `resources_embedding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// HNSW on the typed column with the metric's operator class: `vector` up to 2000
    /// dimensions, `halfvec` up to 4000, no index beyond. Every L2 and dot tenant, and cosine
    /// tenants whose dimension was fixed before [`Layout::Unit`] existed.
    Typed,
    /// Cosine tenants up to 4000 dimensions: HNSW over the unit vectors
    /// (`l2_normalize(embedding)`) at half precision, by inner product. Cosine order is inner
    /// product order of unit vectors, so the index orders exactly as `<=>` would up to half
    /// precision rounding; an index tuple is half the size and a distance one product instead
    /// of three (`<=>` computes both norms every time), which makes searches and inserts
    /// cheaper. Normalizing first keeps every component within `[-1, 1]`, so the cast can never
    /// overflow `halfvec`, whatever the stored magnitudes. Results are re-ranked with exact
    /// distances in Rust either way.
    Unit,
}

/// The layout a tenant whose dimension is fixed now gets.
pub(crate) fn new_layout(metric: Metric) -> Layout {
    match metric {
        Metric::Cosine => Layout::Unit,
        // Half precision could overflow on large components: these stay in `vector`.
        Metric::L2 | Metric::Dot => Layout::Typed,
    }
}

/// The definition of a tenant's vector index, `$1` its schema name (bare), and whether the
/// schema has the [`create_search_function`] function (built with the index, in the same
/// transaction). The catalog is readable by every role.
pub(crate) const SELECT_VECTOR_INDEX: &str = "SELECT indexdef,
    EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 AND p.proname = 'nearest_resources')
    FROM pg_catalog.pg_indexes
    WHERE schemaname = $1 AND tablename IN ('resources', 'resource_vectors')
        AND indexname = 'resources_embedding'";

/// How embeddings of a dimension are indexed in [`Layout::Typed`]: pgvector's HNSW takes
/// `vector` up to 2000 dimensions and `halfvec` up to 4000; beyond that search is an exact scan.
fn index_cast(dimension: u32) -> Option<(&'static str, &'static str)> {
    match dimension {
        0..=2000 => Some(("vector", "vector")),
        2001..=4000 => Some(("halfvec", "halfvec")),
        _ => None,
    }
}

fn operator(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "<=>",
        Metric::L2 => "<->",
        Metric::Dot => "<#>",
    }
}

fn ops_suffix(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "cosine_ops",
        Metric::L2 => "l2_ops",
        Metric::Dot => "ip_ops",
    }
}

/// HNSW build parameters of new indexes: `m` (neighbours per node and layer; twice that on
/// the bottom layer) and `ef_construction` (the candidate list of an insertion).
///
/// A search's cost is the index pages it visits: each visit costs far more than its distance.
/// A sparser graph (m 8) visits fewer pages per step, and a better-built one (ef_construction
/// 200) needs fewer steps for the same recall, so m 8 / 200 reaches recall@10 0.95 on 100k
/// 384-d embeddings visiting fewer pages than pgvector's default m 16 / 64, with a 12% smaller
/// index. A graph this sparse misses true neighbours on small tenants; those are never
/// searched through it: below `PgConfig::exact_below` embeddings a search is an exact scan.
/// `docs/benchmarks.md` has the figures and how to reproduce them.
pub const HNSW_M: u32 = 8;
/// See [`HNSW_M`].
pub const HNSW_EF_CONSTRUCTION: u32 = 200;

/// The HNSW index of a tenant whose dimension is fixed, in [`new_layout`]; `None` when the
/// dimension is too large for pgvector's HNSW (search is then an exact scan). Built with
/// [`HNSW_M`] and [`HNSW_EF_CONSTRUCTION`]; an index built before keeps its parameters.
///
/// The column itself stays an untyped `vector`: changing its type would change the result
/// type of statements already prepared on pooled connections. The index is on a typed
/// expression (which also rejects any row of another dimension once it exists), and searches
/// order by the same expression so the planner can use it. There is no check constraint:
/// adding one needs an exclusive lock that would wait for every open transaction on the
/// tenant, and the engine checks every embedding against the fixed dimension anyway.
///
/// With `tail` (a schema with the vector tail, see `sql::tail`) the index is on the graph
/// table [`VECTORS`], which only merges write, so a write through the tail costs pgvector
/// nothing; without, on `resources`.
pub(crate) fn create_vector_index(
    schema: &SchemaName,
    dimension: u32,
    metric: Metric,
    tail: bool,
) -> Option<String> {
    let (indexed, ops) = indexed_expression(dimension, metric, new_layout(metric))?;
    let table = if tail { VECTORS } else { "resources" };
    Some(format!(
        "CREATE INDEX IF NOT EXISTS resources_embedding ON {schema}.{table} \
         USING hnsw (({indexed}) {ops}) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
    ))
}

/// Whether the schema `$1` (bare) has the vector tail (see `sql::tail`), and whether it has
/// full text (see `sql::text`). Schemas made before the tail existed keep their index on
/// `resources`; those made before full text are given it when a provider opens them.
pub(crate) const SELECT_SCHEMA_FEATURES: &str = "SELECT
    EXISTS (SELECT 1 FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = 'resource_vec_tail'),
    EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = 'moments' AND a.attname = 'text_terms'
          AND NOT a.attisdropped)";

/// Bounds how long the background index build waits for a lock before it tries again later:
/// an open transaction that wrote resources holds a lock the build needs.
pub(crate) const SET_INDEX_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '100ms'";

/// The indexed expression of a layout and its operator class; `None` when nothing is indexed.
fn indexed_expression(dimension: u32, metric: Metric, layout: Layout) -> Option<(String, String)> {
    match layout {
        Layout::Unit if dimension <= 4000 => Some((
            format!("l2_normalize(embedding)::halfvec({dimension})"),
            "halfvec_ip_ops".to_owned(),
        )),
        Layout::Unit | Layout::Typed => index_cast(dimension).map(|(cast, ops)| {
            (format!("embedding::{cast}({dimension})"), format!("{ops}_{}", ops_suffix(metric)))
        }),
    }
}

/// The distance expression an index search orders by: the indexed expression against `$1`.
fn distance_expression(dimension: u32, metric: Metric, layout: Layout) -> String {
    match (layout, indexed_expression(dimension, metric, layout)) {
        (Layout::Unit, Some((indexed, _))) => {
            format!("({indexed} <#> l2_normalize($1::vector)::halfvec({dimension}))")
        }
        (Layout::Typed, Some(_)) => {
            let (cast, _) = index_cast(dimension).unwrap_or(("vector", "vector"));
            let op = operator(metric);
            format!("(embedding::{cast}({dimension}) {op} ($1::vector)::{cast}({dimension}))")
        }
        (_, None) => exact_distance(metric),
    }
}

/// The exact distance: full precision, no index (the check constraint fixes the dimension).
/// pgvector's cosine distance is NaN when either vector is zero, and PostgreSQL sorts NaN after
/// every number; the contract puts a zero vector at cosine distance 1 ([`Metric::distance`]),
/// so a scan orders it there too.
fn exact_distance(metric: Metric) -> String {
    exact_distance_of(metric, "embedding")
}

/// [`exact_distance`] of the vector in `column`.
fn exact_distance_of(metric: Metric, column: &str) -> String {
    match metric {
        Metric::Cosine => format!("COALESCE(NULLIF({column} <=> $1::vector, 'NaN'::float8), 1)"),
        Metric::L2 | Metric::Dot => format!("({column} {} $1::vector)", operator(metric)),
    }
}

const RESOURCE_COLUMNS: &str = "id, uri, content, metadata, embedding, created_at, updated_at";
const ENTITY_COLUMNS: &str = "id, name, kind, properties, created_at, updated_at";
const EDGE_COLUMNS: &str = "id, from_id, to_id, relation, weight, properties, created_at";
const MOMENT_COLUMNS: &str = "id, start_at, end_at, kind, content, entities, metadata";

/// Inserts a batch of resources from parallel arrays in one statement.
pub(crate) fn insert_resources(schema: &SchemaName) -> String {
    format!(
        "INSERT INTO {schema}.resources ({RESOURCE_COLUMNS})
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::vector[],
                              $6::bigint[], $7::bigint[])"
    )
}

/// Opens a write that is one statement in its own implicit transaction: `$8` is the tenant,
/// set transaction-locally by the CTE `tenant` and written as each row's `tenant_id`.
///
/// Why this is as safe as `BEGIN`, [`SET_TENANT`], the `INSERT` and `COMMIT`:
/// - a statement sent outside a transaction block runs in an implicit transaction that ends
///   with it, so `set_config(.., true)` lasts for that statement only and is undone on failure;
///   nothing is left on the pooled connection (the isolation tests probe it);
/// - `set_config` is volatile, so the CTE is evaluated once and never inlined, and every row to
///   insert is built *from* its one row (`... FROM tenant`): no row reaches the table, and so no
///   `WITH CHECK` runs, before the tenant is set. The policy then checks the row's `tenant_id`
///   against the setting as for any insert; a forged `tenant_id` is refused (tested);
/// - only inserts take this form: an `UPDATE` or `DELETE` scans the table, and row-level
///   security's filter could be evaluated before the CTE, against no tenant.
///
/// One statement instead of four saves the server parsing and answering `BEGIN`, the setting
/// and `COMMIT` (see `conn`), which matters most on a durable server.
const AS_TENANT: &str =
    "WITH tenant AS MATERIALIZED (SELECT set_config('app.current_tenant', $8, true) AS id)";

/// Inserts one resource as the tenant `$8`, as one statement (see [`AS_TENANT`]).
pub(crate) fn insert_resource_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.resources (tenant_id, {RESOURCE_COLUMNS})
         SELECT tenant.id, $1::uuid, $2::text, $3::text, $4::jsonb, $5::vector, $6::bigint,
                $7::bigint
         FROM tenant"
    )
}

/// [`insert_resources`] as the tenant `$8`, as one statement (see [`AS_TENANT`]).
pub(crate) fn insert_resources_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.resources (tenant_id, {RESOURCE_COLUMNS})
         SELECT tenant.id, r.* FROM tenant CROSS JOIN
             unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::vector[],
                    $6::bigint[], $7::bigint[]) AS r"
    )
}

/// [`insert_entity`] as the tenant `$8`, as one statement (see [`AS_TENANT`]).
pub(crate) fn insert_entity_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.entities
             (tenant_id, id, name, kind, words, properties, created_at, updated_at)
         SELECT tenant.id, $1::uuid, $2::text, $3::text, $4::text[], $5::jsonb, $6::bigint,
                $7::bigint
         FROM tenant"
    )
}

/// [`insert_moment`] as the tenant `$8`, as one statement (see [`AS_TENANT`]).
pub(crate) fn insert_moment_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.moments (tenant_id, {MOMENT_COLUMNS})
         SELECT tenant.id, $1::uuid, $2::bigint, $3::bigint, $4::text, $5::text, $6::uuid[],
                $7::jsonb
         FROM tenant"
    )
}

/// Inserts one resource.
pub(crate) fn insert_resource(schema: &SchemaName) -> String {
    format!(
        "INSERT INTO {schema}.resources ({RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
}

/// One resource by id.
pub(crate) fn select_resource(schema: &SchemaName) -> String {
    format!("SELECT {RESOURCE_COLUMNS} FROM {schema}.resources WHERE id = $1")
}

/// Replaces a resource's fields, keeping `created_at`; returns the kept `created_at`.
pub(crate) fn update_resource(schema: &SchemaName) -> String {
    format!(
        "UPDATE {schema}.resources
         SET uri = $2, content = $3, metadata = $4, embedding = $5, updated_at = $6, {}
         WHERE id = $1 RETURNING created_at",
        text_terms_after_update("$3")
    )
}

/// Deletes a resource.
pub(crate) fn delete_resource(schema: &SchemaName) -> String {
    format!("DELETE FROM {schema}.resources WHERE id = $1")
}

/// Inserts an entity with its name words.
pub(crate) fn insert_entity(schema: &SchemaName) -> String {
    format!(
        "INSERT INTO {schema}.entities (id, name, kind, words, properties, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
}

/// One entity by id.
pub(crate) fn select_entity(schema: &SchemaName) -> String {
    format!("SELECT {ENTITY_COLUMNS} FROM {schema}.entities WHERE id = $1")
}

/// Whether an entity exists.
pub(crate) fn entity_exists(schema: &SchemaName) -> String {
    format!("SELECT 1 FROM {schema}.entities WHERE id = $1")
}

/// Locks the endpoints of a new edge so a concurrent delete of either waits or conflicts.
pub(crate) fn lock_entities(schema: &SchemaName) -> String {
    format!("SELECT id FROM {schema}.entities WHERE id = ANY($1) FOR KEY SHARE")
}

/// Replaces an entity's fields, keeping `created_at`; returns it.
pub(crate) fn update_entity(schema: &SchemaName) -> String {
    format!(
        "UPDATE {schema}.entities
         SET name = $2, kind = $3, words = $4, properties = $5, updated_at = $6
         WHERE id = $1 RETURNING created_at"
    )
}

/// Deletes an entity; its edges go with it (`ON DELETE CASCADE`).
pub(crate) fn delete_entity(schema: &SchemaName) -> String {
    format!("DELETE FROM {schema}.entities WHERE id = $1")
}

/// Whether entity `e`'s name words cover every word of `$2` by prefix.
const NAME_WORDS_COVER: &str = "NOT EXISTS (
               SELECT 1 FROM unnest($2::text[]) AS q(word)
               WHERE NOT EXISTS (
                   SELECT 1 FROM unnest(e.words) AS w(word) WHERE starts_with(w.word, q.word)))";

/// Entities whose name words cover every word of `$2` by prefix, optionally of kind `$1`,
/// ordered by name bytes then id, at most `$3`.
pub(crate) fn search_entities(schema: &SchemaName) -> String {
    format!(
        "SELECT {ENTITY_COLUMNS} FROM {schema}.entities e
         WHERE ($1::text IS NULL OR e.kind = $1)
           AND {NAME_WORDS_COVER}
         ORDER BY e.name COLLATE \"C\", e.id
         LIMIT $3"
    )
}

/// [`search_entities`] past the entity named `$4` with id `$5` in its order: the next page of
/// an entity search whose properties filter runs in Rust. The row comparison matches the
/// index `entities_name`, so a page reads only its own rows.
pub(crate) fn search_entities_after(schema: &SchemaName) -> String {
    format!(
        "SELECT {ENTITY_COLUMNS} FROM {schema}.entities e
         WHERE ($1::text IS NULL OR e.kind = $1)
           AND (e.name COLLATE \"C\", e.id) > ($4::text COLLATE \"C\", $5::uuid)
           AND {NAME_WORDS_COVER}
         ORDER BY e.name COLLATE \"C\", e.id
         LIMIT $3"
    )
}

/// [`insert_edge`] as the tenant `$8`, as one statement (see [`AS_TENANT`]). Without the
/// endpoint lock of [`lock_entities`]: the foreign key checks lock both endpoints themselves
/// and name a missing one.
pub(crate) fn insert_edge_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.edges (tenant_id, {EDGE_COLUMNS})
         SELECT tenant.id, $1::uuid, $2::uuid, $3::uuid, $4::text, $5::real, $6::jsonb,
                $7::bigint
         FROM tenant"
    )
}

/// Inserts an edge.
pub(crate) fn insert_edge(schema: &SchemaName) -> String {
    format!("INSERT INTO {schema}.edges ({EDGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")
}

/// One edge by id.
pub(crate) fn select_edge(schema: &SchemaName) -> String {
    format!("SELECT {EDGE_COLUMNS} FROM {schema}.edges WHERE id = $1")
}

/// The edges of entity `$1` on the chosen sides, optionally only of relation `$2`, by id.
/// A self-loop is one row, so it is listed once.
pub(crate) fn select_edges(schema: &SchemaName, out: bool, incoming: bool) -> String {
    let side = match (out, incoming) {
        (true, false) => "from_id = $1",
        (false, true) => "to_id = $1",
        _ => "(from_id = $1 OR to_id = $1)",
    };
    format!(
        "SELECT {EDGE_COLUMNS} FROM {schema}.edges
         WHERE {side} AND ($2::text IS NULL OR relation = $2)
         ORDER BY id"
    )
}

/// Deletes an edge.
pub(crate) fn delete_edge(schema: &SchemaName) -> String {
    format!("DELETE FROM {schema}.edges WHERE id = $1")
}

/// Breadth-first traversal from `$1` up to depth `$2`, following edges on the chosen sides
/// (only relations in `$3` when `with_relations`). `UNION` drops repeated `(entity, depth)`
/// pairs and the depth bound ends the recursion, so cycles terminate; each entity is returned
/// once at its fewest hops, the start excluded, ordered by depth then id.
pub(crate) fn traverse(
    schema: &SchemaName,
    out: bool,
    incoming: bool,
    with_relations: bool,
) -> String {
    let relation = if with_relations { " AND e.relation = ANY($3::text[])" } else { "" };
    let mut steps = Vec::new();
    if out {
        steps.push(format!(
            "SELECT e.to_id AS next FROM {schema}.edges e WHERE e.from_id = w.id{relation}"
        ));
    }
    if incoming {
        steps.push(format!(
            "SELECT e.from_id AS next FROM {schema}.edges e WHERE e.to_id = w.id{relation}"
        ));
    }
    let steps = steps.join(" UNION ALL ");
    let unused = if with_relations { "" } else { " AND $3::text[] IS NULL" };
    format!(
        "WITH RECURSIVE walk(id, depth) AS (
             SELECT $1::uuid, 0
             UNION
             SELECT n.next, w.depth + 1
             FROM walk w CROSS JOIN LATERAL ({steps}) n
             WHERE w.depth < $2{unused}
         )
         SELECT id, min(depth)::bigint AS depth FROM walk WHERE id <> $1
         GROUP BY id ORDER BY 2, 1"
    )
}

/// Inserts a moment.
pub(crate) fn insert_moment(schema: &SchemaName) -> String {
    format!("INSERT INTO {schema}.moments ({MOMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")
}

/// One moment by id.
pub(crate) fn select_moment(schema: &SchemaName) -> String {
    format!("SELECT {MOMENT_COLUMNS} FROM {schema}.moments WHERE id = $1")
}

/// Replaces a moment.
pub(crate) fn update_moment(schema: &SchemaName) -> String {
    format!(
        "UPDATE {schema}.moments
         SET start_at = $2, end_at = $3, kind = $4, content = $5, entities = $6, metadata = $7,
             {}
         WHERE id = $1",
        text_terms_after_update("$5")
    )
}

/// Deletes a moment.
pub(crate) fn delete_moment(schema: &SchemaName) -> String {
    format!("DELETE FROM {schema}.moments WHERE id = $1")
}

/// Moments overlapping the closed range [`$1`, `$2`], by start then id.
pub(crate) fn moments_in_range(schema: &SchemaName) -> String {
    format!(
        "SELECT {MOMENT_COLUMNS} FROM {schema}.moments
         WHERE start_at <= $2 AND end_at >= $1
         ORDER BY start_at, id"
    )
}

/// A keyset page of a table: ids after `$1` (all when null), at most `$2`, in id order.
pub(crate) fn scan(schema: &SchemaName, table: ScanTable) -> String {
    let (columns, name) = match table {
        ScanTable::Resources => (RESOURCE_COLUMNS, "resources"),
        ScanTable::Entities => (ENTITY_COLUMNS, "entities"),
        ScanTable::Edges => (EDGE_COLUMNS, "edges"),
        ScanTable::Moments => (MOMENT_COLUMNS, "moments"),
    };
    format!(
        "SELECT {columns} FROM {schema}.{name}
         WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    )
}

/// The table a [`scan`] pages through.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ScanTable {
    Resources,
    Entities,
    Edges,
    Moments,
}

#[cfg(test)]
mod tests;
