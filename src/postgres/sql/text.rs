//! The SQL of full-text search: the text search configuration, each tenant's `tsvector`
//! columns and GIN indexes, and the postings query. Owns only text search statements.
//!
//! Documents are analysed by PostgreSQL itself, in a generated column, so every write path
//! (single, batch, tail) indexes content without knowing it: `percolate.english_words` is
//! PostgreSQL's `english` configuration with the Snowball English stemmer (the algorithm
//! `crate::text` uses) and no stop words, as `crate::text` has none. Queries are analysed by
//! the same configuration, so a query and a document always split alike.

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

/// The generated `text_terms` column and its GIN index on a tenant's resources and moments;
/// part of [`super::create_schema`], and run on its own (as the owner role) to give a schema
/// made before full text its index: idempotent, so providers opening it at once do not fail.
/// On an existing table the generated column rewrites it under an exclusive lock, once.
pub(crate) fn create_text_columns(schema: &SchemaName) -> String {
    let s = schema;
    let mut sql = String::new();
    for table in ["resources", "moments"] {
        sql.push_str(&format!(
            "ALTER TABLE {s}.{table} ADD COLUMN IF NOT EXISTS text_terms tsvector GENERATED ALWAYS AS
                (to_tsvector({CONFIG}, left(content, {ANALYSED_CHARACTERS}))) STORED;
            CREATE INDEX IF NOT EXISTS {table}_text ON {s}.{table} USING gin (text_terms);
            "
        ));
    }
    sql
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
    fn name(self) -> &'static str {
        match self {
            TextTable::Resources => "resources",
            TextTable::Moments => "moments",
        }
    }
}

/// The postings of the terms of query text `$1`: one row per matching record and query term,
/// `(id, frequency, length)` with the term's number of positions and the record's number of
/// positions over all its terms. The GIN index finds the records with any term (the query's
/// terms joined by `|`); the lexeme filter keeps only the query's terms of each.
pub(crate) fn text_postings(schema: &SchemaName, table: TextTable) -> String {
    let table = table.name();
    format!(
        "WITH q AS (
            SELECT replace(plainto_tsquery({CONFIG}, $1)::text, ' & ', ' | ')::tsquery AS query,
                   tsvector_to_array(to_tsvector({CONFIG}, $1)) AS terms
        )
        SELECT d.id, t.lexeme, coalesce(cardinality(t.positions), 1)::int4,
               (SELECT coalesce(sum(coalesce(cardinality(u.positions), 1)), 0)
                FROM unnest(d.text_terms) u)::int4
        FROM q, {schema}.{table} d CROSS JOIN LATERAL unnest(d.text_terms) t
        WHERE d.text_terms @@ q.query AND t.lexeme = ANY(q.terms)"
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
