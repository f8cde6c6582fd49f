//! Dot products and squared distances, the inner loop of vector search, and the prefetch hint
//! the HNSW walk gives before it reads a vector or a row of links.
//!
//! One kernel per architecture, chosen at compile time or once at run time:
//! - x86-64: AVX2+FMA intrinsics, after checking once at run time that the CPU has them
//!   (downstream builds target baseline x86-64, where the compiler may only use SSE2; with
//!   percolate's own `.cargo/config.toml` the check is constant and the kernels inline).
//! - aarch64: NEON intrinsics. NEON is part of every aarch64 target Rust supports (Linux,
//!   Android, macOS, iOS), so there is nothing to detect.
//! - elsewhere: the portable loop below, written with eight independent accumulators so the
//!   compiler can vectorise it. It is also the reference the SIMD kernels are tested against.
//!
//! Each architecture writes its loop once, in a macro; `dot` and `squared_l2` differ only in
//! the step that folds one lane group into an accumulator and in the scalar tail's term.
//!
//! Apart from libc's priority call in `live.rs`, this is the module of percolate that uses
//! `unsafe`. Every block is either a load that stays inside the slices (`chunks_exact` gives
//! 16-element chunks; the tail of fewer than 16 is summed safely), a call to a
//! `#[target_feature]` function on a CPU known to have the feature (checked at run time on
//! x86-64, guaranteed by the target on aarch64), or a prefetch hint, which never faults and
//! reads nothing.
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

/// A public kernel: slices both inputs to their common length, then runs the AVX2+FMA kernel
/// `x86::$name` where the CPU has it, `neon::$name` on aarch64, else `portable::$name`.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked above); the kernel reads only
                // within `a` and `b`, which have equal lengths.
                return unsafe { x86::$name(a, b) };
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is enabled on every aarch64 target (asserted at compile time in
            // `neon`); the kernel reads only within `a` and `b`, which have equal lengths.
            unsafe {
                neon::$name(a, b)
            }
            #[cfg(not(target_arch = "aarch64"))]
            {
                portable::$name(a, b)
            }
        }
    };
}

dispatch!(
    /// `a · b` over the common length.
    dot
);
dispatch!(
    /// `|a - b|²` over the common length.
    squared_l2
);

