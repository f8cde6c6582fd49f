//! Full-text search on PostgreSQL: the postings of the query's terms read through each
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
use crate::error::Result;
use crate::model::{Record, TextHit, TextQuery, TextTarget};
use crate::text::{Posting, rank};

impl PgProvider {
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
