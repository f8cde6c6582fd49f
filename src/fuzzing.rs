//! Hooks for the fuzz targets in `fuzz/`. **Not part of the API**: hidden from the docs, no
//! stability promise, may change or vanish in any release.
//!
//! The decoders of stored bytes and the key codec are crate-private; the fuzz crate is another
//! crate, so it reaches them through these thin wrappers. They add no logic of their own: each
//! forwards to the function it names, so what the fuzzer exercises is exactly what the store
//! runs. The module is always compiled (not behind `cfg(fuzzing)`) so the normal build
//! type-checks it and a refactor cannot silently break the fuzz crate.

#[cfg(feature = "rocksdb")]
pub use rocks::*;

#[cfg(feature = "rocksdb")]
mod rocks {
    use crate::error::Result;
    use crate::index::hnsw::{Hnsw, HnswParams};
    use crate::model::{
        Edge, EdgeId, Entity, EntityId, Metric, Moment, MomentId, Resource, ResourceId,
        TenantConfig, Timestamp,
    };
    use crate::rocks::{codec, keys};

    /// The format-version byte every stored value starts with.
    pub const FORMAT_VERSION: u8 = codec::FORMAT_VERSION;

    /// Encodes a resource as the `resources` column family stores it (without its embedding).
    pub fn encode_resource(resource: &Resource) -> Vec<u8> {
        codec::encode_resource(resource)
    }

    /// Decodes a stored resource value.
    ///
    /// # Errors
    /// As the store's decoder: [`crate::Error::FormatVersion`] or [`crate::Error::Corrupt`].
    pub fn decode_resource(id: ResourceId, bytes: &[u8]) -> Result<Resource> {
        codec::decode_resource(id, bytes)
    }

