//! Vector search: for now an exact scan over the `embeddings` column family.
//!
//! Exact search has recall 1 and is the reference the HNSW index will be checked against. The
//! filter is applied before the top-k cut (a candidate enters the top k only if it matches), so
//! `k` results come back whenever `k` resources match. The filter is evaluated only for
//! candidates close enough to enter the current top k, which keeps filtered scans cheap when
//! most resources would not make the cut anyway.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::cf::{CF_EMBEDDINGS, CF_RESOURCES};
use super::codec;
use super::store::View;
use super::tenants::TenantDb;
use crate::error::{Error, Result};
use crate::model::{Metric, ResourceId, ScoredResource, SearchQuery};

#[derive(Clone, Copy)]
struct Candidate {
    distance: f32,
    id: [u8; 16],
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Nearer first, then smaller id: a total order, so results are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then_with(|| self.id.cmp(&other.id))
    }
}

/// The `k` nearest matching resources by exact scan.
pub(crate) fn exact_search(
    tenant: &TenantDb,
    query: &SearchQuery,
    metric: Metric,
) -> Result<Vec<ScoredResource>> {
    let view = View::Db(tenant);
    let dimension = query.vector.len();
    let mut best: BinaryHeap<Candidate> = BinaryHeap::with_capacity(query.k + 1);
    let mut vector = Vec::with_capacity(dimension);
    view.scan(CF_EMBEDDINGS, &[], None, |key, value| {
        let bytes = codec::embedding_bytes(value)?;
        if bytes.len() != dimension * 4 {
            return Err(Error::corrupt(
                "embedding",
                format!("dimension {} in a tenant of {dimension}", bytes.len() / 4),
            ));
        }
        vector.clear();
        vector.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        let id: [u8; 16] =
            key.try_into().map_err(|_| Error::corrupt("embedding key", "not 16 bytes"))?;
        let candidate = Candidate { distance: metric.distance(&query.vector, &vector), id };
        if best.len() == query.k && best.peek().is_some_and(|worst| candidate >= *worst) {
            return Ok(true);
        }
        if let Some(filter) = &query.filter {
            let Some(resource) = view.get(CF_RESOURCES, key)? else { return Ok(true) };
            let resource = codec::decode_resource(ResourceId::from_bytes(id), &resource)?;
            if !filter.matches(&resource.metadata) {
                return Ok(true);
            }
        }
        best.push(candidate);
        if best.len() > query.k {
            best.pop();
        }
        Ok(true)
    })?;
    let mut hits = Vec::with_capacity(best.len());
    for candidate in best.into_sorted_vec() {
        match view.resource(ResourceId::from_bytes(candidate.id)) {
            Ok(resource) => hits.push(ScoredResource { resource, distance: candidate.distance }),
            // Deleted between the scan and the fetch.
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hits)
}
