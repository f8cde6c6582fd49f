//! Dot products and squared distances, the inner loop of vector search.
//!
//! Apart from libc calls that lower a thread's priority (`vector.rs`) or keep the sealing
//! helper off its caller's CPU (`sealing.rs`), this and `gcm.rs` (CLMUL intrinsics for sealing
//! short values) are the modules of percolate that use `unsafe`: on x86-64 this one calls
//! AVX2+FMA intrinsics after checking at run time that the CPU
//! has them (the build targets baseline x86-64, where the compiler may only use SSE2). Every
//! `unsafe` block is a call to a `#[target_feature]` function guarded by that check, and the
//! intrinsics read only inside the slices' bounds (`chunks_exact` gives 8-element chunks; the
//! tail is summed safely). Elsewhere the portable loop below, written with eight independent
//! accumulators so the compiler can vectorise it, is used.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

/// Which implementation this CPU runs, decided once.
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// `a · b` over the common length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); `dot_avx2` reads only
        // within `a` and `b`, which have equal lengths.
        return unsafe { x86::dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// `|a - b|²` over the common length.
#[inline]
pub(crate) fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as in `dot`.
        return unsafe { x86::squared_l2_avx2(a, b) };
    }
    squared_l2_portable(a, b)
}

/// Hints the CPU to start loading the first two cache lines of `data` (a vector, or a row of
/// links) into cache; the hardware prefetcher follows the rest of a sequential read. A hint
/// only: it reads nothing and cannot fault.
#[inline]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = data.as_ptr().cast::<i8>();
        // SAFETY: PREFETCHT0 is a hint that never faults, whatever the address, and reads no
        // memory architecturally; `wrapping_add` computes the second line's address without
        // asserting it is in bounds (it is for rows of 64 bytes or more; past the end of a
        // shorter one the hint is merely wasted).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(start);
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

fn squared_l2_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 =
        chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            let d = x[i] - y[i];
            sums[i] += d * d;
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let high = _mm256_extractf128_ps(v, 1);
        let low = _mm256_castps256_ps128(v);
        let sum = _mm_add_ps(high, low);
        let shuffled = _mm_movehdup_ps(sum);
        let sums = _mm_add_ps(sum, shuffled);
        let high64 = _mm_movehl_ps(shuffled, sums);
        _mm_cvtss_f32(_mm_add_ss(sums, high64))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let (pairs_a, pairs_b) = (a.chunks_exact(16), b.chunks_exact(16));
        let (rest_a, rest_b) = (pairs_a.remainder(), pairs_b.remainder());
        for (x, y) in pairs_a.zip(pairs_b) {
            // SAFETY: each chunk holds 16 f32; the loads read x[0..8], x[8..16].
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(x.as_ptr().add(8)),
                    _mm256_loadu_ps(y.as_ptr().add(8)),
                    acc1,
                );
            }
        }
        let tail: f32 = rest_a.iter().zip(rest_b).map(|(x, y)| x * y).sum();
        horizontal_sum(_mm256_add_ps(acc0, acc1)) + tail
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn squared_l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let (pairs_a, pairs_b) = (a.chunks_exact(16), b.chunks_exact(16));
        let (rest_a, rest_b) = (pairs_a.remainder(), pairs_b.remainder());
        for (x, y) in pairs_a.zip(pairs_b) {
            // SAFETY: each chunk holds 16 f32; the loads read x[0..8], x[8..16].
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(x.as_ptr().add(8)),
                    _mm256_loadu_ps(y.as_ptr().add(8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            }
        }
        let tail: f32 = rest_a.iter().zip(rest_b).map(|(x, y)| (x - y) * (x - y)).sum();
        horizontal_sum(_mm256_add_ps(acc0, acc1)) + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_the_plain_sum() {
        for n in [0, 1, 7, 8, 15, 16, 17, 33, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let plain_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((dot(&a, &b) - plain_dot).abs() < 1e-3, "dot n={n}");
            assert!((squared_l2(&a, &b) - plain_l2).abs() < 1e-3, "l2 n={n}");
            assert!((dot_portable(&a, &b) - plain_dot).abs() < 1e-3);
            assert!((squared_l2_portable(&a, &b) - plain_l2).abs() < 1e-3);
        }
    }
}