    /// Encodes an embedding value.
    pub fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
        codec::encode_embedding(embedding)
    }

    /// Decodes an embedding value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_embedding(bytes: &[u8]) -> Result<Vec<f32>> {
        codec::decode_embedding(bytes)
    }

    /// Encodes an entity value.
    pub fn encode_entity(entity: &Entity) -> Vec<u8> {
        codec::encode_entity(entity)
    }

    /// Decodes an entity value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_entity(id: EntityId, bytes: &[u8]) -> Result<Entity> {
        codec::decode_entity(id, bytes)
    }

    /// Encodes an edge value.
    pub fn encode_edge(edge: &Edge) -> Vec<u8> {
        codec::encode_edge(edge)
    }

    /// Decodes an edge value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_edge(id: EdgeId, bytes: &[u8]) -> Result<Edge> {
        codec::decode_edge(id, bytes)
    }

    /// Encodes a moment value.
    pub fn encode_moment(moment: &Moment) -> Vec<u8> {
        codec::encode_moment(moment)
    }

    /// Decodes a moment value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_moment(id: MomentId, bytes: &[u8]) -> Result<Moment> {
        codec::decode_moment(id, bytes)
    }

    /// Encodes a tenant configuration value.
    pub fn encode_config(config: &TenantConfig) -> Vec<u8> {
        codec::encode_config(config)
    }

    /// Decodes a tenant configuration value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_config(bytes: &[u8]) -> Result<TenantConfig> {
        codec::decode_config(bytes)
    }

    /// Encodes an `i64` meta value (the moment span).
    pub fn encode_i64(value: i64) -> Vec<u8> {
        codec::encode_i64(value)
    }

    /// Decodes an `i64` meta value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_i64(bytes: &[u8]) -> Result<i64> {
        codec::decode_i64("fuzzed i64", bytes)
    }

    /// Encodes the `meta` value registering a sealing session (its random id).
    pub fn encode_session(id: &[u8; 16]) -> Vec<u8> {
        codec::encode_session(id)
    }

    /// Decodes a sealing session's `meta` value.
    ///
    /// # Errors
    /// As the store's decoder.
    pub fn decode_session(bytes: &[u8]) -> Result<[u8; 16]> {
        codec::decode_session(bytes)
    }

    /// An adjacency entry parsed from its key: `(entity, incoming, relation, other, edge)`.
    pub type ParsedAdjacency = (EntityId, bool, Vec<u8>, EntityId, EdgeId);

    /// Converts key text to whatever `keys` takes for it: `&str` for plaintext relations and
    /// name words, `&[u8]` once keys may hold tokens (encryption at rest). `None` when the bytes
    /// cannot be that type (not UTF-8 where `&str` is wanted).
    trait KeyText<'a>: Sized {
        fn from_key_bytes(bytes: &'a [u8]) -> Option<Self>;
    }

    impl<'a> KeyText<'a> for &'a str {
        fn from_key_bytes(bytes: &'a [u8]) -> Option<Self> {
            std::str::from_utf8(bytes).ok()
        }
    }

    impl<'a> KeyText<'a> for &'a [u8] {
        fn from_key_bytes(bytes: &'a [u8]) -> Option<Self> {
            Some(bytes)
        }
    }

    /// The adjacency key of `entity`'s side (`incoming`: the entity is the edge's `to`);
    /// `None` if `relation` is not text the key builder takes.
    pub fn adjacency_key(
        entity: EntityId,
        incoming: bool,
        relation: &[u8],
        other: EntityId,
        edge: EdgeId,
    ) -> Option<Vec<u8>> {
        let relation = KeyText::from_key_bytes(relation)?;
        Some(keys::adjacency(entity, side(incoming), relation, other, edge))
    }

    /// The prefix of `entity`'s adjacency keys on one side with this relation; `None` as for
    /// [`adjacency_key`].
    pub fn adjacency_relation_prefix(
        entity: EntityId,
        incoming: bool,
        relation: &[u8],
    ) -> Option<Vec<u8>> {
        let relation = KeyText::from_key_bytes(relation)?;
        Some(keys::adjacency_relation_prefix(entity, side(incoming), relation))
    }

    /// Parses an adjacency key; the entity is read from the key's first 16 bytes.
    pub fn parse_adjacency(key: &[u8]) -> Option<ParsedAdjacency> {
        let parsed = keys::parse_adjacency(key)?;
        let entity = EntityId::from_bytes(key.get(..16)?.try_into().ok()?);
        Some((
            entity,
            parsed.side == keys::Side::In,
            parsed.relation.to_vec(),
            parsed.other,
            parsed.edge,
        ))
    }

    fn side(incoming: bool) -> keys::Side {
        if incoming { keys::Side::In } else { keys::Side::Out }
    }

    /// The entity-name key of `word` for `entity`; `None` as for [`adjacency_key`].
    pub fn entity_name_key(word: &[u8], entity: EntityId) -> Option<Vec<u8>> {
        let word = KeyText::from_key_bytes(word)?;
        Some(keys::entity_name(word, entity))
    }

    /// The entity of an entity-name key.
    pub fn parse_entity_name(key: &[u8]) -> Option<EntityId> {
        keys::parse_entity_name(key)
    }

    /// A timestamp as order-preserving key bytes.
    pub fn time_key(t: Timestamp) -> [u8; 8] {
        keys::time(t)
    }

    /// The inverse of [`time_key`].
    pub fn parse_time_key(bytes: &[u8]) -> Option<Timestamp> {
        keys::parse_time(bytes)
    }

    /// The moment-time key of a moment.
    pub fn moment_time_key(start: Timestamp, moment: &[u8; 16]) -> [u8; 24] {
        keys::moment_time(start, moment)
    }

    /// The start and moment id of a moment-time key.
    pub fn parse_moment_time_key(key: &[u8]) -> Option<(Timestamp, [u8; 16])> {
        keys::parse_moment_time(key)
    }

    /// The exclusive upper bound of a prefix scan.
    pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
        keys::prefix_end(prefix)
    }

    /// An HNSW graph as the vector index snapshot holds it.
    pub struct HnswGraph(Hnsw);

    impl HnswGraph {
        /// A graph of `points` (each of `dimension` floats) under `metric`, with small
        /// parameters, for seed inputs.
        pub fn build(dimension: usize, metric: Metric, points: &[Vec<f32>]) -> Self {
            let params = HnswParams { m: 4, ef_construction: 16, ef_search: 16 };
            let mut graph = Hnsw::new(dimension, metric, params);
            for point in points {
                graph.insert(point);
            }
            Self(graph)
        }

        /// Tombstones a point.
        pub fn delete(&mut self, point: u32) {
            self.0.delete(point);
        }

        /// The snapshot decoder: a graph from the front of `bytes` and the bytes it used, or
        /// `None` if they are not a consistent graph.
        pub fn decode(bytes: &[u8]) -> Option<(Self, usize)> {
            Hnsw::decode(bytes).map(|(graph, used)| (Self(graph), used))
        }

        /// The graph's bytes, as written into a snapshot.
        pub fn encode(&self) -> Vec<u8> {
            let mut out = Vec::new();
            self.0.encode(&mut out);
            out
        }

        /// Points in the graph, tombstones included.
        pub fn len(&self) -> usize {
            self.0.len()
        }

        /// Whether the graph has no points.
        pub fn is_empty(&self) -> bool {
            self.0.len() == 0
        }

        /// The vector dimension.
        pub fn dimension(&self) -> usize {
            self.0.dimension()
        }

        /// The `k` nearest live points to `query` (of the graph's dimension) as
        /// `(point, distance)`, nearest first.
        pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u32, f32)> {
            self.0
                .search(query, k, ef, |_| true)
                .into_iter()
                .map(|s| (s.point, s.distance))
                .collect()
        }
    }

    /// One tenant's sealing keys, for the `sealed` target: seals and opens values exactly as
    /// an encrypted tenant does (its session registered as number 0).
    pub struct Sealer(crate::crypto::TenantCrypto);

    impl Sealer {
        /// The sealing keys derived from `data_key` for `tenant`; `None` for an invalid id.
        pub fn new(tenant: &str, data_key: [u8; 32]) -> Option<Self> {
            let tenant = crate::TenantId::new(tenant).ok()?;
            let domains = crate::rocks::cf::SEALED_DOMAINS;
            let mut crypto = crate::crypto::TenantCrypto::new(&tenant, &data_key, domains).ok()?;
            crypto.numbered(0, std::collections::HashMap::new());
            Some(Self(crypto))
        }

        /// Seals `plaintext` as the value of `key` in `domain` (a column family or file).
        ///
        /// # Errors
        /// [`crate::Error::Crypto`] when the cipher refuses the value.
        pub fn seal(&self, domain: &str, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
            self.0.seal(domain, key, plaintext)
        }

        /// Opens a sealed value.
        ///
        /// # Errors
        /// [`crate::Error::Corrupt`] unless it was sealed for this tenant, domain and key and
        /// is unchanged.
        pub fn open(&self, domain: &'static str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
            self.0.open(domain, key, sealed)
        }
    }
}
