//! Cases on resources and entities: round trips, updates, deletes, input validation and the
//! tenant's embedding dimension. It reaches storage only through the engine and must not name
//! a provider.

use serde_json::json;

use super::{
    Harness, ensure, ensure_eq, expect_err, fresh_id, meta, search_ids, tenant, tenant_with, ts,
    vector,
};
use crate::{
    Direction, EntityQuery, Error, Filter, Metadata, Metric, NewEdge, NewEntity, NewMoment,
    NewResource, RecordKind, Result, SearchQuery, TenantConfig,
};

/// A resource reads back exactly as written: uri, content, metadata, embedding bit for bit.
pub async fn resource_round_trips<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let new = NewResource {
        uri: Some("https://example.com/a".into()),
        content: "The quick brown fox ☃".into(),
        metadata: meta(json!({"lang": "en", "n": 3, "nested": {"a": [1, 2, null]}})),
        embedding: Some(vec![0.25, -1.5, 3.0]),
    };
    let created = t.create_resource(new.clone()).await?;
    ensure_eq(created.created_at, created.updated_at, "fresh timestamps")?;
    let got = t.get_resource(created.id).await?;
    ensure_eq(&got, &created, "stored resource")?;
    ensure_eq(got.uri, new.uri, "uri")?;
    ensure_eq(got.embedding, new.embedding, "embedding bit-exact")?;
    let plain = t.create_resource(NewResource::new("no vector")).await?;
    ensure_eq(t.get_resource(plain.id).await?.embedding, None, "no embedding")
}

/// An update replaces content, metadata and embedding and keeps the stored `created_at`.
pub async fn resource_update_keeps_created_at_and_replaces_fields<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let created = t.create_resource(NewResource::new("v1").with_embedding(vec![1.0, 0.0])).await?;
    let mut changed = created.clone();
    changed.content = "v2".into();
    changed.metadata = meta(json!({"v": 2}));
    changed.embedding = None;
    changed.created_at = ts(1);
    let stored = t.update_resource(changed).await?;
    let got = t.get_resource(created.id).await?;
    ensure_eq(&got, &stored, "returned = stored")?;
    ensure_eq(got.created_at, created.created_at, "created_at kept")?;
    ensure(got.updated_at >= created.updated_at, "updated_at advanced")?;
    ensure_eq(got.content.as_str(), "v2", "content")?;
    ensure_eq(got.embedding, None, "embedding removed")
}

/// A deleted resource is gone from get and from vector search.
pub async fn resource_delete_removes_it_from_get_and_search<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_resource(NewResource::new("a").with_embedding(vec![1.0, 0.0])).await?;
    let b = t.create_resource(NewResource::new("b").with_embedding(vec![0.0, 1.0])).await?;
    t.delete_resource(a.id).await?;
    expect_err(t.get_resource(a.id).await, "not_found")?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![1.0, 0.0], 5)).await?,
        vec![b.id],
        "search after delete",
    )
}

/// Get, update and delete of a missing resource are `NotFound`.
pub async fn missing_resource_is_not_found_everywhere<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ghost = t.create_resource(NewResource::new("ghost")).await?;
    t.delete_resource(ghost.id).await?;
    expect_err(t.get_resource(ghost.id).await, "not_found")?;
    expect_err(t.update_resource(ghost.clone()).await, "not_found")?;
    expect_err(t.delete_resource(ghost.id).await, "not_found")
}

/// NaN and infinite embeddings are invalid, write nothing and fix no dimension.
pub async fn non_finite_embeddings_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        expect_err(
            t.create_resource(NewResource::new("x").with_embedding(vec![1.0, bad])).await,
            "invalid",
        )?;
    }
    ensure(t.scan(RecordKind::Resource, None, 10).await?.is_empty(), "nothing written")?;
    ensure_eq(t.config().await?.dimension, None, "a rejected embedding fixes no dimension")
}

