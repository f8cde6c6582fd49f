//! The conformance suite: every case runs against every provider.
//!
//! Each case is a generic `async fn case<H: Harness>(h: &mut H) -> Result<()>` that makes its
//! own tenant, so cases are independent and can share one server. A provider's test file
//! implements [`Harness`] and expands every case with `conformance_suite!(ItsHarness);`.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;

use percolate::{
    Direction, EntityId, EntityQuery, Error, Filter, MemoryEngine, Metadata, Metric, NewEdge,
    NewEntity, NewMoment, NewResource, Provider, Reached, Record, RecordKind, Resource, Result,
    SearchQuery, TenantConfig, TenantHandle, TenantId, TimeRange, Timestamp, TraverseQuery,
};
use serde_json::json;

/// How the suite gets an engine for a provider.
pub trait Harness: Sized + Send + 'static {
    /// The provider under test.
    type P: Provider;
    /// A fresh engine.
    fn new() -> impl Future<Output = Self> + Send;
    /// The engine.
    fn engine(&self) -> &MemoryEngine<Self::P>;
    /// Drops the engine and opens a new one on the same storage.
    fn reopen(&mut self) -> impl Future<Output = ()> + Send;
}

/// Expands every case into a `#[tokio::test]` for `$harness`.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@cases $harness;
            tenant_lifecycle_create_open_list_delete,
            creating_an_existing_tenant_fails,
            opening_a_missing_tenant_is_not_found,
            deleted_tenant_comes_back_empty,
            resource_round_trips,
            resource_update_keeps_created_at_and_replaces_fields,
            resource_delete_removes_it_from_get_and_search,
            missing_resource_is_not_found_everywhere,
            non_finite_embeddings_are_rejected,
            text_with_nul_is_rejected_everywhere,
            first_embedding_while_a_transaction_is_open_does_not_block,
            first_embedding_fixes_the_dimension,
            configured_dimension_is_enforced,
            empty_and_oversized_embeddings_are_rejected,
            batch_with_one_bad_resource_writes_nothing,
            batch_resources_are_readable_and_searchable_on_return,
            inserting_an_existing_id_fails,
            entity_round_trips_and_updates,
            entity_name_and_kind_must_not_be_empty,
            missing_entity_is_not_found_everywhere,
            edge_is_visible_from_both_ends,
            edge_to_a_missing_entity_is_rejected_and_not_written,
            edges_filter_by_relation,
            self_loop_is_listed_once,
            deleting_an_edge_removes_it_from_both_ends,
            deleting_an_entity_deletes_its_edges,
            edge_weight_and_relation_are_validated,
            traversal_on_a_cyclic_graph_reaches_each_entity_once,
            traversal_stops_at_its_depth,
            traversal_follows_its_direction,
            traversal_follows_only_its_relations,
            traversal_rejects_bad_input,
            moment_round_trips_updates_and_deletes,
            moment_ending_before_it_starts_is_rejected,
            moments_touching_the_range_are_included,
            moments_with_open_range_ends,
            long_moment_overlapping_a_later_range_is_found,
            moment_update_moves_it_in_time,
            exact_search_matches_brute_force,
            filter_is_applied_before_the_top_k_cut,
            search_rejects_bad_k_and_bad_vectors,
            search_uses_the_tenant_metric,
            search_sees_updates_and_deletes,
            search_without_embeddings_is_empty,
            entity_search_matches_word_prefixes,
            entity_search_filters_kind_and_properties,
            tenants_are_isolated,
            transaction_writes_are_invisible_until_commit,
            transaction_rollback_discards_writes,
            dropped_transaction_rolls_back,
            transaction_reads_its_own_writes,
            transaction_reads_one_snapshot,
            get_never_pairs_a_record_with_another_writes_embedding,
            concurrent_conflicting_commit_fails_with_conflict,
            edge_insert_racing_entity_delete_cannot_both_commit,
            reopen_keeps_everything,
            scan_pages_through_every_record,
            oversized_fields_are_rejected,
        );
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let mut harness = <$harness as $crate::conformance::Harness>::new().await;
                if let Err(e) = $crate::conformance::$case(&mut harness).await {
                    panic!("{}: {e} ({e:?})", stringify!($case));
                }
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn fresh_id() -> TenantId {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    // The random tail of a v7 uuid keeps concurrent cases apart.
    TenantId::new(format!("t{}", &uuid[uuid.len() - 20..])).expect("valid tenant id")
}

