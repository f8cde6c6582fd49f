//! The precision the HNSW graph keeps its vectors in ([`VectorPrecision`]): f32, f16, or int8
//! scalar quantization; how a vector is encoded in it, the distance from a full-precision query
//! to an encoded vector, and the encoded vectors' bytes in a snapshot. Owns no graph logic and
//! reads no store: the exact re-ranking that makes compact vectors safe to search is done by
//! the live index (`live/search.rs`) with full vectors its caller supplies.
//!
//! Design decisions:
//! - **Asymmetric distances.** Only the stored points are compact; a query stays f32. The
//!   distance error is then the points' rounding alone (not the query's too), and no query is
//!   ever quantized.
//! - **f16** keeps each value to 11 significant bits (relative error ≤ 2⁻¹¹ per value): half
//!   the bytes of f32 and no training. Values are rounded to f16 by the `half` crate (F16C on
//!   x86-64) when stored, and widened back inside the distance loop by integer shifts the
//!   compiler vectorises ([`widen`]).
//! - **int8 is per-dimension min/max scalar quantization**: dimension `i` maps
//!   `[low[i], high[i]]` linearly onto the codes 0..=255, so a value errs by at most half a
//!   step, `(high[i] - low[i]) / 510`. Per dimension rather than one global range because
//!   embedding dimensions differ in spread (MiniLM's widest is several times its narrowest)
//!   and a global range would spend most codes of a narrow dimension on values it never takes.
//!   Min/max rather than a trained (percentile or k-means) scale because it is deterministic,
//!   needs one pass, and never clips the sample it was trained on; the re-ranking with full
//!   vectors absorbs what rounding costs near the top-k cut.
//! - **Trained on the first [`TRAIN_POINTS`] points.** The range comes from data, and an
//!   index grows one point at a time, so an int8 index keeps its vectors in f32 until it holds
//!   [`TRAIN_POINTS`] of them, then trains on them and converts its vectors in place (a
//!   fraction of a millisecond at 384-d). Small tenants, which are searched exactly anyway,
//!   never pay the rounding. A later value outside the trained range is clamped to it.
//! - The dot product of a query `q` with a decoded point `low + step·c` is
//!   `Σ q·low + Σ (q·step)·c`: per query, [`Query`] holds `q·step` and `Σ q·low`, so scoring a
//!   point is one pass over its codes. Squared L2 is `|q|² + |x|² - 2 q·x`, with `|x|²` of each
//!   decoded point kept beside its codes (4 bytes per point).
//! - The kernels are portable loops with 16 independent accumulators, which the compiler
//!   vectorises (AVX2 with percolate's x86-64 flags, NEON on aarch64); they need no `unsafe`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::distance;
use super::rows::Rows;
use crate::error::{Error, Result};
use crate::model::Metric;

/// How a tenant's vector index keeps its vectors in memory.
///
/// The index walks its graph on these vectors; under [`VectorPrecision::F16`] and
/// [`VectorPrecision::Int8`] it then re-scores the best candidates with the full-precision
/// embeddings from the store, so the distances returned are exact. The choice is made each
/// time a tenant is opened: nothing stored changes with it (a snapshot of the index made under
/// another precision is ignored and the index rebuilt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VectorPrecision {
    /// 4 bytes per value: the embeddings as given.
    #[default]
    F32,
    /// 2 bytes per value (IEEE half precision).
    F16,
    /// 1 byte per value: per-dimension min/max scalar quantization, plus 4 bytes per point.
    Int8,
}

impl VectorPrecision {
    /// Its name in settings: `f32`, `f16` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            VectorPrecision::F32 => "f32",
            VectorPrecision::F16 => "f16",
            VectorPrecision::Int8 => "int8",
        }
    }

    fn tag(self) -> u8 {
        match self {
            VectorPrecision::F32 => 0,
            VectorPrecision::F16 => 1,
            VectorPrecision::Int8 => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            0 => VectorPrecision::F32,
            1 => VectorPrecision::F16,
            2 => VectorPrecision::Int8,
            _ => return None,
        })
    }
}

impl fmt::Display for VectorPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VectorPrecision {
    type Err = Error;

    /// `f32`, `f16` or `int8` (any case).
    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(VectorPrecision::F32),
            "f16" => Ok(VectorPrecision::F16),
            "int8" => Ok(VectorPrecision::Int8),
            other => Err(Error::invalid(
                "vector precision",
                format!("{other:?} is not one of f32, f16, int8"),
            )),
        }
    }
}

/// An int8 index trains its quantizer once it holds this many points (see the module docs).
pub(crate) const TRAIN_POINTS: usize = 1024;

