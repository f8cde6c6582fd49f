//! The full-text inverted index of a tenant database in `CF_TEXT`: the postings of every
//! indexed resource's and moment's content terms, the list of records written since and not
//! yet indexed (*pending*), and the query that ranks both. It owns the posting values, the
//! pending list and the fold from one to the other; key layouts are in `keys`, ranking in
//! [`crate::text`]. It must not touch records' own column families except to read content.
//!
//! # Deferred indexing
//! A write does not analyse content: in its own atomic write it adds its records' ids to the
//! pending list, as one entry (one key) per write of up to [`ENTRY_IDS`] records, so a batch
//! of a thousand small resources writes one extra key, not one per term of each. The next
//! text search indexes the pending entries first ([`fold`], a few hundred records per
//! transaction), so a search reads postings for everything written before it; when it cannot
//! (a reader's handle, a fold losing to concurrent writes, another search folding), it
//! analyses the pending records' content itself. So a record is found by the first search
//! after its write returns, and the indexing is paid once, by a search, not by every write.
//!
//! Invariants kept here:
//! - a record's postings are those of its stored content, or it is listed in a pending entry
//!   (and may have none, or those of its current content). A write that changes content
//!   deletes the postings of the old content and lists the record again; a delete deletes
//!   them; a fold reads each listed record's content (for update), writes its postings and
//!   deletes the entry. Each is one atomic write, so after a crash the index agrees with the
//!   records; a fold racing a write of the same record reads the record the write changes,
//!   so optimistic validation fails one of them. A search scores listed records from their
//!   content and skips their postings, so it never counts a record twice;
//! - in an encrypted tenant a term appears in keys only as its keyed token
//!   ([`TenantDb::text_term_key`]); no term is ever written in plaintext, and a pending entry
//!   holds only ids.
//!
//! A posting's value is a format-version byte and two big-endian `u32`: the term's frequency
//! in the record and the record's length in words. It is not sealed, in encrypted tenants too:
//! sealing each of a fold's tens of thousands of postings would cost more than the rest of
//! the fold, and the two counts tell what the sealed record's size and the number of its
//! postings already show (how long the content is, how many terms repeat). Which records
//! share a term is visible from the keys, as it is for entity names: a keyed token hides the
//! term, not its equality.

use std::collections::{HashMap, HashSet};

use super::cf::{CF_META, CF_MOMENTS, CF_RESOURCES, CF_TEXT};
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

/// How many pending records one fold transaction indexes: enough to amortise a commit, few
/// enough that a transaction's tracked keys stay small and a lost validation redoes little.
const FOLD_CHUNK: usize = 256;

/// The most record ids in one pending entry; a larger write lists its records in several.
pub(crate) const ENTRY_IDS: usize = 1024;

/// The keys and values of the postings of `content` in record `id` of `target`.
fn postings(
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

/// The pending entries that list `ids` of `target`: each a fresh key (so entries written at
/// once never collide) and its value, the ids one after another.
pub(crate) fn pending_entries<'i>(
    target: u8,
    ids: impl IntoIterator<Item = &'i [u8; 16]>,
) -> Vec<([u8; 18], Vec<u8>)> {
    let mut entries: Vec<([u8; 18], Vec<u8>)> = Vec::new();
    for id in ids {
        match entries.last_mut() {
            Some((_, value)) if value.len() < ENTRY_IDS * 16 => value.extend_from_slice(id),
            _ => {
                let entry = *uuid::Uuid::now_v7().as_bytes();
                entries.push((keys::text_pending(target, &entry), id.to_vec()));
            }
        }
    }
    entries
}

/// Lists new records `ids` of `target` as pending in `ops`' transaction.
pub(crate) fn added<'i>(
    ops: &Ops<'_>,
    target: u8,
    ids: impl IntoIterator<Item = &'i [u8; 16]>,
) -> Result<()> {
    let cf = ops.tenant.cf(CF_TEXT)?;
    for (key, value) in pending_entries(target, ids) {
        ops.txn.put_cf(cf, key, value).map_err(map_rocks_error)?;
    }
    Ok(())
}

/// A record's content changed from `old` to `new`: the postings of `old` go (if it has them)
/// and the record is listed pending; nothing when the content is the same.
pub(crate) fn changed(
    ops: &Ops<'_>,
    target: u8,
    id: &[u8; 16],
    old: &str,
    new: &str,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    unindex(ops, target, id, old)?;
    added(ops, target, [id])
}

/// A record with content `old` is deleted: its postings go with it. A pending entry that
/// lists it stays; the fold finds the record gone and skips it.
pub(crate) fn removed(ops: &Ops<'_>, target: u8, id: &[u8; 16], old: &str) -> Result<()> {
    unindex(ops, target, id, old)
}

/// Writes the postings of `content` in `ops`' transaction.
fn index(ops: &Ops<'_>, target: u8, id: &[u8; 16], content: &str) -> Result<()> {
    let cf = ops.tenant.cf(CF_TEXT)?;
    for (key, value) in postings(ops.tenant, target, id, content) {
        ops.txn.put_cf(cf, key, value).map_err(map_rocks_error)?;
    }
    Ok(())
}

