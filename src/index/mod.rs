//! The vector index of a tenant: an in-memory HNSW graph ([`hnsw`]), the distance kernels it
//! runs on ([`distance`]), the precision its vectors are kept in ([`quant`]), the live index
//! kept in step with every commit ([`live`]) and its snapshot file ([`snapshot`]). Imports nothing from a storage backend: a provider feeds it
//! changes after its commits and the stored embeddings on open.

pub(crate) mod distance;
mod fields;
pub(crate) mod hnsw;
mod live;
mod quant;
mod rows;
mod snapshot;

pub use hnsw::HnswParams;
pub(crate) use live::{FullVectors, Persist, Stored, VectorChange, VectorIndex};
pub use quant::VectorPrecision;

/// A deterministic pseudo-random unit vector of `dimension` floats for unit tests.
#[cfg(test)]
pub(crate) fn test_vector(dimension: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dimension)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