/// Per-dimension ranges of int8 codes: dimension `i` decodes code `c` as `low[i] + step[i]·c`.
#[derive(Clone, Debug, PartialEq)]
struct Scale {
    low: Vec<f32>,
    step: Vec<f32>,
}

impl Scale {
    /// The min/max of each dimension over `rows`.
    fn train(dimension: usize, rows: &Rows<f32>) -> Self {
        let mut low = vec![f32::INFINITY; dimension];
        let mut high = vec![f32::NEG_INFINITY; dimension];
        for index in 0..rows.len {
            for ((l, h), &x) in low.iter_mut().zip(&mut high).zip(rows.row(index)) {
                if x.is_finite() {
                    *l = l.min(x);
                    *h = h.max(x);
                }
            }
        }
        let step = low
            .iter_mut()
            .zip(&high)
            .map(|(l, h)| {
                if !l.is_finite() || !h.is_finite() {
                    *l = 0.0;
                    return 0.0;
                }
                (h - *l) / 255.0
            })
            .collect();
        Self { low, step }
    }

    fn encode(&self, vector: &[f32], codes: &mut [u8]) {
        for (((code, &x), &low), &step) in
            codes.iter_mut().zip(vector).zip(&self.low).zip(&self.step)
        {
            // NaN saturates to 0 under `as`; the clamp keeps out-of-range values at the ends.
            *code = if step > 0.0 { ((x - low) / step).round().clamp(0.0, 255.0) as u8 } else { 0 };
        }
    }

    fn decode(&self, codes: &[u8], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            codes.iter().zip(&self.low).zip(&self.step).map(|((&c, &l), &s)| l + s * f32::from(c)),
        );
    }

    /// `|decoded|²` of a row of codes.
    fn squared_norm(&self, codes: &[u8]) -> f32 {
        let mut decoded = Vec::with_capacity(codes.len());
        self.decode(codes, &mut decoded);
        distance::dot(&decoded, &decoded)
    }
}

enum Store {
    F32(Rows<f32>),
    F16(Rows<f16>),
    Int8 {
        codes: Rows<u8>,
        scale: Scale,
        /// `|x|²` of each decoded point, for squared L2.
        norms: Vec<f32>,
    },
}

/// The graph's vectors, one row per point, in the index's precision.
pub(crate) struct Vectors {
    precision: VectorPrecision,
    dimension: usize,
    store: Store,
}

/// A query (or a point used as one while the graph links) ready to be scored against the
/// stored vectors: the prepared f32 vector, and for int8 storage its per-dimension products
/// with the quantizer.
pub(crate) struct Query<'a> {
    /// The vector as the graph stores it (unit length under cosine), in f32.
    pub(crate) vector: Cow<'a, [f32]>,
    /// int8 storage: `vector[i] · step[i]`; empty otherwise.
    scaled: Vec<f32>,
    /// int8 storage: `Σ vector[i] · low[i]`.
    bias: f32,
    /// `|vector|²` (squared L2 over int8 storage).
    norm: f32,
}

impl Vectors {
    pub(crate) fn new(dimension: usize, precision: VectorPrecision) -> Self {
        let store = match precision {
            VectorPrecision::F16 => Store::F16(Rows::new(dimension)),
            VectorPrecision::F32 | VectorPrecision::Int8 => Store::F32(Rows::new(dimension)),
        };
        Self { precision, dimension, store }
    }

    /// An empty set of the same precision and, once trained, the same quantizer: a rebuilt
    /// graph encodes its points exactly as this one did.
    pub(crate) fn empty_like(&self) -> Self {
        let store = match &self.store {
            Store::F32(_) => Store::F32(Rows::new(self.dimension)),
            Store::F16(_) => Store::F16(Rows::new(self.dimension)),
            Store::Int8 { scale, .. } => Store::Int8 {
                codes: Rows::new(self.dimension),
                scale: scale.clone(),
                norms: Vec::new(),
            },
        };
        Self { precision: self.precision, dimension: self.dimension, store }
    }

    pub(crate) fn precision(&self) -> VectorPrecision {
        self.precision
    }

