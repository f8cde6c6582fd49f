//! Every RocksDB key layout, built and parsed here and nowhere else.
//!
//! | column family  | key                                                              | value             |
//! |----------------|------------------------------------------------------------------|-------------------|
//! | `meta`         | ASCII name (`format_version`, `config`, `moment_span`)           | see `codec`       |
//! | `resources`    | resource id (16)                                                 | resource          |
//! | `embeddings`   | resource id (16)                                                 | embedding         |
//! | `entities`     | entity id (16)                                                   | entity            |
//! | `entity_names` | word (UTF-8, no NUL), `0x00`, entity id (16)                     | empty             |
//! | `edges`        | edge id (16)                                                     | edge              |
//! | `adjacency`    | entity (16), direction (1), relation length (u16), relation, other entity (16), edge id (16) | empty |
//! | `moments`      | moment id (16)                                                   | moment            |
//! | `moment_time`  | start (8), moment id (16)                                        | end (8)           |
//! | `text`         | target (1), term (UTF-8, no NUL), `0x00`, record id (16)         | frequency (4), length (4) |
//! | `text`         | `0x02`, target (1), entry id (16): records not yet indexed        | record ids (16 each) |
//!
//! Integers are big-endian; timestamps are `i64` with the sign bit flipped so byte order is
//! numeric order. Ids are UUIDv7, so byte order is creation order. The adjacency key puts the
//! entity and direction first (one prefix scan per node and direction), then the length-prefixed
//! relation (one seek per relation filter). Name words are NUL-terminated rather than
//! length-prefixed: that keeps every word that starts with a query word under one key prefix,
//! which is what prefix search needs; words never contain NUL (they are alphanumeric).
//!
//! A `text` key's target is 0 for a resource, 1 for a moment; its term is a full term (see
//! `crate::text`), NUL-terminated so one term's postings share one prefix and no other term's.
//! Keys starting with [`TEXT_PENDING`] (no target has that value) are pending entries: each
//! lists records whose content is not indexed yet (see `rocks::text`); entry ids are UUIDv7,
//! so entries sort oldest first.
//!
//! In an encrypted tenant (see `crypto`) the user text in keys is replaced by 16-byte keyed
//! tokens, in the same layouts: the adjacency key's relation is the relation's token (length
//! 16), an entity-name key is a name-prefix token, `0x00`, entity id, and a text key's term is
//! the term's token (fixed length, so the prefix stays exact). Values are sealed, except the
//! text postings' two counts (see `rocks::text`).

use crate::model::{EdgeId, EntityId, Timestamp};

/// `meta` key of the format version byte.
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// `meta` key of the tenant configuration.
pub(crate) const META_CONFIG: &[u8] = b"config";
/// `meta` key of the longest moment duration ever written (an upper bound).
pub(crate) const META_MOMENT_SPAN: &[u8] = b"moment_span";
/// `meta` key present once every record written before it has a text posting or a pending
/// entry (see `rocks::text`): a tenant made before full text lacks it until its first open
/// by a writer marks every record pending.
pub(crate) const META_TEXT_INDEX: &[u8] = b"text_index";
/// Prefix of the `meta` keys that register sealing sessions: then the session number (u32,
/// big-endian, so they sort by number). The value holds the session's random id.
pub(crate) const META_SESSION: &[u8] = b"session/";

/// `meta` key registering sealing session `number`.
pub(crate) fn session_key(number: u32) -> Vec<u8> {
    [META_SESSION, &number.to_be_bytes()].concat()
}

/// The session number of a key made by [`session_key`]; `None` for any other key.
pub(crate) fn session_number(key: &[u8]) -> Option<u32> {
    let number = key.strip_prefix(META_SESSION)?;
    number.try_into().ok().map(u32::from_be_bytes)
}

/// Which side of an edge an adjacency entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The entity is the edge's `from`.
    Out = 0,
    /// The entity is the edge's `to`.
    In = 1,
}

