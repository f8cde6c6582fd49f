//! The vector index snapshot's graph decoder, on arbitrary bytes: `None` or a graph, never a
//! panic. A decoded graph re-encodes to as many bytes as it was read from, that encoding is a
//! fixed point, and searching the decoded graph does not panic (a snapshot that passes its
//! checks is used as is).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percolate::fuzzing::HnswGraph;

fuzz_target!(|data: &[u8]| {
    let Some((graph, used)) = HnswGraph::decode(data) else { return };
    assert!(used <= data.len());
    let encoded = graph.encode();
    assert_eq!(encoded.len(), used, "re-encoding changed the length");
    let (again, used_again) = HnswGraph::decode(&encoded).expect("a re-encoded graph decodes");
    assert_eq!(used_again, encoded.len());
    assert_eq!(again.encode(), encoded, "re-encoding is not stable");
    // The store only uses a snapshot whose dimension is the tenant's (at most MAX_DIMENSION).
    if graph.dimension() > percolate::MAX_DIMENSION {
        return;
    }
    let query: Vec<f32> = (0..graph.dimension()).map(|i| (i % 7) as f32 - 3.0).collect();
    let found = graph.search(&query, 3, 8);
    assert!(found.len() <= 3.min(graph.len()));
});
