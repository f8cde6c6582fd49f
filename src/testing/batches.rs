//! Cases on batch writes of entities, edges and moments: all or nothing, readable on return,
//! indexed like single writes. It reaches storage only through the engine and must not name
//! a provider.

use serde_json::json;

use super::{Harness, ensure, ensure_eq, expect_err, meta, moments_ids, reached_ids, tenant, ts};
use crate::{
    Direction, EntityId, EntityQuery, NewEdge, NewEntity, NewMoment, RecordKind, Result, TimeRange,
    TraverseQuery,
};

/// Entities, edges and moments of a batch read back exactly as returned, and an entity of a
/// batch is found by its name words.
pub async fn batch_records_are_readable_on_return<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut first = NewEntity::new("Ada Lovelace", "person");
    first.properties = meta(json!({"born": 1815}));
    let entities =
        t.batch_create_entities(vec![first, NewEntity::new("Charles Babbage", "person")]).await?;
    ensure_eq(entities.len(), 2, "entities returned")?;
    for entity in &entities {
        ensure_eq(&t.get_entity(entity.id).await?, entity, "stored entity")?;
    }
    let found = t.search_entities(&EntityQuery::new("love")).await?;
    ensure_eq(found, vec![entities[0].clone()], "name words indexed")?;
    let mut edge = NewEdge::new(entities[0].id, entities[1].id, "knows");
    edge.weight = 0.25;
    edge.properties = meta(json!({"since": 1833}));
    let edges = t.batch_create_edges(vec![edge]).await?;
    ensure_eq(&t.get_edge(edges[0].id).await?, &edges[0], "stored edge")?;
    let mut moment = NewMoment::new(ts(10), ts(20), "meeting");
    moment.content = "engines".into();
    moment.entities.push(entities[0].id);
    moment.entities.push(entities[1].id);
    moment.metadata = meta(json!({"room": 1}));
    let moments = t.batch_create_moments(vec![moment, NewMoment::new(ts(5), ts(5), "m")]).await?;
    for moment in &moments {
        ensure_eq(&t.get_moment(moment.id).await?, moment, "stored moment")?;
    }
    Ok(())
}

/// A batch with one bad record (an invalid field, a missing edge endpoint, a taken or repeated
/// id, a moment that ends before it starts) fails and writes none of its records.
pub async fn batch_with_one_bad_record_writes_nothing<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let stored = t.batch_create_entities(vec![NewEntity::new("a", "k")]).await?;
    let a = stored[0].id;
    let entity_count =
        || async { Ok::<_, crate::Error>(t.scan(RecordKind::Entity, None, 100).await?.len()) };

    let bad_name = vec![NewEntity::new("b", "k"), NewEntity::new("", "k")];
    expect_err(t.batch_create_entities(bad_name).await, "invalid")?;
    let good = t.batch_create_entities(vec![NewEntity::new("c", "k")]).await?;
    let mut repeated = good.clone();
    repeated[0].id = EntityId::new();
    repeated.push(repeated[0].clone());
    expect_err(t.insert_entities(&repeated).await, "already_exists")?;
    let mut taken = repeated.clone();
    taken[1] = stored[0].clone();
    expect_err(t.insert_entities(&taken).await, "already_exists")?;
    ensure_eq(entity_count().await?, 2, "no entity of a failed batch")?;

    let missing = vec![NewEdge::new(a, a, "r"), NewEdge::new(a, EntityId::new(), "r")];
    expect_err(t.batch_create_edges(missing).await, "not_found")?;
    let missing_source = vec![NewEdge::new(a, a, "r"), NewEdge::new(EntityId::new(), a, "r")];
    expect_err(t.batch_create_edges(missing_source).await, "not_found")?;
    let mut bad_weight = NewEdge::new(a, a, "r");
    bad_weight.weight = f32::NAN;
    expect_err(t.batch_create_edges(vec![NewEdge::new(a, a, "r"), bad_weight]).await, "invalid")?;
    let edge = t.batch_create_edges(vec![NewEdge::new(a, a, "r")]).await?;
    let mut repeated = edge.clone();
    repeated[0].id = crate::EdgeId::new();
    repeated.push(repeated[0].clone());
    expect_err(t.insert_edges(&repeated).await, "already_exists")?;
    let mut taken = repeated.clone();
    taken[1] = edge[0].clone();
    expect_err(t.insert_edges(&taken).await, "already_exists")?;
    ensure_eq(
        t.scan(RecordKind::Edge, None, 100).await?,
        vec![crate::Record::Edge(edge[0].clone())],
        "only the good edge",
    )?;
    ensure_eq(
        t.get_edges(a, Direction::Both, None).await?,
        edge.clone(),
        "no adjacency of a failed batch",
    )?;

    let backwards = vec![NewMoment::new(ts(1), ts(2), "m"), NewMoment::new(ts(10), ts(9), "m")];
    expect_err(t.batch_create_moments(backwards).await, "invalid")?;
    let moment = t.batch_create_moments(vec![NewMoment::new(ts(1), ts(2), "m")]).await?;
    let mut repeated = moment.clone();
    repeated[0].id = crate::MomentId::new();
    repeated.push(repeated[0].clone());
    expect_err(t.insert_moments(&repeated).await, "already_exists")?;
    let mut taken = repeated.clone();
    taken[1] = moment[0].clone();
    expect_err(t.insert_moments(&taken).await, "already_exists")?;
    ensure_eq(
        moments_ids(&t, TimeRange::all()).await?,
        vec![moment[0].id],
        "no moment of a failed batch, in the time index either",
    )
}

