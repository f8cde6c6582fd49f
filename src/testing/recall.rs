//! Cases on hybrid recall: reciprocal rank fusion checked against the engine's own text and
//! vector lists, single signals, weights, the time window and filter, and bad input. It
//! reaches storage only through the engine and must not name a provider.

use serde_json::json;

use super::{Harness, ensure, ensure_eq, expect_err, meta, tenant, ts, vector};
use crate::{
    Filter, NewResource, RRF_K, RecallQuery, RecallWeights, Resource, ResourceId, Result,
    SearchQuery, TextQuery, TimeRange,
};

const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "contract", "meeting"];

/// Content of resource `i`: a few of [`WORDS`], chosen by `i`.
fn content(i: usize) -> String {
    (0..1 + i % 4).map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// The fused ranking of two ranked lists of ids, as [`crate::RecallQuery`] defines it.
fn brute_fuse(
    lists: &[(f64, Vec<ResourceId>)],
    k: usize,
) -> Vec<(ResourceId, f64, Vec<Option<usize>>)> {
    let mut all: Vec<ResourceId> = lists.iter().flat_map(|(_, ids)| ids.clone()).collect();
    all.sort();
    all.dedup();
    let mut fused: Vec<(ResourceId, f64, Vec<Option<usize>>)> = all
        .into_iter()
        .map(|id| {
            let ranks: Vec<Option<usize>> = lists
                .iter()
                .map(|(_, ids)| ids.iter().position(|x| *x == id).map(|p| p + 1))
                .collect();
            let score = lists
                .iter()
                .zip(&ranks)
                .map(|((weight, _), rank)| rank.map_or(0.0, |r| weight / (RRF_K + r as f64)))
                .sum();
            (id, score, ranks)
        })
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(k);
    fused
}

/// Recall fuses the text and vector lists by weighted reciprocal rank, and each hit reports
/// its rank in each list.
pub async fn recall_fuses_text_and_vector_by_reciprocal_rank<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.batch_create_resources(
        (0..60).map(|i| NewResource::new(content(i)).with_embedding(vector(i as u64, 8))).collect(),
    )
    .await?;
    let (text, query_vector) = ("alpha contract", vector(999, 8));
    let text_ids: Vec<ResourceId> = t
        .text_search(&TextQuery::new(text, 20))
        .await?
        .into_iter()
        .map(|hit| ResourceId::from(hit.record.id()))
        .collect();
    let vector_ids: Vec<ResourceId> = t
        .search_resources(&SearchQuery::new(query_vector.clone(), 20))
        .await?
        .into_iter()
        .map(|hit| hit.resource.id)
        .collect();
    ensure(!text_ids.is_empty() && vector_ids.len() == 20, "both signals have candidates")?;
    for weights in
        [RecallWeights { text: 1.0, vector: 1.0 }, RecallWeights { text: 0.3, vector: 2.0 }]
    {
        let mut query = RecallQuery::new(10).with_text(text).with_vector(query_vector.clone());
        query.candidates = 20;
        query.weights = weights;
        let hits = t.recall(&query).await?;
        let expected = brute_fuse(
            &[(weights.text, text_ids.clone()), (weights.vector, vector_ids.clone())],
            10,
        );
        ensure_eq(
            hits.iter().map(|hit| hit.resource.id).collect::<Vec<_>>(),
            expected.iter().map(|(id, _, _)| *id).collect(),
            "fused order",
        )?;
        for (hit, (_, score, ranks)) in hits.iter().zip(&expected) {
            ensure((hit.score - score).abs() < 1e-12, format!("score {} vs {score}", hit.score))?;
            ensure_eq(vec![hit.ranks.text, hit.ranks.vector], ranks.clone(), "ranks")?;
        }
    }
    Ok(())
}