/// Text with NUL is invalid in every field, query and filter, and writes nothing.
pub async fn text_with_nul_is_rejected_everywhere<H: Harness>(h: &mut H) -> Result<()> {
    // PostgreSQL cannot store NUL in text or jsonb; every provider refuses it the same way, so
    // whatever one accepts can move to another.
    let t = tenant(h).await?;
    expect_err(t.create_resource(NewResource::new("a\0b")).await, "invalid")?;
    let mut metadata = Metadata::new();
    metadata.insert("k".into(), serde_json::json!({"nested": ["ok", "x\0"]}));
    expect_err(t.create_resource(NewResource::new("a").with_metadata(metadata)).await, "invalid")?;
    let mut metadata = Metadata::new();
    metadata.insert("k\0".into(), serde_json::json!(1));
    expect_err(t.create_resource(NewResource::new("a").with_metadata(metadata)).await, "invalid")?;
    expect_err(t.create_entity(NewEntity::new("Ada\0", "person")).await, "invalid")?;
    expect_err(t.create_entity(NewEntity::new("Ada", "per\0son")).await, "invalid")?;
    let a = t.create_entity(NewEntity::new("Ada", "person")).await?;
    expect_err(t.create_edge(NewEdge::new(a.id, a.id, "kn\0ows")).await, "invalid")?;
    expect_err(t.search_entities(&EntityQuery::new("A\0")).await, "invalid")?;
    let filter = Filter::parse(&serde_json::json!({"k": "v\0"}))?;
    expect_err(
        t.search_resources(&SearchQuery::new(vec![1.0, 0.0], 1).with_filter(filter)).await,
        "invalid",
    )?;
    ensure(t.scan(RecordKind::Resource, None, 10).await?.is_empty(), "nothing written")
}

/// Fixing the dimension (the first embedding) must not wait for open transactions: the same
/// task may hold one, and then it would wait forever.
pub async fn first_embedding_while_a_transaction_is_open_does_not_block<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let deadline = std::time::Duration::from_secs(30);
    let within = |what: &'static str| move |_| Error::Conflict(format!("{what} still waiting"));
    let mut txn = t.begin().await?;
    txn.create_resource(NewResource::new("plain")).await?;
    // An auto-commit write of the first embedding while this task's transaction holds writes.
    let outside = NewResource::new("outside").with_embedding(vec![1.0, 0.0]);
    tokio::time::timeout(deadline, t.create_resource(outside))
        .await
        .map_err(within("auto-commit first embedding"))??;
    let inside = NewResource::new("inside").with_embedding(vec![0.0, 1.0]);
    tokio::time::timeout(deadline, txn.create_resource(inside))
        .await
        .map_err(within("first embedding in the transaction"))??;
    tokio::time::timeout(deadline, txn.commit()).await.map_err(within("commit"))??;
    // And the same from inside a fresh tenant's transaction, first.
    let u = tenant(h).await?;
    let mut txn = u.begin().await?;
    txn.create_resource(NewResource::new("plain")).await?;
    let first = NewResource::new("first").with_embedding(vec![0.5, 0.5]);
    tokio::time::timeout(deadline, txn.create_resource(first))
        .await
        .map_err(within("first embedding in a transaction that wrote"))??;
    tokio::time::timeout(deadline, txn.commit()).await.map_err(within("commit"))??;
    let hits = u.search_resources(&SearchQuery::new(vec![0.5, 0.5], 5)).await?;
    ensure_eq(hits.len(), 1, "the committed embedding is searchable")
}

/// The first embedding fixes the tenant's dimension for writes, updates and searches.
pub async fn first_embedding_fixes_the_dimension<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(NewResource::new("a").with_embedding(vec![1.0, 2.0, 3.0])).await?;
    ensure_eq(t.config().await?.dimension, Some(3), "dimension fixed")?;
    expect_err(
        t.create_resource(NewResource::new("b").with_embedding(vec![1.0, 2.0])).await,
        "invalid",
    )?;
    let mut r = t.create_resource(NewResource::new("c")).await?;
    r.embedding = Some(vec![1.0; 4]);
    expect_err(t.update_resource(r).await, "invalid")?;
    expect_err(t.search_resources(&SearchQuery::new(vec![1.0, 2.0], 1)).await, "invalid")
}

/// A dimension given at creation is enforced from the first write; dimension 0 is invalid.
pub async fn configured_dimension_is_enforced<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant_with(h, TenantConfig { dimension: Some(4), metric: Metric::Cosine }).await?;
    expect_err(
        t.create_resource(NewResource::new("a").with_embedding(vec![1.0, 2.0, 3.0])).await,
        "invalid",
    )?;
    t.create_resource(NewResource::new("b").with_embedding(vec![1.0, 2.0, 3.0, 4.0])).await?;
    let bad = TenantConfig { dimension: Some(0), metric: Metric::Cosine };
    expect_err(h.engine().create_tenant(&fresh_id(), bad).await, "invalid")
}

/// Empty embeddings and embeddings above `MAX_DIMENSION` are invalid.
pub async fn empty_and_oversized_embeddings_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_resource(NewResource::new("a").with_embedding(vec![])).await, "invalid")?;
    expect_err(
        t.create_resource(NewResource::new("a").with_embedding(vec![0.5; 16_001])).await,
        "invalid",
    )
}

