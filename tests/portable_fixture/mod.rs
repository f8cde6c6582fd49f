//! A tenant with every kind of record, and the queries whose answers must survive an export and
//! import: shared by the portable and round-trip tests.
#![allow(dead_code)]

use percolate::{
    Direction, EntityId, EntityQuery, Filter, Metadata, NewEdge, NewEntity, NewMoment, NewResource,
    Provider, Result, SearchQuery, TenantHandle, TimeRange, Timestamp, TraverseQuery,
};
use serde_json::json;

/// The embedding dimension of the fixture.
pub const DIMENSION: usize = 8;

/// What the fixture wrote that the queries start from.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Entities, in creation order.
    pub entities: Vec<EntityId>,
}

/// A deterministic pseudo-random vector (distinct for each seed, so no distance ties).
pub fn vector(seed: u64) -> Vec<f32> {
    let mut state =
        seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..DIMENSION)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn object(value: serde_json::Value) -> Metadata {
    value.as_object().cloned().unwrap_or_default()
}

/// Fills `tenant` with `resources` resources (most with embeddings), entities joined by edges,
/// and moments; then updates and deletes some, so timestamps and deletions are exercised.
pub async fn fill<P: Provider>(tenant: &TenantHandle<P>, resources: usize) -> Result<Fixture> {
    let mut batch = Vec::new();
    for i in 0..resources {
        let mut new = NewResource::new(format!("resource {i}: \"quoted\", ü, 😀\nsecond line"))
            .with_metadata(object(json!({
                "zeta": i,
                "lang": if i % 3 == 0 { "fr" } else { "en" },
                "alpha": { "b": true, "a": [1, 2.5, "x", null] },
                "score": i as f64 / 4.0,
            })));
        if i % 7 != 6 {
            new = new.with_embedding(vector(i as u64));
        }
        if i % 2 == 0 {
            new.uri = Some(format!("https://example.com/doc/{i}"));
        }
        batch.push(new);
        if batch.len() == 500 {
            tenant.batch_create_resources(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        tenant.batch_create_resources(batch).await?;
    }
    let first = tenant.scan(percolate::RecordKind::Resource, None, 1).await?;
    if let Some(percolate::Record::Resource(mut resource)) = first.into_iter().next() {
        resource.content.push_str(" (edited)");
        tenant.update_resource(resource).await?;
    }

    let mut entities = Vec::new();
    for i in 0..12 {
        let mut new =
            NewEntity::new(format!("Entity {i}"), if i % 2 == 0 { "person" } else { "place" });
        new.properties = object(json!({ "rank": i, "tags": ["x", "y"], "nested": { "k": "v" } }));
        entities.push(tenant.create_entity(new).await?.id);
    }
    for i in 0..12usize {
        for step in [1usize, 5] {
            let mut edge = NewEdge::new(
                entities[i],
                entities[(i + step) % 12],
                if step == 1 { "next" } else { "jump" },
            );
            edge.weight = 0.25 + i as f32 / 8.0;
            edge.properties = object(json!({ "since": 2000 + i }));
            tenant.create_edge(edge).await?;
        }
    }
    // A deleted entity takes its edges with it; a deleted resource leaves a gap in the ids.
    tenant.delete_entity(entities[11]).await?;
    entities.truncate(11);

    let base = Timestamp::parse("2025-03-01T09:00:00.123456Z")?.as_micros();
    for i in 0..10i64 {
        let start = Timestamp::from_micros(base + i * 3_600_000_000);
        let end = Timestamp::from_micros(start.as_micros() + 1_800_000_000 * (i % 3));
        let mut moment = NewMoment::new(start, end, if i % 2 == 0 { "meeting" } else { "call" });
        moment.content = format!("moment {i}");
        moment.entities.push(entities[i as usize % entities.len()]);
        moment.entities.push(entities[(i as usize + 3) % entities.len()]);
        moment.metadata = object(json!({ "room": format!("r{i}") }));
        tenant.create_moment(moment).await?;
    }
    Ok(Fixture { entities })
}

/// The answers of the conformance-style queries, made comparable across providers: ids in
/// order, distances rounded.
pub async fn answers<P: Provider>(
    tenant: &TenantHandle<P>,
    fixture: &Fixture,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for seed in [3u64, 1_000, 77] {
        let hits = tenant.search_resources(&SearchQuery::new(vector(seed), 5)).await?;
        out.push(format!(
            "search {seed}: {:?}",
            hits.iter()
                .map(|h| (h.resource.id, (h.distance * 1e3).round() as i64))
                .collect::<Vec<_>>()
        ));
        let filtered =
            SearchQuery::new(vector(seed), 4).with_filter(Filter::parse_str(r#"{"lang": "fr"}"#)?);
        let hits = tenant.search_resources(&filtered).await?;
        out.push(format!(
            "filtered {seed}: {:?}",
            hits.iter().map(|h| h.resource.id).collect::<Vec<_>>()
        ));
    }
    for start in [fixture.entities[0], fixture.entities[4]] {
        for direction in [Direction::Out, Direction::In, Direction::Both] {
            let reached =
                tenant.traverse(&TraverseQuery::new(start, 2).with_direction(direction)).await?;
            let mut reached: Vec<_> = reached.iter().map(|r| (r.depth, r.entity)).collect();
            reached.sort();
            out.push(format!("traverse {start} {direction:?}: {reached:?}"));
        }
        let edges = tenant.get_edges(start, Direction::Both, None).await?;
        let mut edges: Vec<_> = edges.iter().map(|e| e.id).collect();
        edges.sort();
        out.push(format!("edges {start}: {edges:?}"));
    }
    let base = Timestamp::parse("2025-03-01T10:00:00Z")?;
    let range = TimeRange::new(base, Timestamp::from_micros(base.as_micros() + 4 * 3_600_000_000));
    let moments = tenant.moments_in_range(&range).await?;
    out.push(format!("moments: {:?}", moments.iter().map(|m| m.id).collect::<Vec<_>>()));
    let people = tenant.search_entities(&EntityQuery::new("entity").with_kind("person")).await?;
    out.push(format!("people: {:?}", people.iter().map(|e| e.id).collect::<Vec<_>>()));
    Ok(out)
}
