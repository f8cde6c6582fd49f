//! Unit tests of the live index: inbox, compaction, snapshots.
use super::*;
use crate::index::quant::metric_distance;

/// For an index over f32 vectors, which never asks for full vectors.
fn no_full(ids: &[ResourceId]) -> Vec<Option<Vec<f32>>> {
    vec![None; ids.len()]
}

fn vector(seed: u64) -> Vec<f32> {
    crate::index::test_vector(16, seed)
}

/// An index of `n` 16-d points (point `i` is `vector(i)`, without metadata), every one in the
/// graph, and their ids in order.
fn indexed(
    metric: Metric,
    precision: VectorPrecision,
    n: u64,
) -> (Arc<VectorIndex>, Vec<ResourceId>) {
    let index = VectorIndex::new(16, metric, HnswParams::default(), precision, 0, None);
    let ids: Vec<ResourceId> = (0..n).map(|_| ResourceId::new()).collect();
    index.apply(
        ids.iter()
            .zip(0..)
            .map(|(id, i)| VectorChange::Upsert {
                id: *id,
                vector: vector(i),
                metadata: Arc::default(),
            })
            .collect(),
    );
    index.wait_indexed();
    (index, ids)
}

#[test]
fn changes_waiting_in_the_inbox_supersede_the_graph() {
    let index =
        VectorIndex::new(16, Metric::Cosine, HnswParams::default(), VectorPrecision::F32, 0, None);
    let ids: Vec<ResourceId> = (0..300).map(|_| ResourceId::new()).collect();
    let upsert = |id: ResourceId, seed: u64, tag: i64| VectorChange::Upsert {
        id,
        vector: vector(seed),
        metadata: Arc::new(serde_json::json!({ "tag": tag }).as_object().unwrap().clone()),
    };
    index.apply(ids.iter().enumerate().map(|(i, id)| upsert(*id, i as u64, 0)).collect());
    index.wait_indexed();
    // Without letting the indexer run: hold its maintenance lock, so the changes stay in
    // the inbox while we search.
    let _hold = index.maintenance.lock();
    let tag_two = Arc::new(serde_json::json!({ "tag": 2 }).as_object().unwrap().clone());
    index.apply(vec![
        upsert(ids[0], 1000, 1),
        VectorChange::Remove { id: ids[1] },
        // Prepared off the commit path, as a batch does.
        index.prepare(ids[2], &vector(2), &tag_two),
    ]);
    assert!(!index.inbox.read().changes.is_empty());
    // Stats count the inbox as a drain would apply it: three graph points superseded,
    // two of them pending again.
    assert_eq!(index.stats(), (300, 2, 3));
    // ids[0] has a new vector: a search by its old vector does not find it, one by the new does.
    assert!(index.search(&vector(0), 5, None, None, &no_full).iter().all(|h| h.id != ids[0]));
    assert_eq!(index.search(&vector(1000), 1, None, None, &no_full)[0].id, ids[0]);
    // ids[1] is gone, under every search path.
    let filter = Filter::parse(&serde_json::json!({ "tag": 0 })).unwrap();
    for filter in [None, Some(&filter)] {
        assert!(
            index.search(&vector(1), 300, None, filter, &no_full).iter().all(|h| h.id != ids[1])
        );
    }
    // ids[2] kept its vector but changed its metadata: filters see the new metadata.
    let two = Filter::parse(&serde_json::json!({ "tag": 2 })).unwrap();
    let hits = index.search(&vector(2), 10, None, Some(&two), &no_full);
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![ids[2]]);
    let zero = index.search(&vector(2), 300, None, Some(&filter), &no_full);
    assert!(zero.iter().all(|h| h.id != ids[2] && h.id != ids[0]));
    assert_eq!(zero.len(), 297);
    index.drain(&mut index.state.write());
    assert!(index.inbox.read().changes.is_empty());
    assert_eq!(index.stats(), (300, 2, 3));
}

