//! Cases on vector search (checked against brute force) and entity name search. It reaches
//! storage only through the engine and must not name a provider.

use serde_json::json;

use super::{
    Harness, brute_distance, brute_top_k, ensure, ensure_eq, expect_err, meta, search_ids, tenant,
    tenant_with, vector,
};
use crate::{
    EntityQuery, Filter, MAX_FILTER_NODES, MAX_FILTER_VALUES, Metric, NewEntity, NewResource,
    Resource, Result, SearchQuery, TenantConfig,
};

/// Vector search returns the brute-force top k with exact distances, nearest first.
pub async fn exact_search_matches_brute_force<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let created = t
        .batch_create_resources(
            (0..300)
                .map(|i| NewResource::new(format!("r{i}")).with_embedding(vector(i, 24)))
                .collect(),
        )
        .await?;
    for q in 0..5 {
        let query = vector(10_000 + q, 24);
        let hits = t.search_resources(&SearchQuery::new(query.clone(), 10)).await?;
        let ids: Vec<_> = hits.iter().map(|hit| hit.resource.id).collect();
        ensure_eq(ids, brute_top_k(Metric::Cosine, &created, &query, 10), "top 10 = brute force")?;
        for hit in &hits {
            let expected = brute_distance(
                Metric::Cosine,
                hit.resource.embedding.as_deref().unwrap_or(&[]),
                &query,
            );
            ensure(
                (f64::from(hit.distance) - expected).abs() < 1e-4,
                format!("distance {} vs {expected}", hit.distance),
            )?;
        }
        ensure(hits.windows(2).all(|w| w[0].distance <= w[1].distance), "nearest first")?;
    }
    let all = t.search_resources(&SearchQuery::new(vector(1, 24), 1000)).await?;
    ensure_eq(all.len(), 300, "k larger than the tenant returns everything")
}

/// The metadata filter applies before the top-k cut: `k` hits whenever `k` resources match.
pub async fn filter_is_applied_before_the_top_k_cut<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let batch: Vec<NewResource> = (0..400)
        .map(|i| {
            NewResource::new(format!("r{i}"))
                .with_embedding(vector(i, 16))
                .with_metadata(meta(json!({"bucket": i % 50, "even": i % 2 == 0})))
        })
        .collect();
    let created = t.batch_create_resources(batch).await?;
    let filter = Filter::parse(&json!({"bucket": 7}))?;
    let matching: Vec<Resource> =
        created.iter().filter(|r| filter.matches(&r.metadata)).cloned().collect();
    ensure_eq(matching.len(), 8, "8 resources in bucket 7")?;
    let query = vector(999, 16);
    let hits =
        search_ids(&t, &SearchQuery::new(query.clone(), 5).with_filter(filter.clone())).await?;
    ensure_eq(hits, brute_top_k(Metric::Cosine, &matching, &query, 5), "filtered top 5")?;
    let all = search_ids(&t, &SearchQuery::new(query.clone(), 20).with_filter(filter)).await?;
    ensure_eq(all.len(), 8, "every match when k exceeds the matches")?;
    let none = Filter::parse(&json!({"bucket": 1000}))?;
    ensure(
        search_ids(&t, &SearchQuery::new(query, 5).with_filter(none)).await?.is_empty(),
        "no match, no hit",
    )
}

/// Search with `k` out of range, a non-finite, wrong-size or empty vector, or an unknown filter
/// operator is invalid.
pub async fn search_rejects_bad_k_and_bad_vectors<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(NewResource::new("a").with_embedding(vec![1.0, 0.0])).await?;
    expect_err(t.search_resources(&SearchQuery::new(vec![1.0, 0.0], 0)).await, "invalid")?;
    expect_err(t.search_resources(&SearchQuery::new(vec![1.0, 0.0], 10_000_000)).await, "invalid")?;
    expect_err(t.search_resources(&SearchQuery::new(vec![f32::NAN, 0.0], 1)).await, "invalid")?;
    expect_err(t.search_resources(&SearchQuery::new(vec![1.0, 0.0, 0.0], 1)).await, "invalid")?;
    expect_err(t.search_resources(&SearchQuery::new(vec![], 1)).await, "invalid")?;
    expect_err(Filter::parse(&json!({"a": {"$regex": "x"}})), "invalid")
}

/// Search ranks by the tenant's metric: L2, dot and cosine.
pub async fn search_uses_the_tenant_metric<H: Harness>(h: &mut H) -> Result<()> {
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        let t = tenant_with(h, TenantConfig { dimension: None, metric }).await?;
        let created = t
            .batch_create_resources(
                (0..100)
                    .map(|i| {
                        NewResource::new("r").with_embedding(
                            vector(i, 8).iter().map(|x| x * (1.0 + (i % 7) as f32)).collect(),
                        )
                    })
                    .collect(),
            )
            .await?;
        let query = vector(77_777, 8);
        let hits = search_ids(&t, &SearchQuery::new(query.clone(), 7)).await?;
        ensure_eq(hits, brute_top_k(metric, &created, &query, 7), metric.as_str())?;
    }
    Ok(())
}

/// Search sees an updated embedding and forgets a deleted resource.
pub async fn search_sees_updates_and_deletes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_resource(NewResource::new("a").with_embedding(vec![1.0, 0.0, 0.0])).await?;
    let b = t.create_resource(NewResource::new("b").with_embedding(vec![0.0, 1.0, 0.0])).await?;
    let mut moved = a.clone();
    moved.embedding = Some(vec![0.0, 0.0, 1.0]);
    t.update_resource(moved).await?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![1.0, 0.1, 0.0], 1)).await?,
        vec![b.id],
        "old vector forgotten",
    )?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![0.0, 0.0, 1.0], 1)).await?,
        vec![a.id],
        "new vector found",
    )?;
    t.delete_resource(b.id).await?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![0.0, 1.0, 0.0], 5)).await?,
        vec![a.id],
        "deleted is gone",
    )
}