/// Hints the CPU to start loading the first two cache lines of `data` (a vector, or a row of
/// links) into cache; the hardware prefetcher follows the rest of a sequential read. A hint
/// only: it reads nothing and cannot fault.
#[inline]
pub(crate) fn prefetch<T>(data: &[T]) {
    let start = data.as_ptr().cast::<u8>();
    // The second line's address is computed with `wrapping_add`, which does not assert it is
    // in bounds: it is for rows of 64 bytes or more; past the end of a shorter one the hint
    // is merely wasted.
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = start.cast::<i8>();
        // SAFETY: PREFETCHT0 is a hint that never faults, whatever the address, and reads no
        // memory architecturally.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(start);
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(64));
        }
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM PLDL1KEEP (prefetch for load into L1, keep) is a hint: the architecture
    // never raises a fault for it, whatever the address, and it changes no register, flag or
    // memory. 64 bytes is the line of most aarch64 cores; on Apple's 128-byte lines both hints
    // may fall in one line, which costs nothing.
    unsafe {
        std::arch::asm!(
            "prfm pldl1keep, [{first}]",
            "prfm pldl1keep, [{second}]",
            first = in(reg) start,
            second = in(reg) start.wrapping_add(64),
            options(nostack, preserves_flags, readonly),
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = start;
}

// The kernels on targets without SIMD code here, and the reference the SIMD kernels are tested
// against everywhere.
#[cfg(any(test, not(target_arch = "aarch64")))]
mod portable {
    /// A kernel over eight independent accumulators: `$term` is one lane's contribution.
    macro_rules! kernel {
        ($name:ident, |$x:ident, $y:ident| $term:expr) => {
            pub(super) fn $name(a: &[f32], b: &[f32]) -> f32 {
                let mut sums = [0.0f32; 8];
                let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
                let tail: f32 = chunks_a
                    .remainder()
                    .iter()
                    .zip(chunks_b.remainder())
                    .map(|(&$x, &$y)| $term)
                    .sum();
                for (x, y) in chunks_a.zip(chunks_b) {
                    for i in 0..8 {
                        let ($x, $y) = (x[i], y[i]);
                        sums[i] += $term;
                    }
                }
                sums.iter().sum::<f32>() + tail
            }
        };
    }

    kernel!(dot, |x, y| x * y);
    kernel!(squared_l2, |x, y| (x - y) * (x - y));
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

    /// A kernel over two 8-lane accumulators: `$step` folds one pair of 8-lane loads into
    /// an accumulator, `$term` is one element's contribution to the scalar tail.
    macro_rules! kernel {
        (
            $name:ident,
            |$acc:ident, $x:ident, $y:ident| $step:expr,
            |$tx:ident, $ty:ident| $term:expr
        ) => {
            /// # Safety
            /// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let (pairs_a, pairs_b) = (a.chunks_exact(16), b.chunks_exact(16));
                let (rest_a, rest_b) = (pairs_a.remainder(), pairs_b.remainder());
                for (x, y) in pairs_a.zip(pairs_b) {
                    // SAFETY: each chunk holds 16 f32; the loads read x[0..8], x[8..16] and
                    // the same of `y`.
                    let (x0, y0, x1, y1) = unsafe {
                        (
                            _mm256_loadu_ps(x.as_ptr()),
                            _mm256_loadu_ps(y.as_ptr()),
                            _mm256_loadu_ps(x.as_ptr().add(8)),
                            _mm256_loadu_ps(y.as_ptr().add(8)),
                        )
                    };
                    acc0 = {
                        let ($acc, $x, $y) = (acc0, x0, y0);
                        $step
                    };
                    acc1 = {
                        let ($acc, $x, $y) = (acc1, x1, y1);
                        $step
                    };
                }
                let tail: f32 = rest_a.iter().zip(rest_b).map(|(&$tx, &$ty)| $term).sum();
                horizontal_sum(_mm256_add_ps(acc0, acc1)) + tail
            }
        };
    }

    kernel!(dot, |acc, x, y| _mm256_fmadd_ps(x, y, acc), |x, y| x * y);
    kernel!(
        squared_l2,
        |acc, x, y| {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        },
        |x, y| (x - y) * (x - y)
    );
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! Four 4-lane accumulators per kernel: an FMA has a latency of about four cycles and most
    //! aarch64 cores issue two per cycle, so independent chains keep the pipes busy.
    use std::arch::aarch64::*;

    // The kernels are `#[target_feature(enable = "neon")]` so the intrinsics are safe to call
    // inside them; their callers may call them unconditionally only because every aarch64
    // target enables NEON, which this keeps true.
    #[cfg(not(target_feature = "neon"))]
    compile_error!("percolate's aarch64 distance kernels need NEON, a baseline aarch64 feature");

    /// A kernel over four 4-lane accumulators: `$step` folds one pair of 4-lane loads into an
    /// accumulator, `$term` is one element's contribution to the scalar tail. The kernel
    /// expects `a.len() == b.len()` (the callers slice both to the common length).
    macro_rules! kernel {
        (
            $name:ident,
            |$acc:ident, $x:ident, $y:ident| $step:expr,
            |$tx:ident, $ty:ident| $term:expr
        ) => {
            #[inline]
            #[target_feature(enable = "neon")]
            pub(super) fn $name(a: &[f32], b: &[f32]) -> f32 {
                let mut acc = [vdupq_n_f32(0.0); 4];
                let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
                let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
                for (x, y) in chunks_a.zip(chunks_b) {
                    for (lane, sum) in acc.iter_mut().enumerate() {
                        // SAFETY: each chunk holds 16 f32 and `lane < 4`, so the loads read
                        // x[4 * lane..4 * lane + 4] and the same of `y`, inside the chunks;
                        // VLD1 has no alignment requirement beyond the element's.
                        let ($x, $y) = unsafe {
                            (
                                vld1q_f32(x.as_ptr().add(4 * lane)),
                                vld1q_f32(y.as_ptr().add(4 * lane)),
                            )
                        };
                        let $acc = *sum;
                        *sum = $step;
                    }
                }
                let tail: f32 = rest_a.iter().zip(rest_b).map(|(&$tx, &$ty)| $term).sum();
                vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]))) + tail
            }
        };
    }

    kernel!(dot, |acc, x, y| vfmaq_f32(acc, x, y), |x, y| x * y);
    kernel!(
        squared_l2,
        |acc, x, y| {
            let d = vsubq_f32(x, y);
            vfmaq_f32(acc, d, d)
        },
        |x, y| (x - y) * (x - y)
    );
}