    /// Whether the rows are held at less than full precision (an int8 index before training
    /// holds f32).
    pub(crate) fn is_compact(&self) -> bool {
        !matches!(self.store, Store::F32(_))
    }

    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::F32(rows) => rows.len,
            Store::F16(rows) => rows.len,
            Store::Int8 { codes, .. } => codes.len,
        }
    }

    /// Appends a point (already prepared: unit length under cosine); an int8 set that reaches
    /// [`TRAIN_POINTS`] trains its quantizer and converts.
    pub(crate) fn push(&mut self, vector: &[f32]) {
        let dimension = self.dimension;
        match &mut self.store {
            Store::F32(rows) => rows.push(vector),
            Store::F16(rows) => {
                let mut row = vec![f16::ZERO; dimension];
                row.convert_from_f32_slice(&vector[..dimension]);
                rows.push(&row);
            }
            Store::Int8 { codes, scale, norms } => {
                let mut row = vec![0u8; dimension];
                scale.encode(vector, &mut row);
                norms.push(scale.squared_norm(&row));
                codes.push(&row);
            }
        }
        if self.precision == VectorPrecision::Int8 && self.len() >= TRAIN_POINTS {
            self.train();
        }
    }

    /// Trains the int8 quantizer on the f32 rows held and converts them (no-op otherwise).
    fn train(&mut self) {
        let Store::F32(rows) = &self.store else { return };
        let scale = Scale::train(self.dimension, rows);
        let mut codes = Rows::new(self.dimension);
        let mut norms = Vec::with_capacity(rows.len);
        let mut row = vec![0u8; self.dimension];
        for index in 0..rows.len {
            scale.encode(rows.row(index), &mut row);
            norms.push(scale.squared_norm(&row));
            codes.push(&row);
        }
        self.store = Store::Int8 { codes, scale, norms };
    }

    /// A point's vector decoded to f32 (borrowed when stored in f32).
    pub(crate) fn decoded(&self, point: usize) -> Cow<'_, [f32]> {
        match &self.store {
            Store::F32(rows) => Cow::Borrowed(rows.row(point)),
            Store::F16(rows) => Cow::Owned(rows.row(point).iter().map(|&x| widen(x)).collect()),
            Store::Int8 { codes, scale, .. } => {
                let mut out = Vec::with_capacity(self.dimension);
                scale.decode(codes.row(point), &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// `vector` (prepared) as a query against these rows.
    pub(crate) fn query<'a>(&self, vector: Cow<'a, [f32]>) -> Query<'a> {
        match &self.store {
            Store::Int8 { scale, .. } => {
                let scaled = vector.iter().zip(&scale.step).map(|(q, s)| q * s).collect();
                let bias = distance::dot(&vector, &scale.low);
                let norm = distance::dot(&vector, &vector);
                Query { vector, scaled, bias, norm }
            }
            _ => Query { vector, scaled: Vec::new(), bias: 0.0, norm: 0.0 },
        }
    }

    /// A stored point as a query (while linking the graph).
    pub(crate) fn point_query(&self, point: usize) -> Query<'_> {
        self.query(self.decoded(point))
    }

    /// The distance under `metric` from `query` to a stored point.
    #[inline]
    pub(crate) fn distance(&self, metric: Metric, query: &Query<'_>, point: usize) -> f32 {
        let dot = match &self.store {
            Store::F32(rows) => return metric_distance(metric, &query.vector, rows.row(point)),
            Store::F16(rows) => {
                let row = rows.row(point);
                if metric == Metric::L2 {
                    return squared_l2_f16(&query.vector, row);
                }
                dot_f16(&query.vector, row)
            }
            Store::Int8 { codes, norms, .. } => {
                let dot = query.bias + dot_u8(&query.scaled, codes.row(point));
                if metric == Metric::L2 {
                    return (query.norm + norms[point] - 2.0 * dot).max(0.0);
                }
                dot
            }
        };
        match metric {
            Metric::Cosine => 1.0 - dot,
            Metric::Dot | Metric::L2 => -dot,
        }
    }

    /// Starts loading a point's row into cache (see [`distance::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, point: usize) {
        match &self.store {
            Store::F32(rows) => distance::prefetch(rows.row(point)),
            Store::F16(rows) => distance::prefetch(rows.row(point)),
            Store::Int8 { codes, .. } => distance::prefetch(codes.row(point)),
        }
    }

    /// Bytes held, by capacity.
    pub(crate) fn capacity_bytes(&self) -> usize {
        match &self.store {
            Store::F32(rows) => rows.capacity_bytes(),
            Store::F16(rows) => rows.capacity_bytes(),
            Store::Int8 { codes, scale, norms } => {
                codes.capacity_bytes()
                    + norms.capacity() * 4
                    + (scale.low.capacity() + scale.step.capacity()) * 4
            }
        }
    }

    /// Appends the rows' bytes: the precision, the storage (0 f32, 1 f16, 2 int8), for int8
    /// the quantizer (`low` then `step`, f32 each), then every row, little-endian. The squared
    /// norms of int8 rows are not written: they are recomputed from the codes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.precision.tag());
        match &self.store {
            Store::F32(rows) => {
                out.push(0);
                rows.elements().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
            Store::F16(rows) => {
                out.push(1);
                rows.elements().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
            Store::Int8 { codes, scale, .. } => {
                out.push(2);
                for x in scale.low.iter().chain(&scale.step) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                out.extend(codes.elements());
            }
        }
    }

    /// Reads `count` rows of `dimension` written by [`Vectors::encode`] from the front of
    /// `bytes`; returns them and the bytes used, or `None` if they are inconsistent (a storage
    /// the precision never uses, a quantizer that is not finite and non-negative).
    pub(crate) fn decode(bytes: &[u8], dimension: usize, count: usize) -> Option<(Self, usize)> {
        let precision = VectorPrecision::from_tag(*bytes.first()?)?;
        let storage = *bytes.get(1)?;
        let mut at = 2usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(slice)
        };
        let f32_at = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let values = count.checked_mul(dimension)?;
        let store = match (precision, storage) {
            (VectorPrecision::F32 | VectorPrecision::Int8, 0) => {
                Store::F32(Rows::from_le_bytes(dimension, 4, take(values.checked_mul(4)?)?, f32_at))
            }
            (VectorPrecision::F16, 1) => {
                Store::F16(Rows::from_le_bytes(dimension, 2, take(values.checked_mul(2)?)?, |c| {
                    f16::from_le_bytes([c[0], c[1]])
                }))
            }
            (VectorPrecision::Int8, 2) => {
                let quantizer: Vec<f32> =
                    take(dimension.checked_mul(8)?)?.chunks_exact(4).map(f32_at).collect();
                let (low, step) = quantizer.split_at(dimension);
                if !quantizer.iter().all(|x| x.is_finite()) || step.iter().any(|s| *s < 0.0) {
                    return None;
                }
                let scale = Scale { low: low.to_vec(), step: step.to_vec() };
                let codes = Rows::from_le_bytes(dimension, 1, take(values)?, |c| c[0]);
                let norms = (0..count).map(|p| scale.squared_norm(codes.row(p))).collect();
                Store::Int8 { codes, scale, norms }
            }
            _ => return None,
        };
        Some((Self { precision, dimension, store }, at))
    }
}

