//! Full-text search on PostgreSQL: the rows written since the last search analysed first
//! (the fold, see `sql::text`), then the postings of the query's terms read through each
//! tenant's GIN index, ranked by the same BM25 as every provider ([`crate::text::rank`]), then
//! the winners loaded and filtered in rank order, all from one snapshot. Owns the paging; the
//! SQL is in `sql::text`, the row decoding in `store`.
//!
//! How it differs from the other providers: PostgreSQL analyses the text (see `sql::text`) with
//! its own word parser, so a document splits a little differently where the two disagree
//! (`can't` is `can` and `t` here; an e-mail address or a URL is one token here and several
//! words under Unicode's rules; a hyphenated word counts only its parts, as under Unicode's).
//! Only the first 100,000 characters of a content are analysed, and a `tsvector` keeps word
//! positions up to 16,383, so in longer documents later occurrences are not counted. For
//! ordinary prose the terms, their frequencies, and so the scores, are the same.

use std::collections::HashMap;

use uuid::Uuid;

use super::{PgProvider, PgTenant, sql, store};
use crate::error::{Error, Result};
use crate::model::{Record, TextHit, TextQuery, TextTarget};
use crate::text::{Posting, rank};

/// How many pending rows one fold transaction analyses.
const FOLD_CHUNK: i64 = 2000;

impl PgProvider {
    /// Analyses every pending row of `table` ([`sql::fold_text`]), [`FOLD_CHUNK`] per
    /// transaction; returns how many.
    pub(super) async fn fold_text(&self, tenant: &PgTenant, table: sql::TextTable) -> Result<u64> {
        let statement = sql::fold_text(&tenant.0.schema, table);
        let mut folded = 0;
        loop {
            let mut conn = self.app.get().await?;
            conn.one_shot(sql::BEGIN_READ_COMMITTED, tenant.0.id.as_str(), None);
            let result = async {
                let row = conn.query_opt(&statement, &[&FOLD_CHUNK]).await?;
                let row = row.ok_or_else(|| Error::corrupt("text fold", "no row"))?;
                row.try_get::<_, i64>(0).map_err(|e| Error::corrupt("text fold", e))
            }
            .await;
            let moved = conn.finish(result).await?;
            folded += u64::try_from(moved).unwrap_or(0);
            if moved < FOLD_CHUNK {
                return Ok(folded);
            }
        }
    }

    /// The `k` best matches of `query` (see [`crate::Provider::text_search`]).
    pub(super) async fn text_search_rows(
        &self,
        tenant: &PgTenant,
        query: &TextQuery,
    ) -> Result<Vec<TextHit>> {
        let table = match query.target {
            TextTarget::Resources => sql::TextTable::Resources,
            TextTarget::Moments => sql::TextTable::Moments,
        };
        // Rows the fold leaves pending (it lost a race, or failed) are analysed by the query.
        let _ = self.fold_text(tenant, table).await;
        let schema = &tenant.0.schema;
        let mut conn = self.app.get().await?;
        conn.begin_lazy(sql::BEGIN_SNAPSHOT, tenant.0.id.as_str(), None);
        let result = async {
            let rows = conn.query(&sql::text_postings(schema, table), &[&query.text]).await?;
            let mut lists: HashMap<String, Vec<(Uuid, Posting)>> = HashMap::new();
            for row in &rows {
                let id: Uuid = row.try_get(0).map_err(store::corrupt("text posting"))?;
                let lexeme: String = row.try_get(1).map_err(store::corrupt("text posting"))?;
                let frequency: i32 = row.try_get(2).map_err(store::corrupt("text posting"))?;
                let length: i32 = row.try_get(3).map_err(store::corrupt("text posting"))?;
                let posting = Posting {
                    frequency: u32::try_from(frequency).unwrap_or(1).max(1),
                    length: u32::try_from(length).unwrap_or(0),
                };
                lists.entry(lexeme).or_default().push((id, posting));
            }
            let postings: Vec<Vec<(Uuid, Posting)>> = lists.into_values().collect();
            let ranked = rank(&postings);
            let mut hits = Vec::with_capacity(query.k.min(ranked.len()));
            for page in ranked.chunks(query.k.max(16)) {
                let ids: Vec<Uuid> = page.iter().map(|(id, _)| *id).collect();
                let rows = conn.query(&sql::select_text_records(schema, table), &[&ids]).await?;
                let mut found: HashMap<Uuid, Record> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    let record = match table {
                        sql::TextTable::Resources => {
                            Record::Resource(store::resource_from_row(row)?)
                        }
                        sql::TextTable::Moments => Record::Moment(store::moment_from_row(row)?),
                    };
                    found.insert(record.id(), record);
                }
                for (id, score) in page {
                    let Some(record) = found.remove(id) else { continue };
                    if !query.admits(&record) {
                        continue;
                    }
                    hits.push(TextHit { record, score: *score });
                    if hits.len() == query.k {
                        return Ok(hits);
                    }
                }
            }
            Ok(hits)
        }
        .await;
        conn.finish(result).await
    }
}