impl Side {
    pub(crate) fn opposite(self) -> Side {
        match self {
            Side::Out => Side::In,
            Side::In => Side::Out,
        }
    }
}

/// An adjacency entry, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Adjacent<'k> {
    pub(crate) side: Side,
    pub(crate) relation: &'k [u8],
    pub(crate) other: EntityId,
    pub(crate) edge: EdgeId,
}

/// The adjacency key of `entity`'s `side` of `edge`.
pub(crate) fn adjacency(
    entity: EntityId,
    side: Side,
    relation: &[u8],
    other: EntityId,
    edge: EdgeId,
) -> Vec<u8> {
    // Relations are at most MAX_NAME_BYTES (1024) long: validated by the engine.
    let relation_len = u16::try_from(relation.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(16 + 1 + 2 + relation.len() + 32);
    key.extend_from_slice(entity.as_bytes());
    key.push(side as u8);
    key.extend_from_slice(&relation_len.to_be_bytes());
    key.extend_from_slice(relation);
    key.extend_from_slice(other.as_bytes());
    key.extend_from_slice(edge.as_bytes());
    key
}

/// The prefix of every adjacency key of `entity`'s `side`.
pub(crate) fn adjacency_prefix(entity: EntityId, side: Side) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..16].copy_from_slice(entity.as_bytes());
    key[16] = side as u8;
    key
}

/// The prefix of the adjacency keys of `entity`'s `side` with this relation.
pub(crate) fn adjacency_relation_prefix(entity: EntityId, side: Side, relation: &[u8]) -> Vec<u8> {
    let relation_len = u16::try_from(relation.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(19 + relation.len());
    key.extend_from_slice(&adjacency_prefix(entity, side));
    key.extend_from_slice(&relation_len.to_be_bytes());
    key.extend_from_slice(relation);
    key
}

/// Parses an adjacency key; `None` if it is not one.
pub(crate) fn parse_adjacency(key: &[u8]) -> Option<Adjacent<'_>> {
    let side = match *key.get(16)? {
        0 => Side::Out,
        1 => Side::In,
        _ => return None,
    };
    let relation_len = u16::from_be_bytes(key.get(17..19)?.try_into().ok()?) as usize;
    let relation = key.get(19..19 + relation_len)?;
    let rest = key.get(19 + relation_len..)?;
    if rest.len() != 32 {
        return None;
    }
    Some(Adjacent {
        side,
        relation,
        other: EntityId::from_bytes(rest[..16].try_into().ok()?),
        edge: EdgeId::from_bytes(rest[16..].try_into().ok()?),
    })
}

/// The entity-name key of `word` for `entity`.
pub(crate) fn entity_name(word: &[u8], entity: EntityId) -> Vec<u8> {
    let mut key = Vec::with_capacity(word.len() + 17);
    key.extend_from_slice(word);
    key.push(0);
    key.extend_from_slice(entity.as_bytes());
    key
}

/// The entity of an entity-name key; `None` if it is not one.
pub(crate) fn parse_entity_name(key: &[u8]) -> Option<EntityId> {
    let split = key.len().checked_sub(17)?;
    if key[split] != 0 {
        return None;
    }
    Some(EntityId::from_bytes(key[split + 1..].try_into().ok()?))
}

/// The prefix of every `text` key of `term` (as stored: the term, or its token) for `target`.
pub(crate) fn text_term_prefix(target: u8, term: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(term.len() + 18);
    key.push(target);
    key.extend_from_slice(term);
    key.push(0);
    key
}

/// The `text` key of `term` (as stored) in record `id` of `target`.
pub(crate) fn text_posting(target: u8, term: &[u8], id: &[u8; 16]) -> Vec<u8> {
    let mut key = text_term_prefix(target, term);
    key.extend_from_slice(id);
    key
}

/// The first byte of every pending `text` key.
pub(crate) const TEXT_PENDING: u8 = 2;

