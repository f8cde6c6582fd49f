//! Cases on tenants: their lifecycle, isolation from each other, and what survives a reopen
//! or streams out through a scan. Like every case file, it reaches storage only through the
//! engine and must not name a provider.

use serde_json::json;

use super::{
    Harness, ensure, ensure_eq, expect_err, fresh_id, moments_ids, reached_ids, search_ids, tenant,
    ts, vector,
};
use crate::{
    Direction, EntityQuery, Error, Metric, NewEdge, NewEntity, NewMoment, NewResource, Record,
    RecordKind, Result, SearchQuery, TenantConfig, TenantId, TimeRange, TraverseQuery,
};

/// A created tenant is listed and opens again with its records; once deleted it is neither
/// listed, openable nor deletable.
pub async fn tenant_lifecycle_create_open_list_delete<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    let t = h.engine().create_tenant(&id, TenantConfig::default()).await?;
    ensure_eq(t.id(), &id, "handle id")?;
    let r = t.create_resource(NewResource::new("x")).await?;
    drop(t);
    ensure(h.engine().list_tenants().await?.contains(&id), "listed")?;
    let again = h.engine().tenant(&id).await?;
    ensure_eq(again.get_resource(r.id).await?.content, "x".to_owned(), "reopened tenant content")?;
    drop(again);
    h.engine().delete_tenant(&id).await?;
    ensure(!h.engine().list_tenants().await?.contains(&id), "not listed after delete")?;
    expect_err(h.engine().tenant(&id).await, "not_found")?;
    expect_err(h.engine().delete_tenant(&id).await, "not_found")
}

/// Creating a tenant whose id exists fails with `AlreadyExists`.
pub async fn creating_an_existing_tenant_fails<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    drop(h.engine().create_tenant(&id, TenantConfig::default()).await?);
    expect_err(h.engine().create_tenant(&id, TenantConfig::default()).await, "already_exists")
}

/// Opening a missing tenant is `NotFound`; ids outside the tenant alphabet are rejected by
/// the constructor and by deserialization.
pub async fn opening_a_missing_tenant_is_not_found<H: Harness>(h: &mut H) -> Result<()> {
    expect_err(h.engine().tenant(&fresh_id()).await, "not_found")?;
    for bad in
        ["", "../x", "..", "A", "Acme", "acme/../b", "ünïcode", "a b", "a\0b", &"a".repeat(300)]
    {
        expect_err(TenantId::new(bad), "invalid")?;
        let parsed: std::result::Result<TenantId, _> = serde_json::from_value(json!(bad));
        ensure(parsed.is_err(), format!("{bad:?} deserialized as a tenant id"))?;
    }
    Ok(())
}

/// A tenant deleted and created again has no records, no vectors and no fixed dimension.
pub async fn deleted_tenant_comes_back_empty<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    let t = h.engine().create_tenant(&id, TenantConfig::default()).await?;
    let r = t.create_resource(NewResource::new("old").with_embedding(vec![1.0, 0.0])).await?;
    drop(t);
    h.engine().delete_tenant(&id).await?;
    let t = h.engine().create_tenant(&id, TenantConfig::default()).await?;
    expect_err(t.get_resource(r.id).await, "not_found")?;
    ensure(
        t.search_resources(&SearchQuery::new(vec![1.0, 0.0], 5)).await?.is_empty(),
        "old vectors gone",
    )?;
    ensure_eq(t.config().await?.dimension, None, "dimension reset")
}

