//! Unit tests of the HNSW graph: layout, encoding, recall.
use super::*;

#[test]
fn rows_cross_chunks_without_slack_or_loss() {
    let width = 5;
    let n = 2 * CHUNK_ROWS + 300;
    let row = |i: usize| (0..width).map(|j| (i * width + j) as u32).collect::<Vec<u32>>();
    let mut rows = Rows::new(width);
    for i in 0..n {
        rows.push(&row(i));
    }
    assert_eq!(rows.len, n);
    assert!((0..n).all(|i| rows.row(i) == row(i).as_slice()));
    // Full chunks are exact; only the last may hold unused room, and never more than a chunk.
    let held: usize = rows.chunks.iter().map(Vec::capacity).sum();
    assert!(held >= n * width && held <= (n + CHUNK_ROWS) * width, "{held}");
    assert!(rows.chunks[..2].iter().all(|c| c.capacity() == CHUNK_ROWS * width));

    // Decoding gives the same rows, and pushing after it keeps chunks at most full.
    let bytes: Vec<u8> = rows.elements().flat_map(|x| x.to_le_bytes()).collect();
    let mut back =
        Rows::from_le_bytes(width, &bytes, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    assert_eq!(back.len, n);
    for i in n..n + CHUNK_ROWS {
        back.push(&row(i));
    }
    assert!((0..n + CHUNK_ROWS).all(|i| back.row(i) == row(i).as_slice()));
    assert!(back.chunks.iter().all(|c| c.capacity() <= CHUNK_ROWS * width));
    back.row_mut(CHUNK_ROWS + 1)[2] = 7;
    assert_eq!(back.row(CHUNK_ROWS + 1)[2], 7);
}

fn data(n: usize, dimension: usize) -> Vec<Vec<f32>> {
    (0..n).map(|i| crate::index::test_vector(dimension, i as u64 + 1)).collect()
}

/// The exact scan of pending points and the graph must see the same vectors: the one-pass
/// copy equals the in-place preparation to the bit, zero vectors included.
#[test]
fn prepared_copies_match_in_place_preparation() {
    let mut vectors = data(200, 37);
    vectors.push(vec![0.0; 37]);
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        for v in &vectors {
            let copy = prepared_copy(metric, v);
            let in_place = prepare_in_place(metric, v.clone());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&copy), bits(&in_place), "{metric:?}");
        }
    }
}

fn recall(metric: Metric) -> f64 {
    let points = data(3000, 32);
    let mut graph = Hnsw::new(32, metric, HnswParams::default());
    for p in &points {
        graph.insert(p);
    }
    let queries = data(50, 32);
    let mut hits = 0;
    for q in &queries {
        let prepared = graph.prepare(q);
        let mut exact: Vec<Scored> = (0..points.len() as u32)
            .map(|p| Scored { distance: graph.distance(&prepared, p), point: p })
            .collect();
        exact.sort_unstable();
        let truth: Vec<u32> = exact[..10].iter().map(|s| s.point).collect();
        let found = graph.search(q, 10, 64, |_| true);
        hits += found.iter().filter(|s| truth.contains(&s.point)).count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

#[test]
fn recall_is_high_under_every_metric() {
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let r = recall(metric);
        assert!(r > 0.9, "{metric:?}: recall {r}");
    }
}

#[test]
fn a_graph_survives_encoding_and_damage_is_refused() {
    let points = data(300, 8);
    let mut graph = Hnsw::new(8, Metric::Cosine, HnswParams::default());
    for p in &points {
        graph.insert(p);
    }
    graph.delete(5);
    let mut bytes = Vec::new();
    graph.encode(&mut bytes);
    let (copy, used) = Hnsw::decode(&bytes).expect("decodes");
    assert_eq!(used, bytes.len());
    let a = graph.search(&points[9], 5, 32, |_| true);
    let b = copy.search(&points[9], 5, 32, |_| true);
    assert_eq!(a, b);
    assert!(copy.is_deleted(5));
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(Hnsw::decode(&bytes[..cut]).is_none(), "truncated at {cut}");
    }
    let mut bad_link = bytes.clone();
    let links_start = 4 + 1 + 4 * 6 + 8 + 300 * 8 * 4;
    bad_link[links_start + 4..links_start + 8].copy_from_slice(&999_999u32.to_le_bytes());
    assert!(Hnsw::decode(&bad_link).is_none(), "a link outside the graph is refused");
}

#[test]
fn deleted_and_rejected_points_never_come_back() {
    let points = data(500, 8);
    let mut graph = Hnsw::new(8, Metric::L2, HnswParams::default());
    for p in &points {
        graph.insert(p);
    }
    for p in (0..500).step_by(2) {
        graph.delete(p);
    }
    let found = graph.search(&points[0], 20, 64, |p| p % 3 != 0);
    assert_eq!(found.len(), 20);
    assert!(found.iter().all(|s| s.point % 2 == 1 && s.point % 3 != 0));
}