/// A batch with one bad resource is invalid, names its index and writes nothing; an empty
/// batch is invalid.
pub async fn batch_with_one_bad_resource_writes_nothing<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut batch: Vec<NewResource> =
        (0..10).map(|i| NewResource::new(format!("r{i}")).with_embedding(vector(i, 8))).collect();
    batch[7].embedding = Some(vec![f32::NAN; 8]);
    let error = t.batch_create_resources(batch).await;
    ensure(
        matches!(&error, Err(Error::Invalid { reason, .. }) if reason.contains("index 7")),
        format!("{error:?}"),
    )?;
    ensure(t.scan(RecordKind::Resource, None, 100).await?.is_empty(), "nothing written")?;
    expect_err(t.batch_create_resources(Vec::new()).await, "invalid")
}

/// Every resource of a large batch is readable and searchable when the call returns.
pub async fn batch_resources_are_readable_and_searchable_on_return<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let batch: Vec<NewResource> =
        (0..500).map(|i| NewResource::new(format!("r{i}")).with_embedding(vector(i, 16))).collect();
    let created = t.batch_create_resources(batch).await?;
    ensure_eq(created.len(), 500, "count")?;
    // Every one: big batches are encoded (and sealed) in chunks, on more than one thread.
    for r in &created {
        ensure_eq(&t.get_resource(r.id).await?, r, "readable")?;
    }
    // And without embeddings, the batch shape of small notes.
    let notes: Vec<NewResource> = (0..300).map(|i| NewResource::new(format!("n{i}"))).collect();
    for r in &t.batch_create_resources(notes).await? {
        ensure_eq(&t.get_resource(r.id).await?, r, "note readable")?;
    }
    for r in created.iter().step_by(50) {
        let hits =
            search_ids(&t, &SearchQuery::new(r.embedding.clone().unwrap_or_default(), 1)).await?;
        ensure_eq(hits, vec![r.id], "own vector is its nearest")?;
    }
    Ok(())
}

/// Inserting a resource, entity, moment or edge under a taken id fails with `AlreadyExists`.
pub async fn inserting_an_existing_id_fails<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let r = t.create_resource(NewResource::new("a")).await?;
    expect_err(t.insert_resources(std::slice::from_ref(&r)).await, "already_exists")?;
    let e = t.create_entity(NewEntity::new("e", "k")).await?;
    expect_err(t.insert_entity(&e).await, "already_exists")?;
    let m = t.create_moment(NewMoment::new(ts(1), ts(2), "m")).await?;
    expect_err(t.insert_moment(&m).await, "already_exists")?;
    let edge = t.create_edge(NewEdge::new(e.id, e.id, "self")).await?;
    expect_err(t.insert_edge(&edge).await, "already_exists")
}

/// An entity reads back as written; a rename keeps `created_at` and moves it in name search.
pub async fn entity_round_trips_and_updates<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut new = NewEntity::new("Ada Lovelace", "person");
    new.properties = meta(json!({"born": 1815}));
    let e = t.create_entity(new).await?;
    ensure_eq(&t.get_entity(e.id).await?, &e, "stored entity")?;
    let mut renamed = e.clone();
    renamed.name = "Augusta Ada King".into();
    let stored = t.update_entity(renamed).await?;
    ensure_eq(stored.created_at, e.created_at, "created_at kept")?;
    ensure_eq(&t.get_entity(e.id).await?, &stored, "updated entity")?;
    let by_new_name = t.search_entities(&EntityQuery::new("augusta")).await?;
    ensure_eq(by_new_name.len(), 1, "found by new name")?;
    ensure(t.search_entities(&EntityQuery::new("lovelace")).await?.is_empty(), "old name forgotten")
}

/// An entity with an empty name or kind is invalid and writes nothing.
pub async fn entity_name_and_kind_must_not_be_empty<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_entity(NewEntity::new("", "person")).await, "invalid")?;
    expect_err(t.create_entity(NewEntity::new("x", "")).await, "invalid")?;
    ensure(t.scan(RecordKind::Entity, None, 10).await?.is_empty(), "nothing written")
}

/// Get, update, delete and edge listing of a missing entity are `NotFound`.
pub async fn missing_entity_is_not_found_everywhere<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("gone", "k")).await?;
    t.delete_entity(e.id).await?;
    expect_err(t.get_entity(e.id).await, "not_found")?;
    expect_err(t.update_entity(e.clone()).await, "not_found")?;
    expect_err(t.delete_entity(e.id).await, "not_found")?;
    expect_err(t.get_edges(e.id, Direction::Both, None).await, "not_found")
}