/// Nothing written through one tenant is visible, searchable, traversable, changeable or
/// deletable through another.
pub async fn tenants_are_isolated<H: Harness>(h: &mut H) -> Result<()> {
    let a = tenant(h).await?;
    let b = tenant(h).await?;
    let r = a.create_resource(NewResource::new("secret").with_embedding(vec![1.0, 0.0])).await?;
    let x = a.create_entity(NewEntity::new("Secret Person", "person")).await?;
    let y = a.create_entity(NewEntity::new("Other", "person")).await?;
    let edge = a.create_edge(NewEdge::new(x.id, y.id, "knows")).await?;
    let m = a.create_moment(NewMoment::new(ts(1), ts(2), "m")).await?;
    b.create_resource(NewResource::new("b's own").with_embedding(vec![0.0, 1.0])).await?;

    expect_err(b.get_resource(r.id).await, "not_found")?;
    expect_err(b.update_resource(r.clone()).await, "not_found")?;
    expect_err(b.delete_resource(r.id).await, "not_found")?;
    expect_err(b.get_entity(x.id).await, "not_found")?;
    expect_err(b.update_entity(x.clone()).await, "not_found")?;
    expect_err(b.delete_entity(x.id).await, "not_found")?;
    expect_err(b.get_edge(edge.id).await, "not_found")?;
    expect_err(b.delete_edge(edge.id).await, "not_found")?;
    expect_err(b.get_edges(x.id, Direction::Both, None).await, "not_found")?;
    expect_err(b.create_edge(NewEdge::new(x.id, y.id, "r")).await, "not_found")?;
    expect_err(b.traverse(&TraverseQuery::new(x.id, 3)).await, "not_found")?;
    expect_err(b.get_moment(m.id).await, "not_found")?;
    expect_err(b.delete_moment(m.id).await, "not_found")?;
    let hits = b.search_resources(&SearchQuery::new(vec![1.0, 0.0], 10)).await?;
    ensure(hits.iter().all(|hit| hit.resource.content == "b's own"), "b's search sees only b")?;
    ensure(b.search_entities(&EntityQuery::new("secret")).await?.is_empty(), "entity search")?;
    ensure(b.moments_in_range(&TimeRange::all()).await?.is_empty(), "moments")?;
    ensure(b.scan(RecordKind::Entity, None, 10).await?.is_empty(), "scan")?;
    // B may store a record under A's id: it lives in B only, and A's record is untouched.
    b.insert_resources(std::slice::from_ref(&r)).await?;
    b.delete_resource(r.id).await?;
    ensure_eq(a.get_resource(r.id).await?.content, "secret".to_owned(), "a untouched")?;
    ensure_eq(a.get_edges(x.id, Direction::Out, None).await?.len(), 1, "a's edge untouched")
}

/// Records, their indexes and the tenant's configuration survive [`Harness::reopen`].
pub async fn reopen_keeps_everything<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    let (r, a, b, edge, m) = {
        let t = h
            .engine()
            .create_tenant(&id, TenantConfig { dimension: None, metric: Metric::L2 })
            .await?;
        let r =
            t.create_resource(NewResource::new("durable").with_embedding(vec![0.5, 0.25])).await?;
        let a = t.create_entity(NewEntity::new("Alpha", "k")).await?;
        let b = t.create_entity(NewEntity::new("Beta", "k")).await?;
        let edge = t.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
        let m = t.create_moment(NewMoment::new(ts(5), ts(500), "m")).await?;
        (r, a, b, edge, m)
    };
    h.reopen().await;
    let t = h.engine().tenant(&id).await?;
    ensure_eq(
        t.config().await?,
        TenantConfig { dimension: Some(2), metric: Metric::L2 },
        "config",
    )?;
    ensure_eq(t.get_resource(r.id).await?, r.clone(), "resource")?;
    ensure_eq(t.get_entity(a.id).await?, a.clone(), "entity")?;
    ensure_eq(t.get_edges(b.id, Direction::In, None).await?, vec![edge], "edge")?;
    ensure_eq(t.get_moment(m.id).await?, m.clone(), "moment")?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(400), ts(401))).await?,
        vec![m.id],
        "moment span survives",
    )?;
    ensure_eq(search_ids(&t, &SearchQuery::new(vec![0.5, 0.25], 1)).await?, vec![r.id], "search")?;
    ensure_eq(t.search_entities(&EntityQuery::new("alp")).await?.len(), 1, "name index")?;
    ensure_eq(
        reached_ids(&t.traverse(&TraverseQuery::new(a.id, 1)).await?),
        vec![(b.id, 1)],
        "traversal",
    )?;
    expect_err(t.create_resource(NewResource::new("x").with_embedding(vec![1.0])).await, "invalid")
}