async fn tenant<H: Harness>(h: &H) -> Result<TenantHandle<H::P>> {
    h.engine().create_tenant(&fresh_id(), TenantConfig::default()).await
}

async fn tenant_with<H: Harness>(h: &H, config: TenantConfig) -> Result<TenantHandle<H::P>> {
    h.engine().create_tenant(&fresh_id(), config).await
}

fn meta(value: serde_json::Value) -> Metadata {
    value.as_object().cloned().expect("an object")
}

fn ensure(condition: bool, message: impl std::fmt::Display) -> Result<()> {
    if condition { Ok(()) } else { Err(Error::invalid("assertion", message.to_string())) }
}

fn ensure_eq<T: PartialEq + std::fmt::Debug>(left: T, right: T, message: &str) -> Result<()> {
    ensure(left == right, format!("{message}: {left:?} != {right:?}"))
}

fn expect_err<T: std::fmt::Debug>(result: Result<T>, kind: &str) -> Result<()> {
    let matched = matches!(
        (&result, kind),
        (Err(Error::Invalid { .. }), "invalid")
            | (Err(Error::NotFound { .. }), "not_found")
            | (Err(Error::AlreadyExists { .. }), "already_exists")
            | (Err(Error::Conflict(_)), "conflict")
    );
    ensure(matched, format!("expected {kind}, got {result:?}"))
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_micros(seconds * 1_000_000)
}

/// A deterministic pseudo-random vector, so cases need no RNG dependency.
pub(crate) fn vector(seed: u64, dimension: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..dimension)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Brute-force distance, computed here in f64 independently of the library.
pub(crate) fn brute_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    match metric {
        Metric::Cosine => {
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum(),
        Metric::Dot => -dot,
    }
}

fn brute_top_k(
    metric: Metric,
    items: &[Resource],
    query: &[f32],
    k: usize,
) -> Vec<percolate::ResourceId> {
    let mut scored: Vec<(f64, percolate::ResourceId)> = items
        .iter()
        .filter_map(|r| r.embedding.as_ref().map(|e| (brute_distance(metric, e, query), r.id)))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

async fn search_ids<P: Provider>(
    t: &TenantHandle<P>,
    query: &SearchQuery,
) -> Result<Vec<percolate::ResourceId>> {
    Ok(t.search_resources(query).await?.into_iter().map(|hit| hit.resource.id).collect())
}

fn reached_ids(reached: &[Reached]) -> Vec<(EntityId, u32)> {
    reached.iter().map(|r| (r.entity, r.depth)).collect()
}

// ---------------------------------------------------------------------------------------------
// Tenants

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

pub async fn creating_an_existing_tenant_fails<H: Harness>(h: &mut H) -> Result<()> {
    let id = fresh_id();
    drop(h.engine().create_tenant(&id, TenantConfig::default()).await?);
    expect_err(h.engine().create_tenant(&id, TenantConfig::default()).await, "already_exists")
}

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

// ---------------------------------------------------------------------------------------------
// Resources

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

pub async fn missing_resource_is_not_found_everywhere<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ghost = t.create_resource(NewResource::new("ghost")).await?;
    t.delete_resource(ghost.id).await?;
    expect_err(t.get_resource(ghost.id).await, "not_found")?;
    expect_err(t.update_resource(ghost.clone()).await, "not_found")?;
    expect_err(t.delete_resource(ghost.id).await, "not_found")
}

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

pub async fn empty_and_oversized_embeddings_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_resource(NewResource::new("a").with_embedding(vec![])).await, "invalid")?;
    expect_err(
        t.create_resource(NewResource::new("a").with_embedding(vec![0.5; 16_001])).await,
        "invalid",
    )
}

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

// ---------------------------------------------------------------------------------------------
// Entities and edges

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

pub async fn entity_name_and_kind_must_not_be_empty<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_entity(NewEntity::new("", "person")).await, "invalid")?;
    expect_err(t.create_entity(NewEntity::new("x", "")).await, "invalid")?;
    ensure(t.scan(RecordKind::Entity, None, 10).await?.is_empty(), "nothing written")
}

pub async fn missing_entity_is_not_found_everywhere<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("gone", "k")).await?;
    t.delete_entity(e.id).await?;
    expect_err(t.get_entity(e.id).await, "not_found")?;
    expect_err(t.update_entity(e.clone()).await, "not_found")?;
    expect_err(t.delete_entity(e.id).await, "not_found")?;
    expect_err(t.get_edges(e.id, Direction::Both, None).await, "not_found")
}