/// Edges of a batch, between entities of an earlier batch, are listed at both ends and
/// traversed like single edges; a self-loop is listed once.
pub async fn batch_edges_are_visible_from_both_ends_and_traversable<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let new = (0..4).map(|i| NewEntity::new(format!("n{i}"), "node")).collect();
    let n: Vec<EntityId> = t.batch_create_entities(new).await?.iter().map(|e| e.id).collect();
    let edges = t
        .batch_create_edges(vec![
            NewEdge::new(n[0], n[1], "next"),
            NewEdge::new(n[1], n[2], "next"),
            NewEdge::new(n[2], n[3], "next"),
            NewEdge::new(n[3], n[3], "self"),
        ])
        .await?;
    ensure_eq(t.get_edges(n[0], Direction::Out, None).await?, vec![edges[0].clone()], "out of n0")?;
    ensure_eq(t.get_edges(n[1], Direction::In, None).await?, vec![edges[0].clone()], "into n1")?;
    ensure_eq(
        t.get_edges(n[3], Direction::Both, None).await?,
        vec![edges[2].clone(), edges[3].clone()],
        "both of n3, the self-loop once",
    )?;
    let reached = t.traverse(&TraverseQuery::new(n[0], 3)).await?;
    ensure_eq(reached_ids(&reached), vec![(n[1], 1), (n[2], 2), (n[3], 3)], "traversed")?;
    let back = TraverseQuery::new(n[3], 3).with_direction(Direction::In);
    let reached = t.traverse(&back).await?;
    ensure_eq(reached_ids(&reached), vec![(n[2], 1), (n[1], 2), (n[0], 3)], "traversed back")?;
    t.delete_entity(n[1]).await?;
    ensure(t.get_edges(n[0], Direction::Out, None).await?.is_empty(), "edge deleted with n1")?;
    ensure(t.get_edges(n[2], Direction::In, None).await?.is_empty(), "and its other edge")
}

/// Moments of a batch are found by time range, ordered by start then id, long ones included.
pub async fn batch_moments_are_found_by_time_range<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let moments = t
        .batch_create_moments(vec![
            NewMoment::new(ts(30), ts(40), "m"),
            NewMoment::new(ts(0), ts(1_000_000), "long"),
            NewMoment::new(ts(10), ts(20), "m"),
            NewMoment::new(ts(20), ts(20), "m"),
        ])
        .await?;
    let id = |i: usize| moments[i].id;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(15), ts(30))).await?,
        vec![id(1), id(2), id(3), id(0)],
        "overlapping, by start",
    )?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(500_000), ts(600_000))).await?,
        vec![id(1)],
        "a long moment far from its start",
    )?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(21), ts(29))).await?, vec![id(1)], "gap")
}

/// An empty batch of any kind succeeds, returns nothing and writes nothing.
pub async fn empty_batches_succeed_and_write_nothing<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    ensure(t.batch_create_entities(Vec::new()).await?.is_empty(), "no entities")?;
    ensure(t.batch_create_edges(Vec::new()).await?.is_empty(), "no edges")?;
    ensure(t.batch_create_moments(Vec::new()).await?.is_empty(), "no moments")?;
    t.insert_entities(&[]).await?;
    t.insert_edges(&[]).await?;
    t.insert_moments(&[]).await?;
    for kind in [RecordKind::Entity, RecordKind::Edge, RecordKind::Moment] {
        ensure(t.scan(kind, None, 10).await?.is_empty(), format!("no {kind:?} written"))?;
    }
    Ok(())
}
