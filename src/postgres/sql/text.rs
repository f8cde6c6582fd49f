//! The SQL of full-text search: the text search configuration, each tenant's `tsvector`
//! columns and GIN indexes, the fold that fills them, and the postings query. Owns only text
//! search statements.
//!
//! Documents are analysed by PostgreSQL itself: `percolate.english_words` is PostgreSQL's
//! `english` configuration with the Snowball English stemmer (the algorithm `crate::text`
//! uses) and no stop words, as `crate::text` has none. Queries are analysed by the same
//! configuration, so a query and a document always split alike.
//!
//! Writes do not analyse: a row is inserted with `text_terms` NULL (*pending*), and an update
//! that changes `content` sets it back to NULL. [`fold_text`], run before each text search,
//! fills the pending rows' `text_terms` (the GIN index then holds them); the postings query
//! reads indexed rows through the GIN index and analyses whatever is still pending (a fold
//! that lost a race) itself, found through a partial index of pending ids. So a batch of small
//! resources writes no `tsvector` and no GIN entry, and a row is searchable by text as soon as
//! its write commits.

use super::{MOMENT_COLUMNS, RESOURCE_COLUMNS};
use crate::postgres::tenant::SchemaName;

/// The text search configuration every tenant's generated columns name, created with the
/// registry (once; a provider that finds it leaves it).
pub(crate) const CREATE_TEXT_CONFIG: &str = "
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace
                   WHERE n.nspname = 'percolate' AND d.dictname = 'english_stem_all') THEN
        CREATE TEXT SEARCH DICTIONARY percolate.english_stem_all
            (TEMPLATE = pg_catalog.snowball, Language = english);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
                   WHERE n.nspname = 'percolate' AND c.cfgname = 'english_words') THEN
        CREATE TEXT SEARCH CONFIGURATION percolate.english_words (COPY = pg_catalog.english);
        ALTER TEXT SEARCH CONFIGURATION percolate.english_words
            ALTER MAPPING FOR asciiword, hword_asciipart, word, hword_part, numword, hword_numpart
            WITH percolate.english_stem_all;
        ALTER TEXT SEARCH CONFIGURATION percolate.english_words
            DROP MAPPING IF EXISTS FOR asciihword, hword, numhword;
    END IF;
END $$;";

/// How much of a content is analysed, in characters: a `tsvector` holds at most 1 MB, which
/// this many characters cannot exceed.
const ANALYSED_CHARACTERS: u32 = 100_000;

/// The configuration as a constant `regconfig` (a generated column needs an immutable
/// expression).
const CONFIG: &str = "'percolate.english_words'::regconfig";

/// How `content` is analysed, in a statement over one of the tables.
fn analysed(content: &str) -> String {
    format!("to_tsvector({CONFIG}, left({content}, {ANALYSED_CHARACTERS}))")
}

/// The `text_terms` column, its GIN index and the partial index of pending rows on a
/// tenant's resources and moments. The GIN index is partial too: a full one holds an entry
/// for each pending row's NULL, which every insert would write. Part of
/// [`super::create_schema`], and run on its own (as the owner role) to give a schema made
/// before full text its index: idempotent, so providers opening it at once do not fail, and
/// cheap (a nullable column rewrites nothing; every row starts pending and the first text
/// search analyses it).
pub(crate) fn create_text_columns(schema: &SchemaName) -> String {
    let s = schema;
    let mut sql = String::new();
    for table in ["resources", "moments"] {
        sql.push_str(&format!(
            "ALTER TABLE {s}.{table} ADD COLUMN IF NOT EXISTS text_terms tsvector;
            CREATE INDEX IF NOT EXISTS {table}_text ON {s}.{table} USING gin (text_terms)
                WHERE text_terms IS NOT NULL;
            CREATE INDEX IF NOT EXISTS {table}_text_pending ON {s}.{table} (id)
                WHERE text_terms IS NULL;
            "
        ));
    }
    sql
}

/// `text_terms` for an update that sets `content` to `$param`: kept when the content is the
/// same, pending (NULL) when it changes.
pub(crate) fn text_terms_after_update(param: &str) -> String {
    format!("text_terms = CASE WHEN content = {param} THEN text_terms END")
}

/// Analyses up to `$1` pending rows of `table` (oldest first) and returns how many. Rows a
/// concurrent transaction holds are skipped (`SKIP LOCKED`), and each row is analysed from the
/// version it locks, so a content change racing the fold either waits for it and sets the
/// row pending again, or commits first and is what the fold analyses.
pub(crate) fn fold_text(schema: &SchemaName, table: TextTable) -> String {
    let t = table.name();
    format!(
        "WITH folded AS (
             UPDATE {schema}.{t} SET text_terms = {}
             WHERE id IN (SELECT id FROM {schema}.{t} WHERE text_terms IS NULL
                          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING 1)
         SELECT count(*) FROM folded",
        analysed("content")
    )
}

/// Which table a text search reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextTable {
    /// `resources`.
    Resources,
    /// `moments`.
    Moments,
}

impl TextTable {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TextTable::Resources => "resources",
            TextTable::Moments => "moments",
        }
    }
}

/// The postings of the terms of query text `$1`: one row per matching record and query term,
/// `(id, frequency, length)` with the term's number of positions and the record's number of
/// positions over all its terms. The GIN index finds the indexed records with any term (the
/// query's terms joined by `|`), and pending records are analysed here; the lexeme filter
/// keeps only the query's terms of each.
pub(crate) fn text_postings(schema: &SchemaName, table: TextTable) -> String {
    let table = table.name();
    format!(
        "WITH q AS (
            SELECT replace(plainto_tsquery({CONFIG}, $1)::text, ' & ', ' | ')::tsquery AS query,
                   tsvector_to_array(to_tsvector({CONFIG}, $1)) AS terms
        ),
        docs AS (
            SELECT d.id, d.text_terms AS terms FROM q, {schema}.{table} d
            WHERE d.text_terms @@ q.query
            UNION ALL
            SELECT d.id, {} FROM {schema}.{table} d WHERE d.text_terms IS NULL
        )
        SELECT d.id, t.lexeme, coalesce(cardinality(t.positions), 1)::int4,
               (SELECT coalesce(sum(coalesce(cardinality(u.positions), 1)), 0)
                FROM unnest(d.terms) u)::int4
        FROM q, docs d CROSS JOIN LATERAL unnest(d.terms) t
        WHERE d.terms @@ q.query AND t.lexeme = ANY(q.terms)",
        analysed("d.content")
    )
}

/// The records of `table` whose ids are in `$1`, in no particular order.
pub(crate) fn select_text_records(schema: &SchemaName, table: TextTable) -> String {
    let columns = match table {
        TextTable::Resources => RESOURCE_COLUMNS,
        TextTable::Moments => MOMENT_COLUMNS,
    };
    format!("SELECT {columns} FROM {schema}.{} WHERE id = ANY($1)", table.name())
}