pub async fn edge_is_visible_from_both_ends<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let b = t.create_entity(NewEntity::new("b", "k")).await?;
    let mut new = NewEdge::new(a.id, b.id, "knows");
    new.weight = 0.5;
    new.properties = meta(json!({"since": 2020}));
    let edge = t.create_edge(new).await?;
    ensure_eq(&t.get_edge(edge.id).await?, &edge, "stored edge")?;
    ensure_eq(t.get_edges(a.id, Direction::Out, None).await?, vec![edge.clone()], "out of a")?;
    ensure_eq(t.get_edges(b.id, Direction::In, None).await?, vec![edge.clone()], "into b")?;
    ensure(t.get_edges(a.id, Direction::In, None).await?.is_empty(), "nothing into a")?;
    ensure_eq(t.get_edges(b.id, Direction::Both, None).await?, vec![edge], "both of b")
}

pub async fn edge_to_a_missing_entity_is_rejected_and_not_written<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    expect_err(t.create_edge(NewEdge::new(a.id, EntityId::new(), "r")).await, "not_found")?;
    expect_err(t.create_edge(NewEdge::new(EntityId::new(), a.id, "r")).await, "not_found")?;
    ensure(t.get_edges(a.id, Direction::Both, None).await?.is_empty(), "no edge written")?;
    ensure(t.scan(RecordKind::Edge, None, 10).await?.is_empty(), "no edge record")
}

pub async fn edges_filter_by_relation<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let b = t.create_entity(NewEntity::new("b", "k")).await?;
    let knows = t.create_edge(NewEdge::new(a.id, b.id, "knows")).await?;
    let likes = t.create_edge(NewEdge::new(a.id, b.id, "likes")).await?;
    let know = t.create_edge(NewEdge::new(a.id, b.id, "know")).await?;
    ensure_eq(
        t.get_edges(a.id, Direction::Out, Some("knows")).await?,
        vec![knows.clone()],
        "knows only",
    )?;
    ensure_eq(
        t.get_edges(a.id, Direction::Out, Some("know")).await?,
        vec![know.clone()],
        "prefix is not a match",
    )?;
    ensure_eq(
        t.get_edges(a.id, Direction::Out, None).await?,
        vec![knows, likes, know],
        "all, by id",
    )?;
    expect_err(t.get_edges(a.id, Direction::Out, Some("")).await, "invalid")
}

pub async fn self_loop_is_listed_once<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let edge = t.create_edge(NewEdge::new(a.id, a.id, "self")).await?;
    ensure_eq(t.get_edges(a.id, Direction::Both, None).await?, vec![edge.clone()], "once")?;
    ensure(t.traverse(&TraverseQuery::new(a.id, 3)).await?.is_empty(), "the start is not reached")?;
    t.delete_entity(a.id).await?;
    expect_err(t.get_edge(edge.id).await, "not_found")
}

pub async fn deleting_an_edge_removes_it_from_both_ends<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let b = t.create_entity(NewEntity::new("b", "k")).await?;
    let edge = t.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
    t.delete_edge(edge.id).await?;
    expect_err(t.get_edge(edge.id).await, "not_found")?;
    expect_err(t.delete_edge(edge.id).await, "not_found")?;
    ensure(t.get_edges(a.id, Direction::Both, None).await?.is_empty(), "a clean")?;
    ensure(t.get_edges(b.id, Direction::Both, None).await?.is_empty(), "b clean")?;
    ensure(t.traverse(&TraverseQuery::new(a.id, 2)).await?.is_empty(), "untraversable")
}

pub async fn deleting_an_entity_deletes_its_edges<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let b = t.create_entity(NewEntity::new("b", "k")).await?;
    let c = t.create_entity(NewEntity::new("c", "k")).await?;
    let ab = t.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
    let cb = t.create_edge(NewEdge::new(c.id, b.id, "r")).await?;
    let bc = t.create_edge(NewEdge::new(b.id, c.id, "s")).await?;
    t.delete_entity(b.id).await?;
    for edge in [ab.id, cb.id, bc.id] {
        expect_err(t.get_edge(edge).await, "not_found")?;
    }
    ensure(t.get_edges(a.id, Direction::Both, None).await?.is_empty(), "a has no edges")?;
    ensure(t.get_edges(c.id, Direction::Both, None).await?.is_empty(), "c has no edges")?;
    ensure(t.scan(RecordKind::Edge, None, 10).await?.is_empty(), "no edge records left")?;
    ensure(t.search_entities(&EntityQuery::new("b")).await?.is_empty(), "name index cleaned")
}