#[cfg(test)]
mod tests {
    //! The kernel `dot` and `squared_l2` dispatch to (AVX2+FMA, NEON or the portable loop) is
    //! checked against the portable loop and against an exact sum in f64.
    //!
    //! Tolerance: summing m f32 terms in sequence errs by at most (m - 1)·u·Σ|terms|, u = 2⁻²⁴,
    //! and forming a term (a product, or a rounded difference squared) adds a few u of it. No
    //! kernel here has a chain longer than 1000 / 8 + 8 + 8 < 150 additions, so each is within
    //! 150·u·Σ|terms| < 1e-5·Σ|terms| of the exact sum, and two kernels within 2e-5·Σ|terms| of
    //! each other. Random data errs far less; these are the bounds, not typical values.
    use super::*;

    /// Relative tolerance of one kernel against the exact sum, as a fraction of Σ|terms|.
    const TO_EXACT: f64 = 1e-5;
    /// Relative tolerance of one kernel against another.
    const TO_EACH_OTHER: f64 = 2e-5;

    /// splitmix64: a deterministic stream, so a failure reproduces from its seed.
    struct Stream(u64);

    impl Stream {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, bound).
        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        /// Uniform in [-scale, scale).
        fn float(&mut self, scale: f32) -> f32 {
            ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        }
    }

    /// Every length up to 40 (each remainder of the 4-, 8- and 16-lane loops, around the first
    /// full chunks), the embedding sizes in use, and 300 lengths drawn from 0..1000.
    fn lengths(stream: &mut Stream) -> Vec<usize> {
        let mut lengths: Vec<usize> = (0..=40).chain([384, 768, 999]).collect();
        lengths.extend((0..300).map(|_| stream.below(1000)));
        lengths
    }

    fn check(what: &str, n: usize, kernel: f32, portable: f32, exact: f64, magnitude: f64) {
        let (kernel, portable) = (f64::from(kernel), f64::from(portable));
        assert!(
            (kernel - exact).abs() <= TO_EXACT * magnitude,
            "{what} n={n}: kernel {kernel} exact {exact} (Σ|terms| {magnitude})"
        );
        assert!(
            (portable - exact).abs() <= TO_EXACT * magnitude,
            "{what} n={n}: portable {portable} exact {exact} (Σ|terms| {magnitude})"
        );
        assert!(
            (kernel - portable).abs() <= TO_EACH_OTHER * magnitude,
            "{what} n={n}: kernel {kernel} portable {portable} (Σ|terms| {magnitude})"
        );
    }

    #[test]
    fn kernels_match_the_scalar_loop_on_random_lengths() {
        let mut stream = Stream(0x5EED_0025);
        for n in lengths(&mut stream) {
            // Values of mixed sign over four orders of magnitude, as unnormalised embeddings
            // and L2 queries far from the data have.
            let scale = [0.01, 1.0, 10.0, 100.0][stream.below(4)];
            let a: Vec<f32> = (0..n).map(|_| stream.float(scale)).collect();
            let b: Vec<f32> = (0..n).map(|_| stream.float(scale)).collect();

            let products = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y));
            let exact_dot: f64 = products.clone().sum();
            let dot_magnitude: f64 = products.map(f64::abs).sum();
            check("dot", n, dot(&a, &b), portable::dot(&a, &b), exact_dot, dot_magnitude);

            let exact_l2: f64 =
                a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
            let l2 = squared_l2(&a, &b);
            check("l2", n, l2, portable::squared_l2(&a, &b), exact_l2, exact_l2);
            assert!(l2 >= 0.0, "l2 n={n}: {l2} is negative");
        }
    }

    #[test]
    fn kernels_are_exact_on_small_integers() {
        // Products and sums of small integers are exact in f32 whatever the order or fusing,
        // so every kernel must give exactly the same number, here for each tail length.
        for n in 0..=70 {
            let a: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
            let exact_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let exact_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert_eq!(dot(&a, &b), exact_dot, "dot n={n}");
            assert_eq!(squared_l2(&a, &b), exact_l2, "l2 n={n}");
        }
    }

    #[test]
    fn kernels_use_the_common_length() {
        let mut stream = Stream(7);
        let a: Vec<f32> = (0..100).map(|_| stream.float(1.0)).collect();
        let b: Vec<f32> = (0..37).map(|_| stream.float(1.0)).collect();
        assert_eq!(dot(&a, &b), dot(&a[..37], &b));
        assert_eq!(dot(&b, &a), dot(&b, &a[..37]));
        assert_eq!(squared_l2(&a, &b), squared_l2(&a[..37], &b));
        assert_eq!(dot(&a, &[]), 0.0);
    }
}