/// The `text` key of pending entry `id` of `target`.
pub(crate) fn text_pending(target: u8, id: &[u8; 16]) -> [u8; 18] {
    let mut key = [0u8; 18];
    key[0] = TEXT_PENDING;
    key[1] = target;
    key[2..].copy_from_slice(id);
    key
}

/// The entry id of a pending `text` key of `target`; `None` if it is not one.
pub(crate) fn parse_text_pending(target: u8, key: &[u8]) -> Option<[u8; 16]> {
    match key {
        [TEXT_PENDING, t, id @ ..] if *t == target => id.try_into().ok(),
        _ => None,
    }
}

/// The record id of a `text` key; `None` if it is not one.
pub(crate) fn parse_text_posting(key: &[u8]) -> Option<[u8; 16]> {
    let split = key.len().checked_sub(17)?;
    if split == 0 || key[split] != 0 {
        return None;
    }
    key[split + 1..].try_into().ok()
}

/// A timestamp as 8 bytes whose byte order is time order.
pub(crate) fn time(t: Timestamp) -> [u8; 8] {
    ((t.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`time`].
pub(crate) fn parse_time(bytes: &[u8]) -> Option<Timestamp> {
    let raw = u64::from_be_bytes(bytes.try_into().ok()?);
    Some(Timestamp::from_micros((raw ^ (1 << 63)) as i64))
}

/// The moment-time key of a moment starting at `start`.
pub(crate) fn moment_time(start: Timestamp, moment: &[u8; 16]) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&time(start));
    key[8..].copy_from_slice(moment);
    key
}

/// The start and moment id of a moment-time key.
pub(crate) fn parse_moment_time(key: &[u8]) -> Option<(Timestamp, [u8; 16])> {
    if key.len() != 24 {
        return None;
    }
    Some((parse_time(&key[..8])?, key[8..].try_into().ok()?))
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when there is
/// none (the prefix is all `0xff`): the exclusive upper bound of a prefix scan.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacency_keys_round_trip() {
        let (a, b, e) = (EntityId::new(), EntityId::new(), EdgeId::new());
        let key = adjacency(a, Side::In, b"knows", b, e);
        let parsed = parse_adjacency(&key).unwrap();
        assert_eq!(parsed, Adjacent { side: Side::In, relation: b"knows", other: b, edge: e });
        assert!(key.starts_with(&adjacency_relation_prefix(a, Side::In, b"knows")));
        assert!(!key.starts_with(&adjacency_relation_prefix(a, Side::In, b"know")));
        assert!(parse_adjacency(&key[..key.len() - 1]).is_none());
    }

    #[test]
    fn text_keys_round_trip_under_their_term_prefix() {
        let id = [7u8; 16];
        let key = text_posting(1, b"contract", &id);
        assert_eq!(parse_text_posting(&key), Some(id));
        assert!(key.starts_with(&text_term_prefix(1, b"contract")));
        assert!(!key.starts_with(&text_term_prefix(1, b"contrac")));
        assert!(!key.starts_with(&text_term_prefix(0, b"contract")));
        assert!(parse_text_posting(&key[1..key.len() - 1]).is_none());
    }

    #[test]
    fn pending_text_keys_round_trip_apart_from_postings() {
        let id = [9u8; 16];
        let key = text_pending(1, &id);
        assert_eq!(parse_text_pending(1, &key), Some(id));
        assert_eq!(parse_text_pending(0, &key), None);
        assert_eq!(parse_text_pending(1, &key[..17]), None);
        assert!(!key.starts_with(&[0]) && !key.starts_with(&[1]));
    }

    #[test]
    fn time_bytes_sort_like_time() {
        let times = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX].map(Timestamp::from_micros);
        for pair in times.windows(2) {
            assert!(time(pair[0]) < time(pair[1]));
            assert_eq!(parse_time(&time(pair[0])), Some(pair[0]));
        }
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
