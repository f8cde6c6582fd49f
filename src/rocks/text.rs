//! The full-text inverted index of a tenant database: the postings of every resource's and
//! moment's content terms in `CF_TEXT`, written and removed by the same transaction (or
//! batch) as the record, and the query that ranks them. It owns the posting values and the
//! term lookups; key layouts are in `keys`, ranking in [`crate::text`].
//!
//! Invariants kept here:
//! - a record's postings are exactly the terms of its stored content ([`crate::text::analyze`]):
//!   written with the record, replaced when its content changes, deleted with it, always in the
//!   record's own atomic write, so after a crash the index agrees with the records and a
//!   writer reads its own writes;
//! - in an encrypted tenant a term appears in keys only as its keyed token
//!   ([`TenantDb::text_term_key`]); no term is ever written in plaintext.
//!
//! A posting's value is a format-version byte and two big-endian `u32`: the term's frequency
//! in the record and the record's length in words. It is not sealed, in encrypted tenants too:
//! sealing each of a batch's tens of thousands of postings would cost more than the rest of
//! the write, and the two counts tell what the sealed record's size and the number of its
//! postings already show (how long the content is, how many terms repeat). Which records
//! share a term is visible from the keys, as it is for entity names: a keyed token hides the
//! term, not its equality.

use std::collections::HashMap;

use super::cf::{CF_MOMENTS, CF_TEXT};
use super::codec;
use super::keys;
use super::store::{Ops, View, map_rocks_error};
use super::tenants::TenantDb;
use crate::error::{Error, Result};
use crate::model::{MomentId, Record, ResourceId, TextHit, TextQuery, TextTarget};
use crate::text::{Posting, analyze, query_terms, rank};

/// The `text` key target of resources.
pub(crate) const RESOURCE: u8 = 0;
/// The `text` key target of moments.
pub(crate) const MOMENT: u8 = 1;

/// The stored value of a posting.
fn encode_posting(posting: Posting) -> [u8; 9] {
    let mut value = [0u8; 9];
    value[0] = codec::FORMAT_VERSION;
    value[1..5].copy_from_slice(&posting.frequency.to_be_bytes());
    value[5..].copy_from_slice(&posting.length.to_be_bytes());
    value
}

/// A posting from its stored value; never panics.
fn decode_posting(value: &[u8]) -> Result<Posting> {
    match value {
        [codec::FORMAT_VERSION, rest @ ..] if rest.len() == 8 => Ok(Posting {
            frequency: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            length: u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        }),
        [version, ..] if *version != codec::FORMAT_VERSION => Err(Error::FormatVersion {
            what: "text posting",
            found: *version,
            expected: codec::FORMAT_VERSION,
        }),
        _ => Err(Error::corrupt("text posting", "not 9 bytes")),
    }
}

/// The keys and values of the postings of `content` in record `id` of `target`.
pub(crate) fn postings(
    tenant: &TenantDb,
    target: u8,
    id: &[u8; 16],
    content: &str,
) -> Vec<(Vec<u8>, [u8; 9])> {
    let analyzed = analyze(content);
    analyzed
        .terms
        .iter()
        .map(|(term, frequency)| {
            let key = keys::text_posting(target, &tenant.text_term_key(term), id);
            (key, encode_posting(Posting { frequency: *frequency, length: analyzed.length }))
        })
        .collect()
}

/// Writes the postings of a new record's content in `ops`' transaction.
pub(crate) fn index(ops: &Ops<'_>, target: u8, id: &[u8; 16], content: &str) -> Result<()> {
    let cf = ops.tenant.cf(CF_TEXT)?;
    for (key, value) in postings(ops.tenant, target, id, content) {
        ops.txn.put_cf(cf, key, value).map_err(map_rocks_error)?;
    }
    Ok(())
}

