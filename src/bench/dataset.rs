//! Benchmark data: real embeddings and graphs in the big-ann-benchmarks layout, or clustered
//! synthetic data when none is at hand.
//!
//! A dataset directory holds `base.fbin` (`u32 n, u32 dim`, then `n*dim` little-endian `f32`),
//! `query.fbin` (same layout) and optionally `gt.ibin` (`u32 nq, u32 k`, then `nq*k` `i32` ids),
//! `edges.bin` (`u32 nodes, u32 edges`, then `edges` pairs of `u32`) and `texts.jsonl` (one
//! `{"id", "text"}` object per base row). Nothing here depends on a particular dataset.

use std::io::{BufRead, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// Vectors, queries and optionally a graph and texts to benchmark with.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The dimension of every vector.
    pub dimension: usize,
    /// Base vectors, row-major.
    pub base: Vec<f32>,
    /// Query vectors, row-major.
    pub queries: Vec<f32>,
    /// Ground-truth neighbour ids per query, best first, when given.
    pub ground_truth: Option<(usize, Vec<u32>)>,
    /// Directed edges between base rows.
    pub edges: Vec<(u32, u32)>,
    /// The text behind each base row, when given.
    pub texts: Vec<String>,
}

fn io(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::invalid("dataset", format!("{}: {error}", path.display()))
}

fn read_header(path: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    if bytes.len() < 8 {
        return Err(io(path, "shorter than its header"));
    }
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let m = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    Ok((n, m))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io(path, e))?;
    Ok(bytes)
}

/// Reads an `.fbin` file: `(dimension, rows)`.
///
/// # Errors
/// [`Error::Invalid`] if the file is missing or its size does not match its header.
pub fn read_fbin(path: &Path) -> Result<(usize, Vec<f32>)> {
    let bytes = read_file(path)?;
    let (n, dimension) = read_header(path, &bytes)?;
    let expected =
        n.checked_mul(dimension).and_then(|c| c.checked_mul(4)).and_then(|c| c.checked_add(8));
    if expected != Some(bytes.len()) || dimension == 0 {
        return Err(io(path, format!("{} bytes do not hold {n} x {dimension} f32", bytes.len())));
    }
    let rows =
        bytes[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((dimension, rows))
}

impl Dataset {
    /// Loads a dataset directory (see the module docs).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the file that is missing or malformed.
    pub fn load(dir: &Path) -> Result<Self> {
        let (dimension, base) = read_fbin(&dir.join("base.fbin"))?;
        let (query_dimension, queries) = read_fbin(&dir.join("query.fbin"))?;
        if query_dimension != dimension {
            return Err(io(
                dir,
                format!("queries have dimension {query_dimension}, base {dimension}"),
            ));
        }
        let n = base.len() / dimension;
        let gt_path = dir.join("gt.ibin");
        let ground_truth = if gt_path.exists() {
            let bytes = read_file(&gt_path)?;
            let (nq, k) = read_header(&gt_path, &bytes)?;
            let ids_end =
                nq.checked_mul(k).and_then(|n| n.checked_mul(4)).and_then(|n| n.checked_add(8));
            let Some(ids_end) = ids_end.filter(|end| *end <= bytes.len()) else {
                return Err(io(&gt_path, "its header asks for more ids than the file holds"));
            };
            if nq != queries.len() / dimension {
                return Err(io(&gt_path, "does not match the queries"));
            }
            let ids = bytes[8..ids_end]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some((k, ids))
        } else {
            None
        };
        let edges_path = dir.join("edges.bin");
        let mut edges = Vec::new();
        if edges_path.exists() {
            let bytes = read_file(&edges_path)?;
            let (_, count) = read_header(&edges_path, &bytes)?;
            if count.checked_mul(8).and_then(|n| n.checked_add(8)) != Some(bytes.len()) {
                return Err(io(&edges_path, "size does not match its header"));
            }
            for pair in bytes[8..].chunks_exact(8) {
                let from = u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
                let to = u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
                if from as usize >= n || to as usize >= n {
                    return Err(io(&edges_path, format!("edge {from} -> {to} outside {n} rows")));
                }
                edges.push((from, to));
            }
        }
        let texts_path = dir.join("texts.jsonl");
        let mut texts = Vec::new();
        if texts_path.exists() {
            let file = std::fs::File::open(&texts_path).map_err(|e| io(&texts_path, e))?;
            texts = vec![String::new(); n];
            for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| io(&texts_path, e))?;
                let value: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| io(&texts_path, format!("line {}: {e}", number + 1)))?;
                let id =
                    value.get("id").and_then(serde_json::Value::as_u64).unwrap_or(number as u64)
                        as usize;
                if let (Some(slot), Some(text)) =
                    (texts.get_mut(id), value.get("text").and_then(|t| t.as_str()))
                {
                    *slot = text.to_owned();
                }
            }
        }
        Ok(Self { dimension, base, queries, ground_truth, edges, texts })
    }

    /// `n` clustered unit vectors (and `queries` more near the same clusters), plus a power-law
    /// graph of average out-degree `degree`: reproducible from `seed`.
    pub fn synthetic(n: usize, queries: usize, dimension: usize, degree: usize, seed: u64) -> Self {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let clusters = (n / 100).clamp(1, 1000);
        let centers: Vec<f32> = (0..clusters * dimension).map(|_| rng.normal()).collect();
        let sample = |rng: &mut XorShift| {
            let c = rng.below(clusters);
            let mut v: Vec<f32> =
                (0..dimension).map(|d| centers[c * dimension + d] + 0.35 * rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
            v
        };
        let base: Vec<f32> = (0..n).flat_map(|_| sample(&mut rng)).collect();
        let query_rows: Vec<f32> = (0..queries).flat_map(|_| sample(&mut rng)).collect();
        // Preferential attachment by sampling targets with a heavy-tailed (Zipf-like) rank.
        let mut edges = Vec::with_capacity(n * degree);
        for from in 0..n as u32 {
            for _ in 0..degree {
                let u = rng.unit().max(1e-9);
                let to = ((n as f64) * u.powi(3)) as u32 % n as u32;
                if to != from {
                    edges.push((from, to));
                }
            }
        }
        Self { dimension, base, queries: query_rows, ground_truth: None, edges, texts: Vec::new() }
    }

    /// The number of base vectors.
    pub fn len(&self) -> usize {
        self.base.len() / self.dimension.max(1)
    }

    /// Whether there are no base vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Base row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.base[i * self.dimension..(i + 1) * self.dimension]
    }

    /// Query `i`.
    pub fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dimension..(i + 1) * self.dimension]
    }

    /// The number of queries.
    pub fn query_count(&self) -> usize {
        self.queries.len() / self.dimension.max(1)
    }
}

