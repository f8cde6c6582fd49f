//! The RocksDB provider with its vector index in f16 and int8: searches re-score their
//! candidates with the stored embeddings (sealed ones in an encrypted tenant), so hits carry
//! exact distances and recall stays high; the index holds fewer bytes; a snapshot is reused
//! by the same precision and rebuilt under another.

use percolate::bench::dataset::Dataset;
use percolate::rocks::{IndexStats, MasterKey, RocksConfig, RocksProvider, VectorPrecision};
use percolate::{Filter, MemoryEngine, ResourceId, SearchQuery, TenantConfig, TenantId};
use serde_json::json;

mod vectors;
use vectors::{brute_force, cosine_distance, load};

const DIMENSION: usize = 128;

fn engine(dir: &std::path::Path, precision: VectorPrecision) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.exact_search_below = 0;
    config.vector_precision = precision;
    config.master_key = Some(MasterKey::from_bytes([0x3c; 32]));
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

/// Loads the data into a fresh store of `precision`; returns the index's stats.
async fn index_stats_at(
    precision: VectorPrecision,
    data: &Dataset,
) -> percolate::Result<IndexStats> {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path(), precision);
    let tenant = engine.create_tenant(&TenantId::new("size")?, TenantConfig::default()).await?;
    load(&tenant, data).await?;
    RocksProvider::wait_for_index(tenant.provider_tenant());
    Ok(RocksProvider::index_stats(tenant.provider_tenant()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_int8_tenant_finds_the_exact_neighbours_with_exact_distances()
-> percolate::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = TenantId::new("quantized")?;
    let data = Dataset::synthetic(3000, 40, DIMENSION, 0, 21);
    let (resources, answers) = {
        let engine = engine(dir.path(), VectorPrecision::Int8);
        let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
        assert!(RocksProvider::is_encrypted(tenant.provider_tenant()));
        let resources = load(&tenant, &data).await?;
        RocksProvider::wait_for_index(tenant.provider_tenant());
        let stats = RocksProvider::index_stats(tenant.provider_tenant());
        assert_eq!((stats.graph, stats.pending), (3000, 0), "{stats:?}");
        let mut hits = 0;
        let mut answers = Vec::new();
        for q in 0..data.query_count() {
            let query = data.query(q).to_vec();
            let found = tenant.search_resources(&SearchQuery::new(query.clone(), 10)).await?;
            for hit in &found {
                let exact =
                    cosine_distance(hit.resource.embedding.as_ref().expect("embedding"), &query);
                assert!(
                    (f64::from(hit.distance) - exact).abs() < 1e-5,
                    "{} vs {exact}",
                    hit.distance
                );
            }
            let found: Vec<ResourceId> = found.into_iter().map(|h| h.resource.id).collect();
            let truth = brute_force(&resources, &query, 10, |_| true);
            hits += found.iter().filter(|id| truth.contains(id)).count();
            answers.push(found);
        }
        let recall = hits as f64 / (data.query_count() * 10) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
        // A selective filter: exactly the brute-force answer among the admitted resources.
        let bucket = Filter::parse(&json!({"bucket": 7}))?;
        for q in 0..5 {
            let query = data.query(q).to_vec();
            let found = tenant
                .search_resources(&SearchQuery::new(query.clone(), 10).with_filter(bucket.clone()))
                .await?;
            let truth = brute_force(&resources, &query, 10, |r| {
                r.metadata.get("bucket") == Some(&json!(7))
            });
            assert_eq!(found.into_iter().map(|h| h.resource.id).collect::<Vec<_>>(), truth);
        }
        (resources, answers)
    };
    // Reopened as int8: the sealed snapshot is reused, and answers are unchanged.
    {
        let engine = engine(dir.path(), VectorPrecision::Int8);
        let tenant = engine.tenant(&id).await?;
        let stats = RocksProvider::index_stats(tenant.provider_tenant());
        assert_eq!((stats.restored, stats.pending), (3000, 0), "{stats:?}");
        for (q, answer) in answers.iter().enumerate() {
            let query = SearchQuery::new(data.query(q).to_vec(), 10);
            let found: Vec<ResourceId> =
                tenant.search_resources(&query).await?.into_iter().map(|h| h.resource.id).collect();
            assert_eq!(&found, answer);
        }
    }
    // Reopened as f32: the int8 snapshot is not read as f32; the graph is rebuilt.
    let engine = engine(dir.path(), VectorPrecision::F32);
    let tenant = engine.tenant(&id).await?;
    assert_eq!(RocksProvider::index_stats(tenant.provider_tenant()).restored, 0);
    RocksProvider::wait_for_index(tenant.provider_tenant());
    let query = data.query(0).to_vec();
    let found: Vec<ResourceId> = tenant
        .search_resources(&SearchQuery::new(query.clone(), 10))
        .await?
        .into_iter()
        .map(|h| h.resource.id)
        .collect();
    let truth = brute_force(&resources, &query, 10, |_| true);
    assert!(found.iter().filter(|id| truth.contains(id)).count() >= 9);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_precisions_hold_fewer_index_bytes() -> percolate::Result<()> {
    let data = Dataset::synthetic(3000, 0, DIMENSION, 0, 5);
    let f32_bytes = index_stats_at(VectorPrecision::F32, &data).await?.bytes as f64;
    let f16_bytes = index_stats_at(VectorPrecision::F16, &data).await?.bytes as f64;
    let int8_bytes = index_stats_at(VectorPrecision::Int8, &data).await?.bytes as f64;
    // 128-d: f32 vectors are 512 bytes a point, f16 256, int8 132; links ~140 in each.
    assert!(f16_bytes < 0.7 * f32_bytes, "f16 {f16_bytes} vs f32 {f32_bytes}");
    assert!(int8_bytes < 0.5 * f32_bytes, "int8 {int8_bytes} vs f32 {f32_bytes}");
    Ok(())
}