pub async fn edge_weight_and_relation_are_validated<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let mut nan = NewEdge::new(a.id, a.id, "r");
    nan.weight = f32::NAN;
    expect_err(t.create_edge(nan).await, "invalid")?;
    expect_err(t.create_edge(NewEdge::new(a.id, a.id, "")).await, "invalid")?;
    expect_err(t.create_edge(NewEdge::new(a.id, a.id, "r".repeat(5000))).await, "invalid")
}

// ---------------------------------------------------------------------------------------------
// Traversal

/// a -> b -> c -> a (cycle), c -> d, d -> e, plus a -knows-> x.
async fn cyclic_graph<P: Provider>(t: &TenantHandle<P>) -> Result<HashMap<&'static str, EntityId>> {
    let mut ids = HashMap::new();
    for name in ["a", "b", "c", "d", "e", "x"] {
        ids.insert(name, t.create_entity(NewEntity::new(name, "node")).await?.id);
    }
    for (from, to, relation) in [
        ("a", "b", "next"),
        ("b", "c", "next"),
        ("c", "a", "next"),
        ("c", "d", "next"),
        ("d", "e", "next"),
        ("a", "x", "knows"),
    ] {
        t.create_edge(NewEdge::new(ids[from], ids[to], relation)).await?;
    }
    Ok(ids)
}

fn expected(ids: &HashMap<&str, EntityId>, pairs: &[(&str, u32)]) -> Vec<(EntityId, u32)> {
    let mut out: Vec<(EntityId, u32)> = pairs.iter().map(|(n, d)| (ids[n], *d)).collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    out
}

pub async fn traversal_on_a_cyclic_graph_reaches_each_entity_once<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let reached = t.traverse(&TraverseQuery::new(ids["a"], 10)).await?;
    ensure_eq(
        reached_ids(&reached),
        expected(&ids, &[("b", 1), ("x", 1), ("c", 2), ("d", 3), ("e", 4)]),
        "reached",
    )?;
    let unique: HashSet<EntityId> = reached.iter().map(|r| r.entity).collect();
    ensure_eq(unique.len(), reached.len(), "each once")
}

pub async fn traversal_stops_at_its_depth<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let reached = t.traverse(&TraverseQuery::new(ids["a"], 2)).await?;
    ensure_eq(reached_ids(&reached), expected(&ids, &[("b", 1), ("x", 1), ("c", 2)]), "depth 2")?;
    let one = t.traverse(&TraverseQuery::new(ids["a"], 1)).await?;
    ensure_eq(reached_ids(&one), expected(&ids, &[("b", 1), ("x", 1)]), "depth 1")
}

pub async fn traversal_follows_its_direction<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let incoming =
        t.traverse(&TraverseQuery::new(ids["d"], 2).with_direction(Direction::In)).await?;
    ensure_eq(reached_ids(&incoming), expected(&ids, &[("c", 1), ("b", 2)]), "in")?;
    let both = t.traverse(&TraverseQuery::new(ids["d"], 1).with_direction(Direction::Both)).await?;
    ensure_eq(reached_ids(&both), expected(&ids, &[("c", 1), ("e", 1)]), "both")
}

pub async fn traversal_follows_only_its_relations<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let knows = t.traverse(&TraverseQuery::new(ids["a"], 5).with_relations(["knows"])).await?;
    ensure_eq(reached_ids(&knows), expected(&ids, &[("x", 1)]), "knows")?;
    let next =
        t.traverse(&TraverseQuery::new(ids["a"], 2).with_relations(["next", "missing"])).await?;
    ensure_eq(reached_ids(&next), expected(&ids, &[("b", 1), ("c", 2)]), "next")
}

pub async fn traversal_rejects_bad_input<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    expect_err(t.traverse(&TraverseQuery::new(EntityId::new(), 2)).await, "not_found")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 0)).await, "invalid")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 1000)).await, "invalid")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 2).with_relations([""])).await, "invalid")
}

// ---------------------------------------------------------------------------------------------
// Moments

