//! Unit tests of the live index: inbox, compaction, snapshots.
use super::*;

fn vector(seed: u64) -> Vec<f32> {
    crate::index::test_vector(16, seed)
}

#[test]
fn changes_waiting_in_the_inbox_supersede_the_graph() {
    let index = VectorIndex::new(16, Metric::Cosine, HnswParams::default(), 0, None);
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
    // ids[0] has a new vector: searching by the old one no longer finds it, by the new one does.
    assert!(index.search(&vector(0), 5, None, None).iter().all(|h| h.id != ids[0]));
    assert_eq!(index.search(&vector(1000), 1, None, None)[0].id, ids[0]);
    // ids[1] is gone, under every search path.
    let filter = Filter::parse(&serde_json::json!({ "tag": 0 })).unwrap();
    for filter in [None, Some(&filter)] {
        assert!(index.search(&vector(1), 300, None, filter).iter().all(|h| h.id != ids[1]));
    }
    // ids[2] kept its vector but changed its metadata: filters see the new metadata.
    let two = Filter::parse(&serde_json::json!({ "tag": 2 })).unwrap();
    let hits = index.search(&vector(2), 10, None, Some(&two));
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![ids[2]]);
    let zero = index.search(&vector(2), 300, None, Some(&filter));
    assert!(zero.iter().all(|h| h.id != ids[2] && h.id != ids[0]));
    assert_eq!(zero.len(), 297);
    index.drain(&mut index.state.write());
    assert!(index.inbox.read().changes.is_empty());
    assert_eq!(index.stats(), (300, 2, 3));
}

#[test]
fn compaction_keeps_every_live_point_findable() {
    let index = VectorIndex::new(16, Metric::Cosine, HnswParams::default(), 0, None);
    let ids: Vec<ResourceId> = (0..2000).map(|_| ResourceId::new()).collect();
    index.apply(
        ids.iter()
            .enumerate()
            .map(|(i, id)| VectorChange::Upsert {
                id: *id,
                vector: vector(i as u64),
                metadata: Arc::default(),
            })
            .collect(),
    );
    index.wait_indexed();
    index.apply(ids.iter().step_by(2).map(|id| VectorChange::Remove { id: *id }).collect());
    index.wait_indexed();
    let (graph, pending, tombstones) = index.stats();
    assert_eq!((graph, pending, tombstones), (1000, 0, 0));
    for (i, id) in ids.iter().enumerate().skip(1).step_by(2).take(50) {
        let hits = index.search(&vector(i as u64), 1, None, None);
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
    let index =
        VectorIndex::open(persist, None, 16, Metric::Cosine, HnswParams::default(), 0, vec![]);
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