/// Deletes the postings of a record's stored content in `ops`' transaction.
pub(crate) fn unindex(ops: &Ops<'_>, target: u8, id: &[u8; 16], content: &str) -> Result<()> {
    let cf = ops.tenant.cf(CF_TEXT)?;
    for term in query_terms(content) {
        let key = keys::text_posting(target, &ops.tenant.text_term_key(&term), id);
        ops.txn.delete_cf(cf, key).map_err(map_rocks_error)?;
    }
    Ok(())
}

/// Replaces the postings of `old` content by those of `new`; nothing when they are equal.
pub(crate) fn reindex(
    ops: &Ops<'_>,
    target: u8,
    id: &[u8; 16],
    old: &str,
    new: &str,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    // A put after a delete of the same key in one transaction leaves the put.
    unindex(ops, target, id, old)?;
    index(ops, target, id, new)
}

/// The `k` best matches of `query` (see [`crate::Provider::text_search`]), ranked from the
/// postings of its terms, then loaded, filtered and cut in rank order.
pub(crate) fn text_search(tenant: &TenantDb, query: &TextQuery) -> Result<Vec<TextHit>> {
    let view = View::Db(tenant);
    let target = match query.target {
        TextTarget::Resources => RESOURCE,
        TextTarget::Moments => MOMENT,
    };
    let mut postings: Vec<Vec<([u8; 16], Posting)>> = Vec::new();
    for term in query_terms(&query.text) {
        let prefix = keys::text_term_prefix(target, &tenant.text_term_key(&term));
        let mut list = Vec::new();
        view.scan_raw(CF_TEXT, &prefix, keys::prefix_end(&prefix), |key, value| {
            let id = keys::parse_text_posting(key)
                .ok_or_else(|| Error::corrupt("text key", "bad layout"))?;
            list.push((id, decode_posting(value)?));
            Ok(true)
        })?;
        postings.push(list);
    }
    let ranked = rank(&postings);
    let scores: HashMap<[u8; 16], f64> = ranked.iter().copied().collect();
    let mut hits = Vec::with_capacity(query.k.min(ranked.len()));
    // Records are loaded a page at a time (one batched lookup per page): most queries need
    // only the first page, a selective filter a few more.
    for page in ranked.chunks(query.k.max(16)) {
        let records = load(&view, query.target, page.iter().map(|(id, _)| *id))?;
        for record in records.into_iter().flatten() {
            if !query.admits(&record) {
                continue;
            }
            let id = *record.id().as_bytes();
            hits.push(TextHit { record, score: scores.get(&id).copied().unwrap_or_default() });
            if hits.len() == query.k {
                return Ok(hits);
            }
        }
    }
    Ok(hits)
}

/// The records `ids` of `target`, in order; `None` for one deleted since its postings were
/// read.
fn load(
    view: &View<'_>,
    target: TextTarget,
    ids: impl Iterator<Item = [u8; 16]>,
) -> Result<Vec<Option<Record>>> {
    match target {
        TextTarget::Resources => {
            let ids: Vec<ResourceId> = ids.map(ResourceId::from_bytes).collect();
            Ok(view.resources(&ids)?.into_iter().map(|r| r.map(Record::Resource)).collect())
        }
        TextTarget::Moments => ids
            .map(|id| match view.get(CF_MOMENTS, &id)? {
                Some(bytes) => Ok(Some(Record::Moment(codec::decode_moment(
                    MomentId::from_bytes(id),
                    &bytes,
                )?))),
                None => Ok(None),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_values_round_trip_and_bad_bytes_are_errors() {
        let posting = Posting { frequency: 3, length: 70_000 };
        assert_eq!(decode_posting(&encode_posting(posting)).ok(), Some(posting));
        assert!(decode_posting(&[]).is_err());
        assert!(decode_posting(&[codec::FORMAT_VERSION, 1, 2]).is_err());
        assert!(matches!(
            decode_posting(&[99, 0, 0, 0, 1, 0, 0, 0, 1]),
            Err(Error::FormatVersion { .. })
        ));
    }
}
