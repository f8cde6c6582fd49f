//! Value encodings: one format-version byte, then bincode 2 (standard configuration) of a
//! storage struct, or raw little-endian `f32`s for embeddings.
//!
//! Ids are not stored in values: they are the keys. JSON fields (metadata, properties) are
//! stored as JSON text inside the bincode record, because bincode cannot carry self-describing
//! values. Decoding never panics: a wrong version is [`Error::FormatVersion`], anything else
//! that does not decode exactly (trailing bytes included) is [`Error::Corrupt`].

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crypto::SESSION_BYTES;
use crate::error::{Error, Result};
use crate::model::{
    Edge, EdgeId, Entity, EntityId, EntityIds, Metadata, Moment, MomentId, Resource, ResourceId,
    TenantConfig, Timestamp,
};

/// The format version of every value this build writes.
pub(crate) const FORMAT_VERSION: u8 = 1;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`.
fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    // Encoding into a Vec cannot fail for these plain structs: no maps with non-string keys,
    // no unsized sequences.
    let _ = bincode::serde::encode_into_std_write(value, out, bincode::config::standard());
}

/// The most bytes one stored value may claim. bincode allocates a string or sequence at the
/// length its prefix claims before reading it, so without a limit a damaged length prefix
/// (found by the `codec` fuzz target) asks for petabytes and aborts the process.
const DECODE_LIMIT: usize = 1 << 30;

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let body = check_version(what, bytes)?;
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, read) =
        bincode::serde::decode_from_slice(body, config).map_err(|e| Error::corrupt(what, e))?;
    if read != body.len() {
        return Err(Error::corrupt(what, format!("{} trailing bytes", body.len() - read)));
    }
    Ok(value)
}

fn check_version<'b>(what: &'static str, bytes: &'b [u8]) -> Result<&'b [u8]> {
    match bytes.split_first() {
        None => Err(Error::corrupt(what, "empty value")),
        Some((&FORMAT_VERSION, body)) => Ok(body),
        Some((&found, _)) => Err(Error::FormatVersion { what, found, expected: FORMAT_VERSION }),
    }
}

fn json_text(metadata: &Metadata) -> String {
    // A Map of JSON values always serializes.
    serde_json::to_string(metadata).unwrap_or_else(|_| String::from("{}"))
}

fn parse_json(what: &'static str, text: &str) -> Result<Metadata> {
    serde_json::from_str(text).map_err(|e| Error::corrupt(what, e))
}

#[derive(Serialize, Deserialize)]
struct StoredResource<'a> {
    uri: Option<Cow<'a, str>>,
    content: Cow<'a, str>,
    metadata: Cow<'a, str>,
    created_at: i64,
    updated_at: i64,
}

/// A resource without its embedding (which lives in its own column family).
pub(crate) fn encode_resource(resource: &Resource) -> Vec<u8> {
    let mut out = Vec::new();
    encode_resource_into(resource, &mut out);
    out
}

/// Appends the encoding of `resource` to `out`.
pub(crate) fn encode_resource_into(resource: &Resource, out: &mut Vec<u8>) {
    encode_into(
        &StoredResource {
            uri: resource.uri.as_deref().map(Cow::Borrowed),
            content: Cow::Borrowed(&resource.content),
            metadata: Cow::Owned(json_text(&resource.metadata)),
            created_at: resource.created_at.as_micros(),
            updated_at: resource.updated_at.as_micros(),
        },
        out,
    );
}

/// Decodes a resource stored under `id`; the embedding is attached by the caller.
pub(crate) fn decode_resource(id: ResourceId, bytes: &[u8]) -> Result<Resource> {
    let stored: StoredResource<'static> = decode("resource", bytes)?;
    Ok(Resource {
        id,
        uri: stored.uri.map(Cow::into_owned),
        content: stored.content.into_owned(),
        metadata: parse_json("resource metadata", &stored.metadata)?,
        embedding: None,
        created_at: Timestamp::from_micros(stored.created_at),
        updated_at: Timestamp::from_micros(stored.updated_at),
    })
}

/// An embedding: the version byte, then the `f32`s little-endian.
pub(crate) fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(embedding_len(embedding));
    encode_embedding_into(embedding, &mut out);
    out
}

/// The length of an embedding's encoding.
pub(crate) fn embedding_len(embedding: &[f32]) -> usize {
    1 + 4 * embedding.len()
}

/// Appends the encoding of `embedding` to `out`: one sized copy the compiler vectorises, not a
/// push per float (a third of a 1000 × 384-d batch's encoding time).
pub(crate) fn encode_embedding_into(embedding: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + embedding_len(embedding), 0);
    write_embedding(embedding, &mut out[start..]);
}

/// Writes the encoding of `embedding` over `out`, which is [`embedding_len`] bytes long.
pub(crate) fn write_embedding(embedding: &[f32], out: &mut [u8]) {
    debug_assert_eq!(out.len(), embedding_len(embedding));
    if let Some((version, floats)) = out.split_first_mut() {
        *version = FORMAT_VERSION;
        for (bytes, x) in floats.chunks_exact_mut(4).zip(embedding) {
            bytes.copy_from_slice(&x.to_le_bytes());
        }
    }
}

/// The raw little-endian `f32` bytes of a stored embedding, checked.
pub(crate) fn embedding_bytes(bytes: &[u8]) -> Result<&[u8]> {
    let body = check_version("embedding", bytes)?;
    if body.is_empty() || body.len() % 4 != 0 {
        return Err(Error::corrupt(
            "embedding",
            format!("{} bytes is not a whole vector", body.len()),
        ));
    }
    Ok(body)
}

/// Decodes a stored embedding.
pub(crate) fn decode_embedding(bytes: &[u8]) -> Result<Vec<f32>> {
    let body = embedding_bytes(bytes)?;
    Ok(body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[derive(Serialize, Deserialize)]
struct StoredEntity<'a> {
    name: Cow<'a, str>,
    kind: Cow<'a, str>,
    properties: Cow<'a, str>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn encode_entity(entity: &Entity) -> Vec<u8> {
    encode(&StoredEntity {
        name: Cow::Borrowed(&entity.name),
        kind: Cow::Borrowed(&entity.kind),
        properties: Cow::Owned(json_text(&entity.properties)),
        created_at: entity.created_at.as_micros(),
        updated_at: entity.updated_at.as_micros(),
    })
}

pub(crate) fn decode_entity(id: EntityId, bytes: &[u8]) -> Result<Entity> {
    let stored: StoredEntity<'static> = decode("entity", bytes)?;
    Ok(Entity {
        id,
        name: stored.name.into_owned(),
        kind: stored.kind.into_owned(),
        properties: parse_json("entity properties", &stored.properties)?,
        created_at: Timestamp::from_micros(stored.created_at),
        updated_at: Timestamp::from_micros(stored.updated_at),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredEdge<'a> {
    from: [u8; 16],
    to: [u8; 16],
    relation: Cow<'a, str>,
    weight: f32,
    properties: Cow<'a, str>,
    created_at: i64,
}

pub(crate) fn encode_edge(edge: &Edge) -> Vec<u8> {
    encode(&StoredEdge {
        from: *edge.from.as_bytes(),
        to: *edge.to.as_bytes(),
        relation: Cow::Borrowed(&edge.relation),
        weight: edge.weight,
        properties: Cow::Owned(json_text(&edge.properties)),
        created_at: edge.created_at.as_micros(),
    })
}

pub(crate) fn decode_edge(id: EdgeId, bytes: &[u8]) -> Result<Edge> {
    let stored: StoredEdge<'static> = decode("edge", bytes)?;
    Ok(Edge {
        id,
        from: EntityId::from_bytes(stored.from),
        to: EntityId::from_bytes(stored.to),
        relation: stored.relation.into_owned(),
        weight: stored.weight,
        properties: parse_json("edge properties", &stored.properties)?,
        created_at: Timestamp::from_micros(stored.created_at),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredMoment<'a> {
    start: i64,
    end: i64,
    kind: Cow<'a, str>,
    content: Cow<'a, str>,
    entities: Vec<[u8; 16]>,
    metadata: Cow<'a, str>,
}

pub(crate) fn encode_moment(moment: &Moment) -> Vec<u8> {
    encode(&StoredMoment {
        start: moment.start.as_micros(),
        end: moment.end.as_micros(),
        kind: Cow::Borrowed(&moment.kind),
        content: Cow::Borrowed(&moment.content),
        entities: moment.entities.iter().map(|e| *e.as_bytes()).collect(),
        metadata: Cow::Owned(json_text(&moment.metadata)),
    })
}

pub(crate) fn decode_moment(id: MomentId, bytes: &[u8]) -> Result<Moment> {
    let stored: StoredMoment<'static> = decode("moment", bytes)?;
    Ok(Moment {
        id,
        start: Timestamp::from_micros(stored.start),
        end: Timestamp::from_micros(stored.end),
        kind: stored.kind.into_owned(),
        content: stored.content.into_owned(),
        entities: stored.entities.into_iter().map(EntityId::from_bytes).collect::<EntityIds>(),
        metadata: parse_json("moment metadata", &stored.metadata)?,
    })
}

pub(crate) fn encode_config(config: &TenantConfig) -> Vec<u8> {
    encode(config)
}

pub(crate) fn decode_config(bytes: &[u8]) -> Result<TenantConfig> {
    decode("tenant config", bytes)
}

pub(crate) fn encode_i64(value: i64) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

pub(crate) fn decode_i64(what: &'static str, bytes: &[u8]) -> Result<i64> {
    let body = check_version(what, bytes)?;
    body.try_into().map(i64::from_be_bytes).map_err(|_| Error::corrupt(what, "not 8 bytes"))
}

/// The value registering a sealing session: its random id.
pub(crate) fn encode_session(id: &[u8; SESSION_BYTES]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(id);
    out
}

pub(crate) fn decode_session(bytes: &[u8]) -> Result<[u8; SESSION_BYTES]> {
    let body = check_version("sealing session", bytes)?;
    body.try_into().map_err(|_| Error::corrupt("sealing session", "not a 16-byte id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut metadata = Metadata::new();
        metadata.insert("k".into(), serde_json::json!([1, "two", {"three": null}]));
        let resource = Resource {
            id: ResourceId::new(),
            uri: Some("file:///x".into()),
            content: "hello".into(),
            metadata,
            embedding: None,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(2),
        };
        let bytes = encode_resource(&resource);
        assert_eq!(decode_resource(resource.id, &bytes).unwrap(), resource);
        assert_eq!(decode_embedding(&encode_embedding(&[1.5, -2.0])).unwrap(), vec![1.5, -2.0]);
    }

    #[test]
    fn damaged_values_are_errors() {
        let entity = Entity {
            id: EntityId::new(),
            name: "n".into(),
            kind: "k".into(),
            properties: Metadata::new(),
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        };
        let bytes = encode_entity(&entity);
        assert!(matches!(decode_entity(entity.id, &[]), Err(Error::Corrupt { .. })));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(matches!(
            decode_entity(entity.id, &wrong_version),
            Err(Error::FormatVersion { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode_entity(entity.id, &trailing), Err(Error::Corrupt { .. })));
        for cut in 1..bytes.len() {
            assert!(decode_entity(entity.id, &bytes[..cut]).is_err());
        }
        assert!(embedding_bytes(&[FORMAT_VERSION, 1, 2]).is_err());
    }
}