pub async fn moment_round_trips_updates_and_deletes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("ada", "person")).await?;
    let mut new = NewMoment::new(ts(100), ts(200), "meeting");
    new.content = "standup".into();
    new.entities.push(e.id);
    new.metadata = meta(json!({"room": 4}));
    let m = t.create_moment(new).await?;
    ensure_eq(&t.get_moment(m.id).await?, &m, "stored")?;
    let mut changed = m.clone();
    changed.content = "retro".into();
    ensure_eq(&t.update_moment(changed.clone()).await?, &changed, "updated")?;
    ensure_eq(&t.get_moment(m.id).await?, &changed, "stored update")?;
    t.delete_moment(m.id).await?;
    expect_err(t.get_moment(m.id).await, "not_found")?;
    expect_err(t.update_moment(changed).await, "not_found")?;
    expect_err(t.delete_moment(m.id).await, "not_found")?;
    ensure(t.moments_in_range(&TimeRange::all()).await?.is_empty(), "time index cleaned")
}

pub async fn moment_ending_before_it_starts_is_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_moment(NewMoment::new(ts(10), ts(9), "m")).await, "invalid")?;
    expect_err(t.create_moment(NewMoment::new(ts(1), ts(2), "")).await, "invalid")?;
    expect_err(t.moments_in_range(&TimeRange::new(ts(5), ts(4))).await, "invalid")?;
    ensure(t.scan(RecordKind::Moment, None, 10).await?.is_empty(), "nothing written")
}

async fn moments_ids<P: Provider>(
    t: &TenantHandle<P>,
    range: TimeRange,
) -> Result<Vec<percolate::MomentId>> {
    Ok(t.moments_in_range(&range).await?.into_iter().map(|m| m.id).collect())
}

pub async fn moments_touching_the_range_are_included<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let before = t.create_moment(NewMoment::new(ts(0), ts(10), "m")).await?;
    let instant = t.create_moment(NewMoment::new(ts(20), ts(20), "m")).await?;
    let after = t.create_moment(NewMoment::new(ts(20), ts(30), "m")).await?;
    let outside = t.create_moment(NewMoment::new(ts(31), ts(40), "m")).await?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(10), ts(20))).await?,
        vec![before.id, instant.id, after.id],
        "touching",
    )?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(11), ts(19))).await?, vec![], "gap")?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(20), ts(20))).await?,
        vec![instant.id, after.id],
        "instant range",
    )?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(35), ts(35))).await?, vec![outside.id], "inside")
}

pub async fn moments_with_open_range_ends<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let early = t.create_moment(NewMoment::new(ts(-50), ts(-40), "m")).await?;
    let late = t.create_moment(NewMoment::new(ts(40), ts(50), "m")).await?;
    let until_zero = TimeRange { start: None, end: Some(ts(0)) };
    let from_zero = TimeRange { start: Some(ts(0)), end: None };
    ensure_eq(moments_ids(&t, until_zero).await?, vec![early.id], "open start")?;
    ensure_eq(moments_ids(&t, from_zero).await?, vec![late.id], "open end")?;
    ensure_eq(moments_ids(&t, TimeRange::all()).await?, vec![early.id, late.id], "all, by start")
}

pub async fn long_moment_overlapping_a_later_range_is_found<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let long = t.create_moment(NewMoment::new(ts(0), ts(1_000_000), "m")).await?;
    let mut short = Vec::new();
    for i in 0..20 {
        short
            .push(t.create_moment(NewMoment::new(ts(500_000 + i), ts(500_000 + i), "m")).await?.id);
    }
    let found = moments_ids(&t, TimeRange::new(ts(999_999), ts(2_000_000))).await?;
    ensure_eq(found, vec![long.id], "long moment found far from its start")?;
    let found = moments_ids(&t, TimeRange::new(ts(500_005), ts(500_006))).await?;
    ensure_eq(found, vec![long.id, short[5], short[6]], "ordered by start")
}

pub async fn moment_update_moves_it_in_time<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let m = t.create_moment(NewMoment::new(ts(10), ts(20), "m")).await?;
    let mut moved = m.clone();
    moved.start = ts(100);
    moved.end = ts(110);
    t.update_moment(moved).await?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(0), ts(50))).await?, vec![], "gone from old time")?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(105), ts(105))).await?,
        vec![m.id],
        "found at new time",
    )?;
    let mut backwards = m.clone();
    backwards.end = ts(0);
    expect_err(t.update_moment(backwards).await, "invalid")
}

