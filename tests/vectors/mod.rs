//! What the vector index tests share: loading a dataset into a tenant and the exact top k to
//! compare a search with. Shared by `tests/rocks_vector_index.rs` and `tests/rocks_quantized.rs`.

use percolate::bench::dataset::Dataset;
use percolate::rocks::RocksProvider;
use percolate::{NewResource, Resource, ResourceId, TenantHandle};
use serde_json::json;

/// The cosine distance of `a` and `b`, computed in f64.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum()
    };
    1.0 - dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

/// The ids of the `k` resources nearest `query` by cosine distance (computed in f64) among
/// those `keep` accepts, nearest first, ties by id.
pub fn brute_force(
    resources: &[Resource],
    query: &[f32],
    k: usize,
    keep: impl Fn(&Resource) -> bool,
) -> Vec<ResourceId> {
    let mut scored: Vec<(f64, ResourceId)> = resources
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| Some((cosine_distance(r.embedding.as_ref()?, query), r.id)))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Writes every row of `data` as a resource (content `r{i}`, metadata `{"bucket": i % 100}`)
/// in batches of 500; returns them as stored.
pub async fn load(
    tenant: &TenantHandle<RocksProvider>,
    data: &Dataset,
) -> percolate::Result<Vec<Resource>> {
    let mut created = Vec::new();
    for chunk in (0..data.len()).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&i| {
                NewResource::new(format!("r{i}"))
                    .with_embedding(data.row(i).to_vec())
                    .with_metadata(
                        json!({"bucket": i % 100}).as_object().cloned().unwrap_or_default(),
                    )
            })
            .collect();
        created.extend(tenant.batch_create_resources(batch).await?);
    }
    Ok(created)
}