/// A tenant without embeddings has no search hits.
pub async fn search_without_embeddings_is_empty<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(NewResource::new("text only")).await?;
    ensure(t.search_resources(&SearchQuery::new(vec![1.0, 2.0], 3)).await?.is_empty(), "empty")
}

/// Entity search matches query words as prefixes of name words, in any case and order,
/// ordered by name then id, within its limit.
pub async fn entity_search_matches_word_prefixes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ada = t.create_entity(NewEntity::new("Ada Lovelace", "person")).await?;
    let charles = t.create_entity(NewEntity::new("Charles Babbage", "person")).await?;
    let engine = t.create_entity(NewEntity::new("Analytical Engine", "machine")).await?;
    let names = |found: Vec<crate::Entity>| found.into_iter().map(|e| e.id).collect::<Vec<_>>();
    ensure_eq(names(t.search_entities(&EntityQuery::new("love")).await?), vec![ada.id], "prefix")?;
    ensure_eq(
        names(t.search_entities(&EntityQuery::new("LOVELACE ada")).await?),
        vec![ada.id],
        "case, order",
    )?;
    ensure_eq(
        names(t.search_entities(&EntityQuery::new("a")).await?),
        vec![ada.id, engine.id],
        "by name",
    )?;
    ensure_eq(
        names(t.search_entities(&EntityQuery::new("ada babbage")).await?),
        vec![],
        "all words must match",
    )?;
    ensure_eq(
        names(t.search_entities(&EntityQuery::new("")).await?),
        vec![ada.id, engine.id, charles.id],
        "empty = all",
    )?;
    let mut limited = EntityQuery::new("");
    limited.limit = 1;
    ensure_eq(names(t.search_entities(&limited).await?), vec![ada.id], "limit")?;
    limited.limit = 0;
    expect_err(t.search_entities(&limited).await, "invalid")
}

/// Entity search filters by kind and by properties.
pub async fn entity_search_filters_kind_and_properties<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut paris_city = NewEntity::new("Paris", "city");
    paris_city.properties = meta(json!({"country": "fr"}));
    let city = t.create_entity(paris_city).await?;
    let mut paris_tx = NewEntity::new("Paris", "city");
    paris_tx.properties = meta(json!({"country": "us"}));
    let texas = t.create_entity(paris_tx).await?;
    let person = t.create_entity(NewEntity::new("Paris Hilton", "person")).await?;
    let cities = t.search_entities(&EntityQuery::new("paris").with_kind("city")).await?;
    ensure_eq(cities.iter().map(|e| e.id).collect::<Vec<_>>(), vec![city.id, texas.id], "kind")?;
    let mut query = EntityQuery::new("paris");
    query.properties = Some(Filter::parse(&json!({"country": "us"}))?);
    ensure_eq(
        t.search_entities(&query).await?.into_iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![texas.id],
        "properties",
    )?;
    let people = t.search_entities(&EntityQuery::new("hilton").with_kind("person")).await?;
    ensure_eq(people.into_iter().map(|e| e.id).collect::<Vec<_>>(), vec![person.id], "person")
}

/// A filter past its size limits (conditions, `$in`/`$nin` values) is invalid, naming the
/// limit, whether it is parsed or built in code and passed to vector or entity search; one
/// at the limits works.
pub async fn filters_past_their_size_limits_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(
        NewResource::new("a").with_embedding(vec![1.0, 0.0]).with_metadata(meta(json!({"n": 7}))),
    )
    .await?;
    let values = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
    let names_limit = |result: Result<Filter>, limit: &str| match result {
        Err(crate::Error::Invalid { reason, .. }) if reason.contains(limit) => Ok(()),
        other => ensure(false, format!("expected invalid naming {limit}, got {other:?}")),
    };
    names_limit(
        Filter::parse(&json!({"n": {"$in": values(MAX_FILTER_VALUES + 1)}})),
        "MAX_FILTER_VALUES",
    )?;
    let conditions: Vec<_> = (0..MAX_FILTER_NODES).map(|i| json!({"n": i})).collect();
    names_limit(Filter::parse(&json!({"$or": conditions})), "MAX_FILTER_NODES")?;

    let at_the_limit = Filter::parse(&json!({"n": {"$in": values(MAX_FILTER_VALUES)}}))?;
    let query = SearchQuery::new(vec![1.0, 0.0], 5).with_filter(at_the_limit);
    ensure_eq(t.search_resources(&query).await?.len(), 1, "a filter at the limits works")?;

    let built = Filter::In {
        path: vec!["n".into()],
        values: values(MAX_FILTER_VALUES + 1),
        negated: false,
    };
    let query = SearchQuery::new(vec![1.0, 0.0], 5).with_filter(built.clone());
    expect_err(t.search_resources(&query).await, "invalid")?;
    let mut entities = EntityQuery::new("x");
    entities.properties = Some(built);
    expect_err(t.search_entities(&entities).await, "invalid")?;
    let wide = Filter::Or(
        (0..=MAX_FILTER_NODES)
            .map(|_| Filter::Exists { path: vec!["n".into()], exists: true })
            .collect(),
    );
    let query = SearchQuery::new(vec![1.0, 0.0], 5).with_filter(wide);
    expect_err(t.search_resources(&query).await, "invalid")
}