/// Deletes the postings of an indexed record's stored content in `ops`' transaction.
fn unindex(ops: &Ops<'_>, target: u8, id: &[u8; 16], content: &str) -> Result<()> {
    let cf = ops.tenant.cf(CF_TEXT)?;
    for term in query_terms(content) {
        let key = keys::text_posting(target, &ops.tenant.text_term_key(&term), id);
        ops.txn.delete_cf(cf, key).map_err(map_rocks_error)?;
    }
    Ok(())
}

/// Indexes every pending record of the tenant, [`FOLD_CHUNK`] per transaction, and returns how
/// many it indexed; nothing in a reader, which cannot write. Waits for a fold another thread
/// runs, so on return nothing written before the call is pending unless this failed.
///
/// # Errors
/// [`Error::Conflict`] when writes to the same records kept winning; backend errors.
pub(crate) fn fold(tenant: &TenantDb) -> Result<usize> {
    if tenant.db.is_reader() {
        return Ok(0);
    }
    let _one = tenant.text_fold.lock();
    fold_locked(tenant)
}

/// [`fold`], by the holder of the tenant's fold lock.
fn fold_locked(tenant: &TenantDb) -> Result<usize> {
    let mut indexed = 0;
    loop {
        let mut listed: Vec<(u8, Entry)> = Vec::new();
        let mut ids = 0;
        for target in [RESOURCE, MOMENT] {
            for entry in entries(&View::Db(tenant), target, FOLD_CHUNK.saturating_sub(ids))? {
                ids += entry.ids.len();
                listed.push((target, entry));
            }
        }
        if listed.is_empty() {
            return Ok(indexed);
        }
        tenant.write(|ops| {
            let cf = ops.tenant.cf(CF_TEXT)?;
            for (target, entry) in &listed {
                for id in &entry.ids {
                    if let Some(content) = content_for_update(ops, *target, id)? {
                        index(ops, *target, id, &content)?;
                    }
                }
                ops.txn.delete_cf(cf, entry.key).map_err(map_rocks_error)?;
            }
            Ok(())
        })?;
        indexed += ids;
    }
}

/// The stored content of record `id` of `target`, read for update in `ops`' transaction (one
/// read, so a write of the record racing the fold fails one of the two); `None` if it does not
/// exist.
fn content_for_update(ops: &Ops<'_>, target: u8, id: &[u8; 16]) -> Result<Option<String>> {
    let family = if target == MOMENT { CF_MOMENTS } else { CF_RESOURCES };
    let Some(raw) = ops.view().get_for_update(family, id)? else { return Ok(None) };
    let bytes = ops.tenant.open_value(family, id, raw)?;
    Ok(Some(if target == MOMENT {
        codec::decode_moment(MomentId::from_bytes(*id), &bytes)?.content
    } else {
        codec::decode_resource(ResourceId::from_bytes(*id), &bytes)?.content
    }))
}

/// The indexed text of a resource or moment.
fn text_of(record: &Record) -> Option<&str> {
    match record {
        Record::Resource(resource) => Some(&resource.content),
        Record::Moment(moment) => Some(&moment.content),
        Record::Entity(_) | Record::Edge(_) => None,
    }
}

/// One pending entry: its key and the record ids it lists.
struct Entry {
    key: [u8; 18],
    ids: Vec<[u8; 16]>,
}

/// The pending entries of `target`, oldest first, until they list at least `wanted` records
/// (every one for `usize::MAX`; none for 0).
fn entries(view: &View<'_>, target: u8, wanted: usize) -> Result<Vec<Entry>> {
    let mut found = Vec::new();
    let mut listed = 0;
    if wanted == 0 {
        return Ok(found);
    }
    let prefix = [keys::TEXT_PENDING, target];
    view.scan_raw(CF_TEXT, &prefix, keys::prefix_end(&prefix), |key, value| {
        let bad = || Error::corrupt("pending text entry", "bad layout");
        let entry = keys::parse_text_pending(target, key).ok_or_else(bad)?;
        if value.is_empty() || value.len() % 16 != 0 {
            return Err(bad());
        }
        let ids: Vec<[u8; 16]> =
            value.chunks_exact(16).map(|id| id.try_into().unwrap_or([0; 16])).collect();
        listed += ids.len();
        found.push(Entry { key: keys::text_pending(target, &entry), ids });
        Ok(listed < wanted)
    })?;
    Ok(found)
}