// ---------------------------------------------------------------------------------------------
// Vector search

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

pub async fn search_without_embeddings_is_empty<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    t.create_resource(NewResource::new("text only")).await?;
    ensure(t.search_resources(&SearchQuery::new(vec![1.0, 2.0], 3)).await?.is_empty(), "empty")
}

// ---------------------------------------------------------------------------------------------
// Entity search

pub async fn entity_search_matches_word_prefixes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ada = t.create_entity(NewEntity::new("Ada Lovelace", "person")).await?;
    let charles = t.create_entity(NewEntity::new("Charles Babbage", "person")).await?;
    let engine = t.create_entity(NewEntity::new("Analytical Engine", "machine")).await?;
    let names = |found: Vec<percolate::Entity>| found.into_iter().map(|e| e.id).collect::<Vec<_>>();
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

// ---------------------------------------------------------------------------------------------
// Isolation

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

// ---------------------------------------------------------------------------------------------
// Transactions

pub async fn transaction_writes_are_invisible_until_commit<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut txn = t.begin().await?;
    let r = txn.create_resource(NewResource::new("pending").with_embedding(vec![1.0, 0.0])).await?;
    let e = txn.create_entity(NewEntity::new("pending", "k")).await?;
    expect_err(t.get_resource(r.id).await, "not_found")?;
    expect_err(t.get_entity(e.id).await, "not_found")?;
    ensure(
        t.search_entities(&EntityQuery::new("pending")).await?.is_empty(),
        "not searchable yet",
    )?;
    txn.commit().await?;
    ensure_eq(t.get_resource(r.id).await?, r, "visible after commit")?;
    ensure_eq(t.get_entity(e.id).await?, e, "entity visible after commit")?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![1.0, 0.0], 1)).await?.len(),
        1,
        "searchable after commit",
    )
}

pub async fn transaction_rollback_discards_writes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let keep = t.create_entity(NewEntity::new("keep", "k")).await?;
    let mut txn = t.begin().await?;
    let r = txn.create_resource(NewResource::new("gone")).await?;
    txn.delete_entity(keep.id).await?;
    txn.rollback().await?;
    expect_err(t.get_resource(r.id).await, "not_found")?;
    ensure_eq(t.get_entity(keep.id).await?, keep, "delete rolled back")
}

pub async fn dropped_transaction_rolls_back<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let id = {
        let mut txn = t.begin().await?;
        txn.create_entity(NewEntity::new("dropped", "k")).await?.id
    };
    expect_err(t.get_entity(id).await, "not_found")?;
    // The engine stays usable after a dropped transaction.
    let e = t.create_entity(NewEntity::new("after", "k")).await?;
    ensure_eq(t.get_entity(e.id).await?, e, "usable")
}

pub async fn transaction_reads_its_own_writes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut txn = t.begin().await?;
    let a = txn.create_entity(NewEntity::new("a", "k")).await?;
    let b = txn.create_entity(NewEntity::new("b", "k")).await?;
    let edge = txn.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
    ensure_eq(txn.get_entity(a.id).await?, a.clone(), "own entity")?;
    ensure_eq(txn.get_edges(a.id, Direction::Out, None).await?, vec![edge.clone()], "own edge")?;
    let r = txn.create_resource(NewResource::new("r")).await?;
    let mut changed = r.clone();
    changed.content = "r2".into();
    txn.update_resource(changed).await?;
    ensure_eq(txn.get_resource(r.id).await?.content, "r2".to_owned(), "own update")?;
    let m = txn.create_moment(NewMoment::new(ts(1), ts(2), "m")).await?;
    ensure_eq(txn.get_moment(m.id).await?, m.clone(), "own moment")?;
    txn.delete_edge(edge.id).await?;
    expect_err(txn.get_edge(edge.id).await, "not_found")?;
    txn.commit().await?;
    ensure(
        t.get_edges(a.id, Direction::Out, None).await?.is_empty(),
        "deleted edge stays deleted",
    )?;
    ensure_eq(t.get_moment(m.id).await?, m, "moment committed")
}

