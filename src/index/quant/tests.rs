//! Unit tests of compact vectors: the kernels against sums in f64, the encodings against their
//! error bounds, and their bytes in a snapshot.
//!
//! Bounds: an f16 value is its f32 rounded to 11 significant bits, so it errs by at most
//! 2⁻¹¹ of itself (normal range; the test values stay there), and a dot product with it by at
//! most 2⁻¹¹·Σ|qᵢxᵢ|. An int8 value errs by at most half its dimension's step, so a dot
//! product by at most Σ|qᵢ|·stepᵢ/2. On top of that the f32 sums err by at most
//! 1e-5·Σ|terms| (see the bound in `distance.rs`'s tests).
use super::*;

/// A deterministic stream of floats in [-scale, scale) (xorshift), so failures reproduce.
struct Stream(u64);

impl Stream {
    fn float(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    fn vector(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.float(scale)).collect()
    }
}

const SUM_ERROR: f64 = 1e-5;

fn lengths() -> impl Iterator<Item = usize> {
    (0..=40).chain([63, 64, 65, 384, 768, 999])
}

#[test]
fn int8_kernel_matches_an_exact_sum() {
    let mut stream = Stream(0x1A2B_3C4D);
    for n in lengths() {
        let scaled = stream.vector(n, 3.0);
        let codes: Vec<u8> = (0..n).map(|i| ((i * 37 + n) % 256) as u8).collect();
        let terms = scaled.iter().zip(&codes).map(|(&x, &c)| f64::from(x) * f64::from(c));
        let exact: f64 = terms.clone().sum();
        let magnitude: f64 = terms.map(f64::abs).sum();
        let got = f64::from(dot_u8(&scaled, &codes));
        assert!((got - exact).abs() <= SUM_ERROR * magnitude, "n={n}: {got} vs {exact}");
    }
}

#[test]
fn f16_kernels_stay_within_the_rounding_bound() {
    let mut stream = Stream(0x0F16_0F16);
    for n in lengths() {
        for scale in [0.05f32, 1.0, 100.0] {
            let a = stream.vector(n, scale);
            // Kept away from zero so every value is a normal f16 at every scale.
            let b: Vec<f32> = stream.vector(n, scale).iter().map(|x| x + scale * 1.5).collect();
            let b16: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let products = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y));
            let exact: f64 = products.clone().sum();
            let magnitude: f64 = products.map(f64::abs).sum();
            let got = f64::from(dot_f16(&a, &b16));
            let bound = (2f64.powi(-11) + SUM_ERROR) * magnitude;
            assert!((got - exact).abs() <= bound, "dot n={n}: {got} vs {exact} ({bound})");

            let exact_l2: f64 =
                a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
            // |(x - y')² - (x - y)²| = |y - y'|·|2x - y - y'| ≤ 2⁻¹¹|y|·(2|x - y| + 2⁻¹¹|y|).
            let l2_bound: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| {
                    let (x, y) = (f64::from(x), f64::from(y));
                    let e = 2f64.powi(-11) * y.abs();
                    e * (2.0 * (x - y).abs() + e)
                })
                .sum::<f64>()
                + SUM_ERROR * exact_l2;
            let got = f64::from(squared_l2_f16(&a, &b16));
            assert!((got - exact_l2).abs() <= l2_bound, "l2 n={n}: {got} vs {exact_l2}");
        }
    }
}

/// Trained int8 vectors of `points`, and the quantizer's steps.
fn trained(points: &[Vec<f32>]) -> (Vectors, Vec<f32>) {
    let dimension = points[0].len();
    let mut vectors = Vectors::new(dimension, VectorPrecision::Int8);
    for p in points {
        vectors.push(p);
    }
    let Store::Int8 { scale, .. } = &vectors.store else { panic!("not trained") };
    let steps = scale.step.clone();
    (vectors, steps)
}