/// With one signal, recall returns that signal's order; a weight of 0 keeps a signal's ranks
/// but not its say in the order.
pub async fn recall_with_one_signal_keeps_its_order<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.batch_create_resources(
        (0..40).map(|i| NewResource::new(content(i)).with_embedding(vector(i as u64, 8))).collect(),
    )
    .await?;
    let text_ids: Vec<uuid::Uuid> = t
        .text_search(&TextQuery::new("gamma meeting", 5))
        .await?
        .into_iter()
        .map(|hit| hit.record.id())
        .collect();
    let hits = t.recall(&RecallQuery::new(5).with_text("gamma meeting")).await?;
    ensure_eq(
        hits.iter().map(|hit| hit.resource.id.as_uuid()).collect::<Vec<_>>(),
        text_ids,
        "text only",
    )?;
    ensure(hits.iter().all(|hit| hit.ranks.vector.is_none()), "no vector ranks")?;
    let query_vector = vector(77, 8);
    let vector_ids: Vec<ResourceId> = t
        .search_resources(&SearchQuery::new(query_vector.clone(), 5))
        .await?
        .into_iter()
        .map(|hit| hit.resource.id)
        .collect();
    let hits = t.recall(&RecallQuery::new(5).with_vector(query_vector.clone())).await?;
    ensure_eq(
        hits.iter().map(|hit| hit.resource.id).collect::<Vec<_>>(),
        vector_ids.clone(),
        "vector only",
    )?;
    let mut query = RecallQuery::new(5).with_vector(query_vector).with_text("gamma meeting");
    query.weights = RecallWeights { text: 0.0, vector: 1.0 };
    let hits = t.recall(&query).await?;
    ensure_eq(
        hits.iter().map(|hit| hit.resource.id).collect::<Vec<_>>(),
        vector_ids,
        "a zero weight does not move the order",
    )?;
    // The default candidate count is max(4k, 50): the text ranks are those of that list.
    let text_list: Vec<uuid::Uuid> = t
        .text_search(&TextQuery::new("gamma meeting", 50))
        .await?
        .into_iter()
        .map(|hit| hit.record.id())
        .collect();
    for hit in &hits {
        let rank = text_list.iter().position(|id| *id == hit.resource.id.as_uuid()).map(|p| p + 1);
        ensure_eq(hit.ranks.text, rank, "a zero-weight signal still reports its rank")?;
    }
    Ok(())
}

/// The time window and the metadata filter apply to every signal: no hit outside them, and
/// every matching resource that has the text comes back from both signals.
pub async fn recall_window_and_filter_apply_to_every_signal<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let resources: Vec<Resource> = (0..30)
        .map(|i| Resource {
            id: ResourceId::new(),
            uri: None,
            content: format!("note {i} about the contract"),
            metadata: meta(json!({"even": i % 2 == 0})),
            embedding: Some(vector(i, 8)),
            created_at: ts(i as i64),
            updated_at: ts(i as i64),
        })
        .collect();
    t.insert_resources(&resources).await?;
    let mut query = RecallQuery::new(10)
        .with_text("contract")
        .with_vector(vector(5, 8))
        .within(TimeRange::new(ts(10), ts(19)))
        .with_filter(Filter::parse(&json!({"even": true}))?);
    query.candidates = 10;
    let hits = t.recall(&query).await?;
    let mut ids: Vec<ResourceId> = hits.iter().map(|hit| hit.resource.id).collect();
    ids.sort();
    let mut expected: Vec<ResourceId> =
        [10, 12, 14, 16, 18].iter().map(|i| resources[*i].id).collect();
    expected.sort();
    ensure_eq(ids, expected, "the window's even resources")?;
    ensure(
        hits.iter().all(|hit| hit.ranks.text.is_some() && hit.ranks.vector.is_some()),
        "each found by both signals",
    )
}

/// Recall without a signal, with a bad `k`, candidate count or weight, or a reversed window is
/// rejected.
pub async fn recall_rejects_bad_queries<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(NewResource::new("x").with_embedding(vec![1.0, 0.0])).await?;
    expect_err(t.recall(&RecallQuery::new(5)).await, "invalid")?;
    expect_err(t.recall(&RecallQuery::new(0).with_text("x")).await, "invalid")?;
    let mut few = RecallQuery::new(10).with_text("x");
    few.candidates = 5;
    expect_err(t.recall(&few).await, "invalid")?;
    let mut negative = RecallQuery::new(5).with_text("x");
    negative.weights.text = -1.0;
    expect_err(t.recall(&negative).await, "invalid")?;
    let reversed = RecallQuery::new(5).with_text("x").within(TimeRange::new(ts(5), ts(1)));
    expect_err(t.recall(&reversed).await, "invalid")?;
    expect_err(t.recall(&RecallQuery::new(5).with_vector(vec![1.0, 0.0, 0.0])).await, "invalid")?;
    ensure_eq(t.recall(&RecallQuery::new(5).with_text("x")).await?.len(), 1, "a good query")
}