#[test]
fn compaction_keeps_every_live_point_findable() {
    let (index, ids) = indexed(Metric::Cosine, VectorPrecision::F32, 2000);
    index.apply(ids.iter().step_by(2).map(|id| VectorChange::Remove { id: *id }).collect());
    index.wait_indexed();
    let (graph, pending, tombstones) = index.stats();
    assert_eq!((graph, pending, tombstones), (1000, 0, 0));
    for (i, id) in ids.iter().enumerate().skip(1).step_by(2).take(50) {
        let hits = index.search(&vector(i as u64), 1, None, None, &no_full);
        assert_eq!(hits.first().map(|h| h.id), Some(*id), "point {i}");
    }
}

/// The hashes are stored in snapshots: a change to them must come with a new format.
#[test]
fn hashes_are_pinned() {
    let v: Vec<f32> = (0..7).map(|i| i as f32 * 0.5 - 1.0).collect();
    assert_eq!(hash_vector(&v), PINNED_VECTOR_HASH);
    assert_eq!(hash_bytes(b"percolate snapshot"), PINNED_BYTES_HASH);
    // Every word counts, in place, whichever lane it lands in.
    let mut swapped = v.clone();
    swapped.swap(0, 2);
    assert_ne!(hash_vector(&swapped), hash_vector(&v));
    assert_ne!(hash_vector(&v[..6]), hash_vector(&v));
    assert_ne!(hash_bytes(b"percolate snapshoT"), PINNED_BYTES_HASH);
}

const PINNED_VECTOR_HASH: u64 = 5_563_758_725_442_807_478;
const PINNED_BYTES_HASH: u64 = 3_547_941_887_860_245_957;

/// The indexer writes a snapshot by itself once enough of the graph changed, and only
/// then; a tenant being deleted gets none.
#[test]
fn the_indexer_snapshots_a_graph_that_changed_enough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SNAPSHOT_FILE);
    let discarded = Arc::new(AtomicBool::new(false));
    let persist = Persist {
        dir: dir.path().to_path_buf(),
        crypto: None,
        discarded: Arc::clone(&discarded),
        lower_priority: false,
        read_only: false,
    };
    let index = VectorIndex::open(
        persist,
        None,
        16,
        Metric::Cosine,
        HnswParams::default(),
        VectorPrecision::F32,
        0,
        vec![],
    );
    let upserts = |range: std::ops::Range<u64>| -> Vec<VectorChange> {
        range
            .map(|i| VectorChange::Upsert {
                id: ResourceId::new(),
                vector: vector(i),
                metadata: Arc::default(),
            })
            .collect()
    };
    index.apply(upserts(0..SNAPSHOT_MIN_CHANGES as u64 - 1));
    index.wait_indexed();
    index.snapshot_if_due(true);
    assert!(!path.exists(), "too few changes for a snapshot");
    index.apply(upserts(SNAPSHOT_MIN_CHANGES as u64..SNAPSHOT_MIN_CHANGES as u64 + 2));
    index.wait_indexed();
    // The background indexer may have written it already (or be writing it: the lock
    // waits for that); if not, this call does.
    index.snapshot_if_due(true);
    drop(index.snapshot_lock.lock());
    assert!(path.exists(), "a snapshot once enough changed");
    assert_eq!(index.changed.load(Ordering::Relaxed), 0);
    std::fs::remove_file(&path).unwrap();
    discarded.store(true, Ordering::Release);
    index.apply(upserts(100_000..100_000 + SNAPSHOT_MIN_CHANGES as u64));
    index.wait_indexed();
    index.snapshot_if_due(true);
    drop(index.snapshot_lock.lock());
    assert!(!path.exists(), "no snapshot for a tenant being deleted");
}

