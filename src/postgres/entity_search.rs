//! Entity search on PostgreSQL: by name words in one statement, or, with a properties filter,
//! in keyed pages in name order with the filter checked here. Owns the paging; the SQL is in
//! `sql`, the row decoding in `store`.

use uuid::Uuid;

use super::{PgProvider, PgTenant, conn, sql, store};
use crate::error::Result;
use crate::model::{Entity, EntityQuery, words};

/// The settings of an entity search ([`sql::SET_ENTITY_SEARCH`]).
fn name_order() -> conn::Settings {
    (sql::SET_ENTITY_SEARCH, Vec::new())
}

impl PgProvider {
    /// The entities matching `query` (see [`crate::Provider::search_entities`]).
    pub(super) async fn entity_search(
        &self,
        tenant: &PgTenant,
        query: &EntityQuery,
    ) -> Result<Vec<Entity>> {
        let mut conn = self.app.get().await?;
        let schema = &tenant.0.schema;
        let (kind, words) = (&query.kind, words(&query.text));
        let Some(filter) = &query.properties else {
            // The database applies the whole query: one statement, at most `limit` rows.
            conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str(), Some(name_order()));
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let result = async {
                let rows =
                    conn.query(&sql::search_entities(schema), &[kind, &words, &limit]).await?;
                rows.iter().map(store::entity_from_row).collect()
            }
            .await;
            return conn.finish(result).await;
        };
        // The properties filter runs here: pages in name order, each read through the name
        // index up to its own limit, until `limit` entities match, the matches run out, or
        // `filter_scan_limit` entities were read. One snapshot for all pages.
        conn.begin_lazy(sql::BEGIN_SNAPSHOT, tenant.0.id.as_str(), Some(name_order()));
        let result = async {
            let mut found = Vec::with_capacity(query.limit);
            let mut page = query.limit.saturating_mul(4).clamp(64, 4096);
            let mut read = 0;
            let mut last: Option<(String, Uuid)> = None;
            loop {
                let size = i64::try_from(page.min(self.filter_scan_limit - read)).unwrap_or(1);
                let rows = match &last {
                    None => {
                        conn.query(&sql::search_entities(schema), &[kind, &words, &size]).await?
                    }
                    Some((name, id)) => {
                        let statement = sql::search_entities_after(schema);
                        conn.query(&statement, &[kind, &words, &size, name, id]).await?
                    }
                };
                read += rows.len();
                for row in &rows {
                    let entity = store::entity_from_row(row)?;
                    last = Some((entity.name.clone(), entity.id.as_uuid()));
                    if filter.matches(&entity.properties) {
                        found.push(entity);
                        if found.len() == query.limit {
                            return Ok(found);
                        }
                    }
                }
                if (rows.len() as i64) < size || read >= self.filter_scan_limit {
                    return Ok(found);
                }
                page = (page * 2).min(4096);
            }
        }
        .await;
        conn.finish(result).await
    }
}
