//! The snapshot file of a tenant's vector index: its layout, reading and checking it, and the
//! hashes that let a snapshot be checked against the stored embeddings. Owns no graph logic
//! and no storage access beyond reading the one file.
//!
//! Layout: [`SNAPSHOT_MAGIC`], the graph ([`Hnsw::encode`], its vectors in the precision the
//! index was opened with), each point's resource id (16
//! bytes), each point's embedding hash (8 bytes, little-endian), then a checksum of all that
//! ([`hash_bytes`], 8 bytes). In an encrypted tenant the whole file is one sealed value.

use std::path::Path;

use super::hnsw::Hnsw;
use super::quant::VectorPrecision;
use crate::crypto::TenantCrypto;
use crate::model::{Metric, ResourceId};

/// The snapshot's file name inside the tenant directory.
pub(crate) const SNAPSHOT_FILE: &str = "vectors.hnsw";
/// The first bytes of every snapshot: the format and its version.
pub(super) const SNAPSHOT_MAGIC: &[u8; 8] = b"PCHNSW04";

/// A snapshot as read: the graph and each point's resource id and embedding hash.
pub(crate) struct Snapshot {
    pub(super) graph: Hnsw,
    pub(super) ids: Vec<ResourceId>,
    pub(super) hashes: Vec<u64>,
}

/// Reads and checks a snapshot: magic, checksum, a consistent graph, ids and hashes for every
/// point, the expected dimension, metric and vector precision. `None` for anything else, never
/// a panic: a snapshot of another precision is rebuilt, never read as this one.
pub(super) fn read_snapshot(
    path: &Path,
    crypto: Option<&TenantCrypto>,
    dimension: usize,
    metric: Metric,
    precision: VectorPrecision,
) -> Option<Snapshot> {
    let mut bytes = std::fs::read(path).ok()?;
    if let Some(crypto) = crypto {
        bytes = crypto.open(SNAPSHOT_FILE, b"", &bytes).ok()?;
    }
    let body_len = bytes.len().checked_sub(8)?;
    let (body, checksum) = bytes.split_at(body_len);
    let checksum = u64::from_le_bytes(checksum.try_into().ok()?);
    if !body.starts_with(SNAPSHOT_MAGIC) || checksum != hash_bytes(body) {
        return None;
    }
    let (graph, used) = Hnsw::decode(&body[SNAPSHOT_MAGIC.len()..])?;
    if graph.dimension() != dimension || graph.metric() != metric || graph.precision() != precision
    {
        return None;
    }
    let rest = &body[SNAPSHOT_MAGIC.len() + used..];
    let count = graph.len();
    if rest.len() != count * 24 {
        return None;
    }
    let (id_bytes, hash_bytes_) = rest.split_at(count * 16);
    let ids = id_bytes
        .chunks_exact(16)
        .map(|c| ResourceId::from_bytes(c.try_into().unwrap_or([0; 16])))
        .collect();
    let hashes = hash_bytes_
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    Some(Snapshot { graph, ids, hashes })
}

const HASH_K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Four independent multiply-xorshift chains over consecutive 8-byte words (word `i` feeds
/// chain `i % 4`), combined at the end. One chain waits ~6 cycles on each multiply; four keep
/// the multiplier busy, so hashing an embedding costs little on the write path and on open.
struct Lanes([u64; 4]);

impl Lanes {
    fn new(seed: u64, len: usize) -> Self {
        Self(std::array::from_fn(|i| seed ^ (len as u64 + i as u64).wrapping_mul(HASH_K)))
    }

    #[inline(always)]
    fn step(lane: u64, word: u64) -> u64 {
        let lane = (lane ^ word).wrapping_mul(HASH_K);
        lane ^ lane >> 29
    }

    /// Four consecutive words, the first at a multiple of four.
    #[inline(always)]
    fn group(&mut self, words: [u64; 4]) {
        let [a, b, c, d] = self.0;
        let [w, x, y, z] = words;
        self.0 = [Self::step(a, w), Self::step(b, x), Self::step(c, y), Self::step(d, z)];
    }

    /// The last (at most three) words, after the groups.
    fn finish(mut self, tail: impl Iterator<Item = u64>) -> u64 {
        for (lane, word) in self.0.iter_mut().zip(tail) {
            *lane = Self::step(*lane, word);
        }
        let [mut h, rest @ ..] = self.0;
        for (i, lane) in rest.into_iter().enumerate() {
            h = (h ^ lane.rotate_left(16 * (i as u32 + 1))).wrapping_mul(HASH_K);
            h ^= h >> 29;
        }
        h ^= h >> 32;
        h.wrapping_mul(HASH_K) ^ (h >> 29)
    }
}

/// [`Lanes`] over `items`, `per_word` of them to a word (`word` makes it; the last one may
/// get fewer).
#[inline(always)]
fn hash_items<T>(seed: u64, items: &[T], per_word: usize, word: impl Fn(&[T]) -> u64) -> u64 {
    let mut lanes = Lanes::new(seed, items.len());
    let groups = items.chunks_exact(4 * per_word);
    let tail = groups.remainder();
    for group in groups {
        lanes.group(std::array::from_fn(|i| word(&group[per_word * i..per_word * (i + 1)])));
    }
    lanes.finish(tail.chunks(per_word).map(word))
}

/// A fast 64-bit hash (not cryptographic: it detects damage and change, not attacks): the
/// checksum of a snapshot. Little-endian words, the last one zero-padded.
pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_items(0xcbf2_9ce4_8422_2325, bytes, 8, |b| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    })
}

/// The hash of an embedding (of its bits, so it agrees with the stored bytes): two floats
/// to a word, the last one alone when the dimension is odd.
pub(super) fn hash_vector(vector: &[f32]) -> u64 {
    hash_items(0x8422_2325_cbf2_9ce4, vector, 2, |pair| {
        let low = u64::from(pair[0].to_bits());
        let high = pair.get(1).map_or(0, |x| u64::from(x.to_bits()));
        low | high << 32
    })
}
