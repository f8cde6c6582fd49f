//! Full-text search over one tenant's [`State`], the plainest reading of the contract: every
//! record of the target is analysed on each query, its postings for the query terms collected
//! and ranked by [`crate::text::rank`]. It is the reference the disk providers' inverted
//! indexes are checked against; it must not change records.

use super::store::State;
use crate::model::{Record, TextHit, TextQuery, TextTarget};
use crate::text::{Posting, analyze, query_terms, rank};

/// The `k` best matches of `query` (see [`crate::Provider::text_search`]): ranked over every
/// record that has a query term, then filtered ([`TextQuery::admits`]), then cut.
pub(crate) fn text_search(state: &State, query: &TextQuery) -> Vec<TextHit> {
    let terms = query_terms(&query.text);
    let documents: Vec<(uuid::Uuid, &str)> = match query.target {
        TextTarget::Resources => {
            state.resources.values().map(|r| (r.id.as_uuid(), r.content.as_str())).collect()
        }
        TextTarget::Moments => {
            state.moments.values().map(|m| (m.id.as_uuid(), m.content.as_str())).collect()
        }
    };
    let mut postings: Vec<Vec<(uuid::Uuid, Posting)>> = vec![Vec::new(); terms.len()];
    for (id, content) in &documents {
        let analyzed = analyze(content);
        for (list, term) in postings.iter_mut().zip(&terms) {
            if let Ok(at) = analyzed.terms.binary_search_by(|(t, _)| t.as_str().cmp(term)) {
                let frequency = analyzed.terms[at].1;
                list.push((*id, Posting { frequency, length: analyzed.length }));
            }
        }
    }
    rank(&postings)
        .into_iter()
        .filter_map(|(id, score)| {
            let record = match query.target {
                TextTarget::Resources => Record::Resource(state.resources.get(&id.into())?.clone()),
                TextTarget::Moments => Record::Moment(state.moments.get(&id.into())?.clone()),
            };
            query.admits(&record).then_some(TextHit { record, score })
        })
        .take(query.k)
        .collect()
}