/// [`crate::MemoryEngine::release_memory`] (an app going to the background) keeps every write,
/// open handles keep working through it, and what follows reads and writes as before: also
/// after a reopen.
pub async fn release_memory_keeps_every_write_and_handle<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    let held = h.engine().create_tenant(&id, TenantConfig::default()).await?;
    let idle_id = fresh_id();
    let idle = h.engine().create_tenant(&idle_id, TenantConfig::default()).await?;
    let kept = idle.create_resource(NewResource::new("idle")).await?;
    drop(idle);
    let mut written = Vec::new();
    for i in 0..40u8 {
        let v = vector(u64::from(i), 8);
        written
            .push(held.create_resource(NewResource::new(format!("r{i}")).with_embedding(v)).await?);
    }
    let a = held.create_entity(NewEntity::new("Alpha", "k")).await?;
    let b = held.create_entity(NewEntity::new("Beta", "k")).await?;
    held.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
    h.engine().release_memory().await?;
    for r in &written {
        ensure_eq(held.get_resource(r.id).await?, r.clone(), "held handle reads after release")?;
    }
    let target = written[7].embedding.clone().unwrap_or_default();
    ensure_eq(
        search_ids(&held, &SearchQuery::new(target, 1)).await?,
        vec![written[7].id],
        "search after release",
    )?;
    ensure_eq(
        reached_ids(&held.traverse(&TraverseQuery::new(a.id, 1)).await?),
        vec![(b.id, 1)],
        "traversal after release",
    )?;
    let after = held.create_resource(NewResource::new("after")).await?;
    ensure_eq(
        h.engine().tenant(&idle_id).await?.get_resource(kept.id).await?,
        kept,
        "an idle tenant reopens",
    )?;
    h.engine().release_memory().await?;
    drop(held);
    h.reopen().await;
    let t = h.engine().tenant(&id).await?;
    ensure_eq(t.get_resource(after.id).await?, after, "a write after release survives reopen")?;
    ensure_eq(t.get_resource(written[39].id).await?, written[39].clone(), "reopened")
}

/// Scan pages through every record once, in id order, embeddings included.
pub async fn scan_pages_through_every_record<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let created = t
        .batch_create_resources(
            (0..25)
                .map(|i| NewResource::new(format!("r{i}")).with_embedding(vector(i, 4)))
                .collect(),
        )
        .await?;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = t.scan(RecordKind::Resource, after, 7).await?;
        if page.is_empty() {
            break;
        }
        for record in page {
            let Record::Resource(r) = record else {
                return Err(Error::invalid("scan", "wrong kind"));
            };
            after = Some(r.id.as_uuid());
            seen.push(r);
        }
    }
    let mut expected = created;
    expected.sort_by_key(|r| r.id);
    ensure_eq(seen, expected, "every resource once, in id order, with embeddings")?;
    expect_err(t.scan(RecordKind::Resource, None, 0).await, "invalid")
}

/// Oversized names, uris, content, metadata and query text are invalid.
pub async fn oversized_fields_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut big = crate::Metadata::new();
    big.insert("blob".into(), json!("m".repeat(crate::MAX_METADATA_BYTES)));
    let mut r = NewResource::new("x");
    r.metadata = big.clone();
    expect_err(t.create_resource(r).await, "invalid")?;
    let mut e = NewEntity::new("n", "k");
    e.properties = big;
    expect_err(t.create_entity(e).await, "invalid")?;
    expect_err(t.create_entity(NewEntity::new("n".repeat(2000), "k")).await, "invalid")?;
    let mut r = NewResource::new("x");
    r.uri = Some("u".repeat(5000));
    expect_err(t.create_resource(r).await, "invalid")?;
    expect_err(t.create_resource(NewResource::new("c".repeat(17 << 20))).await, "invalid")?;
    expect_err(t.search_entities(&EntityQuery::new("q".repeat(5000))).await, "invalid")
}