/// Gives a tenant made before full text its index: marks every resource and moment pending,
/// with [`keys::META_TEXT_INDEX`], in one synced atomic batch (so a crash leaves all of it or
/// none, and the next open starts again); the first search indexes them. Nothing when the
/// marker is there. Called when a writer opens the tenant, before anyone else holds it.
pub(crate) fn backfill(tenant: &TenantDb) -> Result<()> {
    let db = tenant.db.writer("index the text of a tenant")?;
    let meta = tenant.cf(CF_META)?;
    if db.get_pinned_cf(meta, keys::META_TEXT_INDEX).map_err(map_rocks_error)?.is_some() {
        return Ok(());
    }
    let text = tenant.cf(CF_TEXT)?;
    let mut batch = rocksdb::WriteBatchWithTransaction::<true>::default();
    for (family, target) in [(CF_RESOURCES, RESOURCE), (CF_MOMENTS, MOMENT)] {
        let mut ids: Vec<[u8; 16]> = Vec::new();
        View::Db(tenant).scan_raw(family, &[], None, |key, _| {
            ids.push(key.try_into().map_err(|_| Error::corrupt("record key", "not 16 bytes"))?);
            Ok(true)
        })?;
        for (key, value) in pending_entries(target, &ids) {
            batch.put_cf(text, key, value);
        }
    }
    batch.put_cf(meta, keys::META_TEXT_INDEX, []);
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync).map_err(map_rocks_error)
}

/// The `k` best matches of `query` (see [`crate::Provider::text_search`]). Folds pending
/// records first unless another search is folding (then those are scored from their
/// content); a fold that fails leaves them pending and is not an error of the search. The
/// search itself reads one snapshot (a writer's transaction; a reader's handle moves only
/// when it catches up).
pub(crate) fn text_search(tenant: &TenantDb, query: &TextQuery) -> Result<Vec<TextHit>> {
    if tenant.db.cf_handle(CF_TEXT).is_none() {
        // A reader opened a tenant its writer has not opened since full text existed.
        return Err(Error::ReadOnly {
            what: "search the text of a tenant whose writer has not opened it since it gained \
                   full text (open it once with a writer, then reopen the reader)",
        });
    }
    if !tenant.db.is_reader()
        && let Some(_one) = tenant.text_fold.try_lock()
    {
        let _ = fold_locked(tenant);
    }
    match tenant.transaction() {
        Ok(txn) => search_at(&View::Txn(tenant, &txn), query),
        Err(Error::ReadOnly { .. }) => search_at(&View::Db(tenant), query),
        Err(e) => Err(e),
    }
}

/// [`text_search`] once pending records are folded, reading through `view`: postings of the
/// query's terms from the index and from pending records' content, ranked together; then the
/// winners loaded, filtered and cut in rank order.
fn search_at(view: &View<'_>, query: &TextQuery) -> Result<Vec<TextHit>> {
    let tenant = view.tenant();
    let (target, kind) = match query.target {
        TextTarget::Resources => (RESOURCE, TextTarget::Resources),
        TextTarget::Moments => (MOMENT, TextTarget::Moments),
    };
    let terms = query_terms(&query.text);
    let mut postings: Vec<Vec<([u8; 16], Posting)>> = vec![Vec::new(); terms.len()];
    // Listed records are scored from their content and their postings skipped: a listed
    // record may have postings too (of its current content, from a fold of an earlier entry
    // or one that committed while a reader's view moved), and this counts it once either way.
    let mut pending: Vec<[u8; 16]> =
        entries(view, target, usize::MAX)?.into_iter().flat_map(|entry| entry.ids).collect();
    pending.sort_unstable();
    pending.dedup();
    let skipped: HashSet<[u8; 16]> = pending.iter().copied().collect();
    for page in pending.chunks(FOLD_CHUNK) {
        for record in load(view, kind, page.iter().copied())?.into_iter().flatten() {
            let Some(content) = text_of(&record) else { continue };
            let analyzed = analyze(content);
            for (term, list) in terms.iter().zip(&mut postings) {
                if let Ok(at) = analyzed.terms.binary_search_by(|(t, _)| t.as_str().cmp(term)) {
                    let frequency = analyzed.terms[at].1;
                    let posting = Posting { frequency, length: analyzed.length };
                    list.push((*record.id().as_bytes(), posting));
                }
            }
        }
    }
    for (term, list) in terms.iter().zip(&mut postings) {
        let prefix = keys::text_term_prefix(target, &tenant.text_term_key(term));
        view.scan_raw(CF_TEXT, &prefix, keys::prefix_end(&prefix), |key, value| {
            let id = keys::parse_text_posting(key)
                .ok_or_else(|| Error::corrupt("text key", "bad layout"))?;
            if !skipped.contains(&id) {
                list.push((id, decode_posting(value)?));
            }
            Ok(true)
        })?;
    }
    let ranked = rank(&postings);
    let scores: HashMap<[u8; 16], f64> = ranked.iter().copied().collect();
    let mut hits = Vec::with_capacity(query.k.min(ranked.len()));
    // Records are loaded a page at a time (one batched lookup per page): most queries need
    // only the first page, a selective filter a few more.
    for page in ranked.chunks(query.k.max(16)) {
        let records = load(view, query.target, page.iter().map(|(id, _)| *id))?;
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