/// Over f16 and int8 vectors the index re-scores its candidates with the full vectors its
/// caller supplies: hits carry exact distances and recall the exact top 10; the snapshot keeps
/// the compact graph, is reused by an index of the same precision and ignored by another.
#[test]
fn a_compact_index_rescores_with_full_vectors_and_snapshots_its_precision() {
    let dimension = 32;
    let points: Vec<(ResourceId, Vec<f32>)> = (0..3000)
        .map(|i| (ResourceId::new(), crate::index::test_vector(dimension, i + 7)))
        .collect();
    let by_id: HashMap<ResourceId, Vec<f32>> = points.iter().cloned().collect();
    let full = |ids: &[ResourceId]| ids.iter().map(|id| by_id.get(id).cloned()).collect();
    let stored = || -> Vec<Stored> {
        points.iter().map(|(id, v)| (*id, v.clone(), Arc::default())).collect()
    };
    let queries: Vec<Vec<f32>> =
        (0..40).map(|i| crate::index::test_vector(dimension, 50_000 + i)).collect();
    let exact_top = |q: &[f32]| -> Vec<(ResourceId, f32)> {
        let q = prepared_copy(Metric::Cosine, q);
        let mut all: Vec<(ResourceId, f32)> = points
            .iter()
            .map(|(id, v)| {
                (*id, metric_distance(Metric::Cosine, &q, &prepared_copy(Metric::Cosine, v)))
            })
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(10);
        all
    };
    for precision in [VectorPrecision::F16, VectorPrecision::Int8] {
        let dir = tempfile::tempdir().unwrap();
        let persist = || Persist {
            dir: dir.path().to_path_buf(),
            crypto: None,
            discarded: Arc::new(AtomicBool::new(false)),
            lower_priority: false,
            read_only: false,
        };
        let params = HnswParams::default();
        let index = VectorIndex::open(
            persist(),
            None,
            dimension,
            Metric::Cosine,
            params,
            precision,
            0,
            stored(),
        );
        index.wait_indexed();
        assert!(index.state.read().graph.is_compact(), "{precision}");
        let mut found = 0;
        let mut answers = Vec::new();
        for q in &queries {
            let hits = index.search(q, 10, None, None, &full);
            let truth = exact_top(q);
            found += hits.iter().filter(|h| truth.iter().any(|t| t.0 == h.id)).count();
            for hit in &hits {
                let v = prepared_copy(Metric::Cosine, &by_id[&hit.id]);
                let exact = metric_distance(Metric::Cosine, &prepared_copy(Metric::Cosine, q), &v);
                assert_eq!(hit.distance.to_bits(), exact.to_bits(), "{precision}: not re-scored");
            }
            answers.push(hits);
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        // Measured ≈0.99 on these random points; f32 gives the same.
        assert!(recall >= 0.93, "{precision}: recall {recall}");

        index.persist_now().unwrap();
        let snapshot = |p| VectorIndex::read_snapshot(&persist(), dimension, Metric::Cosine, p);
        for other in [VectorPrecision::F32, VectorPrecision::F16, VectorPrecision::Int8] {
            assert_eq!(
                snapshot(other).is_some(),
                other == precision,
                "{precision} read as {other}"
            );
        }
        let reopened = VectorIndex::open(
            persist(),
            snapshot(precision),
            dimension,
            Metric::Cosine,
            params,
            precision,
            0,
            stored(),
        );
        assert_eq!(reopened.restored(), points.len());
        assert_eq!(reopened.stats(), index.stats());
        for (q, hits) in queries.iter().zip(&answers) {
            assert_eq!(&reopened.search(q, 10, None, None, &full), hits);
        }
    }
}

/// Without full vectors (every read fails) a compact index still answers, with approximate
/// distances; small tenants, below the quantizer's training size, stay exact.
#[test]
fn a_small_int8_index_is_exact_and_missing_full_vectors_do_not_fail_a_search() {
    let (index, ids) = indexed(Metric::L2, VectorPrecision::Int8, 500);
    assert!(!index.state.read().graph.is_compact(), "trained below TRAIN_POINTS");
    let hits = index.search(&vector(42), 1, None, None, &no_full);
    assert_eq!(hits[0].id, ids[42]);
    assert_eq!(hits[0].distance, 0.0);
}