/// A transaction's reads see one state: what commits elsewhere after its first read stays
/// invisible to it (PostgreSQL's `REPEATABLE READ`, a RocksDB snapshot).
pub async fn transaction_reads_one_snapshot<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("before", "k")).await?;
    let r = t.create_resource(NewResource::new("before").with_embedding(vec![1.0, 0.0])).await?;
    let mut txn = t.begin().await?;
    ensure_eq(txn.get_entity(e.id).await?, e.clone(), "first read")?;
    let mut renamed = e.clone();
    renamed.name = "after".into();
    t.update_entity(renamed).await?;
    let mut changed = r.clone();
    changed.content = "after".into();
    changed.embedding = Some(vec![0.0, 1.0]);
    t.update_resource(changed).await?;
    let other = t.create_entity(NewEntity::new("later", "k")).await?;
    ensure_eq(txn.get_entity(e.id).await?, e, "entity as of the snapshot")?;
    ensure_eq(txn.get_resource(r.id).await?, r.clone(), "resource as of the snapshot")?;
    expect_err(txn.get_entity(other.id).await, "not_found")?;
    txn.commit().await?;
    ensure_eq(t.get_resource(r.id).await?.content, "after".to_owned(), "visible after")
}

/// A resource's record and embedding are written together and read together: a get racing
/// updates returns one update's content with that update's embedding, never a mix.
pub async fn get_never_pairs_a_record_with_another_writes_embedding<H: Harness>(
    h: &mut H,
) -> Result<()> {
    const UPDATES: u32 = 2000;
    let t = tenant(h).await?;
    let r = t.create_resource(NewResource::new("0").with_embedding(vec![0.0, 1.0])).await?;
    let writer = {
        let t = t.clone();
        let r = r.clone();
        tokio::spawn(async move {
            for n in 1..=UPDATES {
                let mut next = r.clone();
                next.content = n.to_string();
                next.embedding = Some(vec![n as f32, 1.0]);
                t.update_resource(next).await?;
            }
            Ok::<_, Error>(())
        })
    };
    let mut reads = 0u64;
    while !writer.is_finished() {
        let got = t.get_resource(r.id).await?;
        let embedding = got.embedding.as_deref().unwrap_or_default();
        ensure(
            embedding.first().map(|&x| x.to_string()) == Some(got.content.clone()),
            format!("content {:?} read with embedding {embedding:?}", got.content),
        )?;
        reads += 1;
    }
    writer.await.map_err(|e| Error::invalid("writer", e.to_string()))??;
    ensure(reads > 0, "the reader ran while the writer did")
}

pub async fn concurrent_conflicting_commit_fails_with_conflict<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("contended", "k")).await?;
    let mut first = t.begin().await?;
    let mut second = t.begin().await?;
    let mut one = first.get_entity(e.id).await?;
    one.name = "first".into();
    first.update_entity(one).await?;
    let mut two = second.get_entity(e.id).await?;
    two.name = "second".into();
    let second_write = second.update_entity(two).await;
    first.commit().await?;
    let outcome = match second_write {
        Ok(_) => second.commit().await,
        Err(e) => Err(e),
    };
    expect_err(outcome, "conflict")?;
    ensure_eq(t.get_entity(e.id).await?.name, "first".to_owned(), "first writer wins")
}

pub async fn edge_insert_racing_entity_delete_cannot_both_commit<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let x = t.create_entity(NewEntity::new("x", "k")).await?;
    let mut linker = t.begin().await?;
    let mut deleter = t.begin().await?;
    let linked = linker.create_edge(NewEdge::new(a.id, x.id, "r")).await;
    let deleted = deleter.delete_entity(x.id).await;
    let first = match linked {
        Ok(_) => linker.commit().await,
        Err(e) => Err(e),
    };
    let second = match deleted {
        Ok(()) => deleter.commit().await,
        Err(e) => Err(e),
    };
    ensure(
        first.is_ok() != second.is_ok(),
        format!("exactly one commits: {first:?} / {second:?}"),
    )?;
    // Whatever won, no edge dangles.
    for edge in t.get_edges(a.id, Direction::Out, None).await? {
        t.get_entity(edge.to).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Durability and export

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

pub async fn oversized_fields_are_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_entity(NewEntity::new("n".repeat(2000), "k")).await, "invalid")?;
    let mut r = NewResource::new("x");
    r.uri = Some("u".repeat(5000));
    expect_err(t.create_resource(r).await, "invalid")?;
    expect_err(t.create_resource(NewResource::new("c".repeat(17 << 20))).await, "invalid")?;
    expect_err(t.search_entities(&EntityQuery::new("q".repeat(5000))).await, "invalid")
}