/// The distance under `metric` between two f32 vectors of the graph.
#[inline]
pub(crate) fn metric_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - distance::dot(a, b),
        Metric::Dot => -distance::dot(a, b),
        Metric::L2 => distance::squared_l2(a, b),
    }
}

/// Lanes of the compact kernels: independent accumulators the compiler keeps in two AVX2 (or
/// four NEON) registers.
const LANES: usize = 16;

/// `Σ scaled[i] · codes[i]` over the common length.
#[inline]
pub(crate) fn dot_u8(scaled: &[f32], codes: &[u8]) -> f32 {
    let n = scaled.len().min(codes.len());
    let (scaled, codes) = (&scaled[..n], &codes[..n]);
    let mut sums = [0.0f32; LANES];
    let (chunks_a, chunks_b) = (scaled.chunks_exact(LANES), codes.chunks_exact(LANES));
    let tail: f32 =
        chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, &c)| x * f32::from(c)).sum();
    for (x, c) in chunks_a.zip(chunks_b) {
        for i in 0..LANES {
            sums[i] += x[i] * f32::from(c[i]);
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `a · b` for f32 `a` and f16 `b`, over the common length.
#[inline]
pub(crate) fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    fused_f16(a, b, |x, y| x * y)
}

/// `|a - b|²` for f32 `a` and f16 `b`, over the common length.
#[inline]
pub(crate) fn squared_l2_f16(a: &[f32], b: &[f16]) -> f32 {
    fused_f16(a, b, |x, y| (x - y) * (x - y))
}

/// `Σ term(a[i], b[i])` over sixteen independent lanes.
#[inline(always)]
fn fused_f16(a: &[f32], b: &[f16], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b): (&[f32], &[u16]) = (&a[..n], b[..n].reinterpret_cast());
    let mut sums = [0.0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| term(x, widen_bits(y)))
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        let mut wide = [0.0f32; LANES];
        for i in 0..LANES {
            wide[i] = widen_bits(y[i]);
        }
        for i in 0..LANES {
            sums[i] += term(x[i], wide[i]);
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// A finite f16 as f32, exactly, in integer shifts and one multiplication, which the compiler
/// vectorises when a chunk is widened into an array before it is summed (`half`'s conversion
/// called per chunk measured 2x slower). The magnitude bits shifted into an f32's place read as the value times
/// 2⁻¹¹²; multiplying by 2¹¹² restores it, subnormal f16 values included, and the sign is put
/// back. Infinity (a value past f16's range, 65504, when it was stored) reads as 65536; f16
/// never holds NaN here (embeddings are finite).
#[inline(always)]
fn widen(value: f16) -> f32 {
    widen_bits(value.to_bits())
}

/// [`widen`] of an f16's bits.
#[inline(always)]
fn widen_bits(bits: u16) -> f32 {
    let bits = u32::from(bits);
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | (bits & 0x8000) << 16)
}

#[cfg(test)]
mod tests;
