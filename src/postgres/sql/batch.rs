//! The statements that insert a batch of entities, edges or moments in one round trip: each
//! binds one array per column and `unnest`s them, as the tenant `$8` (see [`super::AS_TENANT`]),
//! so a batch is one statement in its own implicit transaction: stored whole or not at all.
//!
//! `unnest` flattens an array of arrays, so a column that holds an array per row travels as
//! one text per row and is split on the server: an entity's name words (alphanumeric, so a
//! space never occurs in one) joined by spaces, a moment's entity ids joined by commas.

use super::{AS_TENANT, EDGE_COLUMNS, MOMENT_COLUMNS};
use crate::postgres::tenant::SchemaName;

/// Inserts entities: `$1` ids, `$2` names, `$3` kinds, `$4` name words joined by spaces, `$5`
/// properties, `$6` `created_at`, `$7` `updated_at`.
pub(crate) fn insert_entities_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.entities
             (tenant_id, id, name, kind, words, properties, created_at, updated_at)
         SELECT tenant.id, e.id, e.name, e.kind, string_to_array(e.words, ' '), e.properties,
                e.created_at, e.updated_at
         FROM tenant CROSS JOIN
             unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[],
                    $7::bigint[]) AS e(id, name, kind, words, properties, created_at, updated_at)"
    )
}

/// Inserts edges, in the columns' order. The foreign key checks lock every endpoint (`FOR KEY
/// SHARE`: a concurrent delete of one waits for the insert, or the insert sees it gone) and
/// name a missing one.
pub(crate) fn insert_edges_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.edges (tenant_id, {EDGE_COLUMNS})
         SELECT tenant.id, e.* FROM tenant CROSS JOIN
             unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::real[], $6::jsonb[],
                    $7::bigint[]) AS e"
    )
}

/// Inserts moments, in the columns' order, with `$6` each moment's entity ids joined by commas.
pub(crate) fn insert_moments_as_tenant(schema: &SchemaName) -> String {
    format!(
        "{AS_TENANT} INSERT INTO {schema}.moments (tenant_id, {MOMENT_COLUMNS})
         SELECT tenant.id, m.id, m.start_at, m.end_at, m.kind, m.content,
                string_to_array(m.entities, ',')::uuid[], m.metadata
         FROM tenant CROSS JOIN
             unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                    $7::jsonb[]) AS m(id, start_at, end_at, kind, content, entities, metadata)"
    )
}
