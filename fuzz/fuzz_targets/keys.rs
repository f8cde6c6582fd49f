//! The RocksDB key codec: every key built parses back to its parts, every key that parses is
//! rebuilt byte for byte from its parts, and time keys sort like the times they encode.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use percolate::fuzzing as keys;
use percolate::{EdgeId, EntityId, Timestamp};

#[derive(Arbitrary, Debug)]
struct Input {
    a: i64,
    b: i64,
    id_a: [u8; 16],
    id_b: [u8; 16],
    edge: [u8; 16],
    incoming: bool,
    relation: Vec<u8>,
    raw: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let (a, b) = (Timestamp::from_micros(input.a), Timestamp::from_micros(input.b));

    // Time keys: order preserved, round trip.
    assert_eq!(a.cmp(&b), keys::time_key(a).cmp(&keys::time_key(b)), "time order");
    assert_eq!(keys::parse_time_key(&keys::time_key(a)), Some(a));
    let (ka, kb) = (keys::moment_time_key(a, &input.id_a), keys::moment_time_key(b, &input.id_b));
    assert_eq!((a, input.id_a).cmp(&(b, input.id_b)), ka.cmp(&kb), "moment time order");
    assert_eq!(keys::parse_moment_time_key(&ka), Some((a, input.id_a)));

    // Adjacency keys: round trip, and the relation prefix covers the key. Relations are at
    // most 1024 bytes (validated by the engine).
    let (from, to, edge) = (
        EntityId::from_bytes(input.id_a),
        EntityId::from_bytes(input.id_b),
        EdgeId::from_bytes(input.edge),
    );
    let relation = &input.relation[..input.relation.len().min(1024)];
    if let Some(key) = keys::adjacency_key(from, input.incoming, relation, to, edge) {
        let parsed = keys::parse_adjacency(&key).expect("a built adjacency key parses");
        assert_eq!(parsed, (from, input.incoming, relation.to_vec(), to, edge));
        let prefix = keys::adjacency_relation_prefix(from, input.incoming, relation)
            .expect("the relation was accepted for the key");
        assert!(key.starts_with(&prefix));
    }

    // Entity-name keys: words never contain NUL.
    if !relation.contains(&0)
        && let Some(key) = keys::entity_name_key(relation, from)
    {
        assert_eq!(keys::parse_entity_name(&key), Some(from));
    }

    // Arbitrary bytes: whatever parses is rebuilt identically.
    let raw = &input.raw;
    match keys::parse_time_key(raw) {
        Some(t) => assert_eq!(&keys::time_key(t)[..], &raw[..]),
        None => assert_ne!(raw.len(), 8),
    }
    if let Some((t, id)) = keys::parse_moment_time_key(raw) {
        assert_eq!(&keys::moment_time_key(t, &id)[..], &raw[..]);
    }
    if let Some((entity, incoming, relation, other, edge)) = keys::parse_adjacency(raw)
        && let Some(key) = keys::adjacency_key(entity, incoming, &relation, other, edge)
    {
        assert_eq!(&key, raw);
    }
    if let Some(entity) = keys::parse_entity_name(raw)
        && let Some(key) = keys::entity_name_key(&raw[..raw.len() - 17], entity)
    {
        assert_eq!(&key, raw);
    }

    // Prefix scan bounds: every key with the prefix sorts below the bound.
    match keys::prefix_end(raw) {
        Some(end) => {
            assert!(raw.as_slice() < end.as_slice());
            let mut longer = raw.clone();
            longer.extend_from_slice(&[0xff; 4]);
            assert!(longer.as_slice() < end.as_slice());
        }
        None => assert!(raw.iter().all(|&b| b == 0xff)),
    }
});
