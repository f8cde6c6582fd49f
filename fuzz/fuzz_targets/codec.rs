//! Every decoder of stored values, on arbitrary bytes: an error or a value, never a panic; and
//! a decoded value re-encodes to bytes that decode to it again and re-encode identically (the
//! encoding of a decoded value is a fixed point, so nothing is lost or invented on a rewrite).
//!
//! The first byte picks the decoder; the rest is the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percolate::fuzzing as codec;
use percolate::{EdgeId, EntityId, MomentId, ResourceId};

/// Checks that `encode(value)` is a fixed point of decode-then-encode.
fn fixed_point<T>(
    value: T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> percolate::Result<T>,
) {
    let once = encode(&value);
    let again = decode(&once).unwrap_or_else(|e| panic!("re-encoded value does not decode: {e}"));
    assert_eq!(encode(&again), once, "re-encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let resource = ResourceId::from_bytes([1; 16]);
    let entity = EntityId::from_bytes([2; 16]);
    let edge = EdgeId::from_bytes([3; 16]);
    let moment = MomentId::from_bytes([4; 16]);
    match which % 8 {
        0 => {
            if let Ok(v) = codec::decode_resource(resource, bytes) {
                assert!(v.embedding.is_none(), "embeddings live in their own column family");
                fixed_point(v, codec::encode_resource, |b| codec::decode_resource(resource, b));
            }
        }
        1 => {
            if let Ok(v) = codec::decode_embedding(bytes) {
                // Raw floats: the only encoding that must be byte-identical.
                assert_eq!(codec::encode_embedding(&v), bytes, "embedding bytes changed");
            }
        }
        2 => {
            if let Ok(v) = codec::decode_entity(entity, bytes) {
                fixed_point(v, codec::encode_entity, |b| codec::decode_entity(entity, b));
            }
        }
        3 => {
            if let Ok(v) = codec::decode_edge(edge, bytes) {
                fixed_point(v, codec::encode_edge, |b| codec::decode_edge(edge, b));
            }
        }
        4 => {
            if let Ok(v) = codec::decode_moment(moment, bytes) {
                fixed_point(v, codec::encode_moment, |b| codec::decode_moment(moment, b));
            }
        }
        5 => {
            if let Ok(v) = codec::decode_config(bytes) {
                fixed_point(v, codec::encode_config, codec::decode_config);
            }
        }
        6 => {
            if let Ok(v) = codec::decode_session(bytes) {
                assert_eq!(codec::encode_session(&v), bytes, "session bytes changed");
            }
        }
        _ => {
            if let Ok(v) = codec::decode_i64(bytes) {
                assert_eq!(codec::encode_i64(v), bytes, "i64 bytes changed");
            }
        }
    }
});
