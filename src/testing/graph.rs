//! Cases on edges and breadth-first traversal. It reaches storage only through the engine and
//! must not name a provider.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::{Harness, ensure, ensure_eq, expect_err, meta, reached_ids, tenant};
use crate::{
    Direction, EntityId, EntityQuery, NewEdge, NewEntity, Provider, RecordKind, Result,
    TenantHandle, TraverseQuery,
};

/// An edge reads back as written and is listed out of its source and into its target.
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

/// An edge to or from a missing entity is `NotFound` and leaves nothing behind.
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

/// Edge listing filters by exact relation and orders by edge id; an empty relation is invalid.
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

/// An edge from an entity to itself is listed once, does not reach its start, and is deleted
/// with the entity.
pub async fn self_loop_is_listed_once<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let edge = t.create_edge(NewEdge::new(a.id, a.id, "self")).await?;
    ensure_eq(t.get_edges(a.id, Direction::Both, None).await?, vec![edge.clone()], "once")?;
    ensure(t.traverse(&TraverseQuery::new(a.id, 3)).await?.is_empty(), "the start is not reached")?;
    t.delete_entity(a.id).await?;
    expect_err(t.get_edge(edge.id).await, "not_found")
}

/// A deleted edge is gone from both ends and from traversal; deleting it again is `NotFound`.
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

/// Deleting an entity deletes every edge that touches it, and its name from entity search.
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

/// Edges with a non-finite weight or an empty or oversized relation are invalid.
pub async fn edge_weight_and_relation_are_validated<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let mut nan = NewEdge::new(a.id, a.id, "r");
    nan.weight = f32::NAN;
    expect_err(t.create_edge(nan).await, "invalid")?;
    expect_err(t.create_edge(NewEdge::new(a.id, a.id, "")).await, "invalid")?;
    expect_err(t.create_edge(NewEdge::new(a.id, a.id, "r".repeat(5000))).await, "invalid")
}

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

/// Traversal of a cyclic graph reaches each entity once, at its fewest hops, ordered by depth
/// then id.
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

/// Traversal reaches nothing beyond its depth.
pub async fn traversal_stops_at_its_depth<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let reached = t.traverse(&TraverseQuery::new(ids["a"], 2)).await?;
    ensure_eq(reached_ids(&reached), expected(&ids, &[("b", 1), ("x", 1), ("c", 2)]), "depth 2")?;
    let one = t.traverse(&TraverseQuery::new(ids["a"], 1)).await?;
    ensure_eq(reached_ids(&one), expected(&ids, &[("b", 1), ("x", 1)]), "depth 1")
}

/// Traversal follows incoming edges, or edges in both directions, when asked to.
pub async fn traversal_follows_its_direction<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let incoming =
        t.traverse(&TraverseQuery::new(ids["d"], 2).with_direction(Direction::In)).await?;
    ensure_eq(reached_ids(&incoming), expected(&ids, &[("c", 1), ("b", 2)]), "in")?;
    let both = t.traverse(&TraverseQuery::new(ids["d"], 1).with_direction(Direction::Both)).await?;
    ensure_eq(reached_ids(&both), expected(&ids, &[("c", 1), ("e", 1)]), "both")
}

/// Traversal with relations follows only edges of those relations.
pub async fn traversal_follows_only_its_relations<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let ids = cyclic_graph(&t).await?;
    let knows = t.traverse(&TraverseQuery::new(ids["a"], 5).with_relations(["knows"])).await?;
    ensure_eq(reached_ids(&knows), expected(&ids, &[("x", 1)]), "knows")?;
    let next =
        t.traverse(&TraverseQuery::new(ids["a"], 2).with_relations(["next", "missing"])).await?;
    ensure_eq(reached_ids(&next), expected(&ids, &[("b", 1), ("c", 2)]), "next")
}

/// Traversal from a missing entity is `NotFound`; depth 0, a depth above `MAX_DEPTH` or an
/// empty relation is invalid.
pub async fn traversal_rejects_bad_input<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    expect_err(t.traverse(&TraverseQuery::new(EntityId::new(), 2)).await, "not_found")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 0)).await, "invalid")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 1000)).await, "invalid")?;
    expect_err(t.traverse(&TraverseQuery::new(a.id, 2).with_relations([""])).await, "invalid")
}