/// A tiny deterministic generator, so synthetic data needs no RNG dependency.
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fbin(rows: u32, dimension: u32) -> Vec<u8> {
        let mut bytes = [rows.to_le_bytes(), dimension.to_le_bytes()].concat();
        bytes.extend((0..rows * dimension).flat_map(|i| (i as f32).to_le_bytes()));
        bytes
    }

    /// Header counts that overflow, or promise more than the file holds, are an error naming
    /// the file, never an overflow or an out-of-bounds slice.
    #[test]
    fn lying_headers_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.fbin"), fbin(4, 2)).unwrap();
        std::fs::write(dir.path().join("query.fbin"), fbin(1, 2)).unwrap();
        for header in [[u32::MAX, u32::MAX], [1, u32::MAX], [1000, 1000]] {
            let gt = [header[0].to_le_bytes(), header[1].to_le_bytes()].concat();
            std::fs::write(dir.path().join("gt.ibin"), gt).unwrap();
            let Err(error) = Dataset::load(dir.path()) else { panic!("refused") };
            assert!(error.to_string().contains("gt.ibin"), "{error}");
        }
        std::fs::remove_file(dir.path().join("gt.ibin")).unwrap();
        let edges = [u32::MAX.to_le_bytes(), u32::MAX.to_le_bytes()].concat();
        std::fs::write(dir.path().join("edges.bin"), edges).unwrap();
        let Err(error) = Dataset::load(dir.path()) else { panic!("refused") };
        assert!(error.to_string().contains("edges.bin"), "{error}");
    }
}
