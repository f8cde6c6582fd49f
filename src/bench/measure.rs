//! Latency statistics and exact nearest neighbours, the two yardsticks of a bench row.

use std::time::Duration;

use crate::bench::dataset::Dataset;

/// Latencies of one row's timed calls, sorted.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    /// The statistics of `times` (in any order).
    pub fn new(mut times: Vec<Duration>) -> Self {
        times.sort_unstable();
        Self { sorted: times }
    }

    /// How many calls were timed.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no call was timed.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `q` quantile (nearest rank; zero when empty).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.sorted.len() as f64 * q) as usize).min(self.sorted.len() - 1);
        self.sorted[rank]
    }

    /// Calls per second of one client calling back to back: `len / sum of latencies`.
    pub fn ops_per_second(&self) -> f64 {
        let total: Duration = self.sorted.iter().sum();
        if total.is_zero() { 0.0 } else { self.sorted.len() as f64 / total.as_secs_f64() }
    }
}

/// The exact `k` nearest base rows of each query by cosine distance (the tenants' metric),
/// among the rows `keep` admits, best first; spread over the machine's cores.
pub fn exact_neighbours(
    data: &Dataset,
    queries: &[f32],
    k: usize,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<u32>> {
    let dimension = data.dimension.max(1);
    let inverse_norms: Vec<f32> =
        (0..data.len()).map(|i| 1.0 / dot(data.row(i), data.row(i)).sqrt().max(1e-30)).collect();
    let query_rows: Vec<&[f32]> = queries.chunks_exact(dimension).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let per_thread = query_rows.len().div_ceil(threads).max(1);
    let mut out = Vec::with_capacity(query_rows.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = query_rows
            .chunks(per_thread)
            .map(|chunk| {
                let inverse_norms = &inverse_norms;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|query| top_k(data, inverse_norms, query, k, keep))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            // A worker only panics if `keep` does; re-raise it rather than lose queries.
            match worker.join() {
                Ok(found) => out.extend(found),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out
}

fn top_k(
    data: &Dataset,
    inverse_norms: &[f32],
    query: &[f32],
    k: usize,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<u32> {
    // Ranking by cosine similarity needs no query norm; ties go to the lower row.
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, inverse_norm) in inverse_norms.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        let similarity = dot(data.row(i), query) * inverse_norm;
        if best.len() == k && best.last().is_some_and(|worst| similarity <= worst.0) {
            continue;
        }
        let at = best.partition_point(|b| b.0 >= similarity);
        best.insert(at, (similarity, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// A dot product the compiler vectorises (eight independent accumulators).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The fraction of `truth` (per query) that `found` holds, over all queries.
pub fn recall(found: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    let expected: usize = truth.iter().map(Vec::len).sum();
    let hits: usize =
        found.iter().zip(truth).map(|(f, t)| f.iter().filter(|id| t.contains(id)).count()).sum();
    if expected == 0 { 1.0 } else { hits as f64 / expected as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let latencies = Latencies::new((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(latencies.quantile(0.5), Duration::from_micros(51));
        assert_eq!(latencies.quantile(0.99), Duration::from_micros(100));
        assert!((latencies.ops_per_second() - 100.0 / 0.00505).abs() < 1.0);
    }

    #[test]
    fn exact_neighbours_agree_with_a_sort() {
        let data = Dataset::synthetic(500, 7, 24, 0, 3);
        let found = exact_neighbours(&data, &data.queries, 10, &|i| i % 3 != 0);
        for (q, found) in found.iter().enumerate() {
            let query = data.query(q);
            let mut all: Vec<(f32, u32)> = (0..data.len())
                .filter(|i| i % 3 != 0)
                .map(|i| (crate::Metric::Cosine.distance(query, data.row(i)), i as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let expected: Vec<u32> = all.iter().take(10).map(|(_, i)| *i).collect();
            assert_eq!(recall(std::slice::from_ref(found), &[expected]), 1.0);
        }
    }
}