#[test]
fn int8_distances_stay_within_half_a_step_per_dimension() {
    let mut stream = Stream(0x0108_0108);
    let dimension = 48;
    let points: Vec<Vec<f32>> =
        (0..TRAIN_POINTS + 50).map(|_| stream.vector(dimension, 0.2)).collect();
    let (vectors, steps) = trained(&points);
    assert!(vectors.is_compact());
    for _ in 0..20 {
        let q = stream.vector(dimension, 0.2);
        let query = vectors.query(Cow::Borrowed(&q));
        let bound: f64 = q.iter().zip(&steps).map(|(x, s)| f64::from(x.abs() * s) / 2.0).sum();
        for (point, p) in points.iter().enumerate().step_by(37) {
            let exact: f64 = q.iter().zip(p).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            let magnitude: f64 = q.iter().zip(p).map(|(&x, &y)| f64::from((x * y).abs())).sum();
            let got = -f64::from(vectors.distance(Metric::Dot, &query, point));
            let allowed = bound + SUM_ERROR * (magnitude + 1.0);
            assert!((got - exact).abs() <= allowed, "{got} vs {exact} ({allowed})");
            let decoded = vectors.decoded(point);
            for ((d, x), s) in decoded.iter().zip(p).zip(&steps) {
                assert!((d - x).abs() <= s / 2.0 + 1e-6, "{d} vs {x} step {s}");
            }
            // L2 through |q|² + |x|² - 2q·x agrees with the decoded vector's distance.
            let l2 = vectors.distance(Metric::L2, &query, point);
            let direct = distance::squared_l2(&q, &decoded);
            assert!((l2 - direct).abs() <= 1e-4 * (1.0 + direct), "{l2} vs {direct}");
        }
    }
}

#[test]
fn int8_keeps_f32_until_trained_and_clamps_outliers() {
    let mut stream = Stream(99);
    let mut vectors = Vectors::new(8, VectorPrecision::Int8);
    for _ in 0..TRAIN_POINTS - 1 {
        vectors.push(&stream.vector(8, 1.0));
    }
    assert!(!vectors.is_compact(), "trained before TRAIN_POINTS");
    vectors.push(&stream.vector(8, 1.0));
    assert!(vectors.is_compact());
    // Far outside the trained range: clamped to the range's ends, never wrapped.
    vectors.push(&[100.0, -100.0, 0.0, 0.0, 0.0, 0.0, 0.0, f32::NAN]);
    let last = vectors.decoded(TRAIN_POINTS);
    assert!(last[0] > 0.9 && last[0] <= 1.0, "{}", last[0]);
    assert!(last[1] < -0.9 && last[1] >= -1.0, "{}", last[1]);
}

#[test]
fn every_precision_round_trips_through_its_bytes() {
    let mut stream = Stream(7);
    for precision in [VectorPrecision::F32, VectorPrecision::F16, VectorPrecision::Int8] {
        for count in [0, 10, TRAIN_POINTS + 3] {
            let mut vectors = Vectors::new(24, precision);
            for _ in 0..count {
                vectors.push(&stream.vector(24, 0.5));
            }
            let mut bytes = Vec::new();
            vectors.encode(&mut bytes);
            bytes.extend_from_slice(b"rest");
            let (back, used) = Vectors::decode(&bytes, 24, count).expect("decodes");
            assert_eq!(used, bytes.len() - 4, "{precision} {count}");
            assert_eq!(back.precision(), precision);
            assert_eq!(back.is_compact(), vectors.is_compact());
            let query = stream.vector(24, 0.5);
            let (q1, q2) =
                (vectors.query(Cow::Borrowed(&query)), back.query(Cow::Borrowed(&query)));
            for point in 0..count {
                assert_eq!(vectors.decoded(point), back.decoded(point));
                for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
                    let (a, b) =
                        (vectors.distance(metric, &q1, point), back.distance(metric, &q2, point));
                    assert_eq!(a.to_bits(), b.to_bits(), "{precision} {metric:?}");
                }
            }
            // Truncated or re-tagged bytes never decode as something else.
            assert!(
                Vectors::decode(&bytes[..used.saturating_sub(1).max(1)], 24, count.max(1))
                    .is_none()
            );
            let mut retagged = bytes.clone();
            retagged[1] = 3;
            assert!(Vectors::decode(&retagged, 24, count).is_none());
        }
    }
}

#[test]
fn precisions_parse_from_their_names() {
    for precision in [VectorPrecision::F32, VectorPrecision::F16, VectorPrecision::Int8] {
        assert_eq!(precision.as_str().parse::<VectorPrecision>().ok(), Some(precision));
        assert_eq!(
            precision.to_string().to_uppercase().parse::<VectorPrecision>().ok(),
            Some(precision)
        );
    }
    assert!("int4".parse::<VectorPrecision>().is_err());
}

#[test]
fn widening_matches_half_on_every_finite_f16() {
    for bits in 0..=u16::MAX {
        let value = f16::from_bits(bits);
        if value.is_finite() {
            assert_eq!(widen(value).to_bits(), value.to_f32().to_bits(), "{bits:#06x}");
        } else if value.is_infinite() {
            assert_eq!(widen(value), 65536.0f32.copysign(value.to_f32()), "{bits:#06x}");
        }
    }
}
