//! The soak driver: 16 tasks on one tenant for a fixed time, mixing every kind of call, then a
//! comparison of the store with what was acknowledged. Generic over the provider; the test
//! files pick the provider and the duration (`PERCOLATE_SOAK_SECONDS`).
//!
//! Each task owns the records it creates: only it updates or deletes them, and its edges join
//! only its own entities, so the acknowledged calls of one task fix the final state of its
//! records exactly, whatever the interleaving. Contention comes from a few shared counter
//! entities that every task increments in transactions (read, write `count + 1`, and create a
//! resource beside it): a lost race is `Error::Conflict` and must leave nothing, a commit that
//! returned `Ok` must be counted. After the run the store must hold exactly the union of the
//! tasks' records, each counter the number of acknowledged increments (no lost update),
//! adjacency both ways, and a vector index that returns exactly the stored embeddings.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use percolate::bench::dataset::XorShift;
use percolate::{
    Direction, Edge, EdgeId, Entity, EntityId, Error, MemoryEngine, NewEdge, NewEntity,
    NewResource, Provider, Record, RecordKind, Resource, ResourceId, SearchQuery, TenantConfig,
    TenantHandle, TenantId, TraverseQuery,
};
use serde_json::json;

/// Tasks that call the tenant at once.
pub const TASKS: usize = 16;
/// Shared counter entities the transactions contend on.
pub const COUNTERS: usize = 4;
/// Dimension of every embedding.
pub const DIMENSION: usize = 32;
/// Resources and entities a task keeps alive at most (past it, it deletes): the final check
/// searches the whole tenant, so it stays under `MAX_K`.
const MAX_RESOURCES: usize = 300;
const MAX_ENTITIES: usize = 80;

/// How long the soak runs: `PERCOLATE_SOAK_SECONDS`, or `default` seconds.
pub fn duration(default: u64) -> Duration {
    let seconds = std::env::var("PERCOLATE_SOAK_SECONDS").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(seconds.unwrap_or(default))
}

/// The kinds of call, in report order.
pub const OPS: &[&str] = &[
    "create_resource",
    "batch_resources_10",
    "update_resource",
    "delete_resource",
    "create_entity",
    "create_edge",
    "delete_edge",
    "delete_entity",
    "search_k10",
    "traverse_depth2",
    "scan_100",
    "txn_increment",
];

/// What one task acknowledged, and how long its calls took.
#[derive(Default)]
struct TaskState {
    resources: BTreeMap<ResourceId, Resource>,
    entities: BTreeMap<EntityId, Entity>,
    edges: BTreeMap<EdgeId, Edge>,
    increments: [u64; COUNTERS],
    conflicts: u64,
    latencies: Vec<Vec<u32>>,
}

/// What a soak measured, per kind of call.
pub struct Report {
    /// The provider's name.
    pub provider: &'static str,
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Per kind: calls acknowledged (or answered), and their latencies in microseconds.
    pub latencies: Vec<Vec<u32>>,
    /// Transactions that lost a race (and were not retried).
    pub conflicts: u64,
    /// Resources acknowledged and not deleted at the end.
    pub resources: usize,
    /// Entities likewise (the shared counters aside).
    pub entities: usize,
    /// Edges likewise.
    pub edges: usize,
}

impl Report {
    /// Prints one line per kind of call: count, throughput, p50 and p99.
    pub fn print(&self) {
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "soak on {}: {TASKS} tasks, {:.0} s; end state {} resources, {} entities, {} edges; \
             {} transaction conflicts",
            self.provider, seconds, self.resources, self.entities, self.edges, self.conflicts
        );
        println!("| operation | calls | calls/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        let mut total = 0usize;
        for (name, latencies) in OPS.iter().zip(&self.latencies) {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            total += sorted.len();
            let at = |q: f64| {
                sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            };
            let shown = |v: Option<&u32>| v.map_or("-".to_string(), |v| micros(*v));
            println!(
                "| `{name}` | {} | {:.0} | {} | {} |",
                sorted.len(),
                sorted.len() as f64 / seconds,
                shown(at(0.50)),
                shown(at(0.99)),
            );
        }
        println!("| all | {total} | {:.0} | | |", total as f64 / seconds);
    }
}

fn micros(v: u32) -> String {
    if v >= 1000 { format!("{:.2} ms", f64::from(v) / 1000.0) } else { format!("{v} µs") }
}

fn vector(rng: &mut XorShift) -> Vec<f32> {
    (0..DIMENSION).map(|_| rng.unit() as f32 - 0.5).collect()
}

/// A fresh tenant id, so runs against a shared server never meet.
pub fn fresh_tenant() -> TenantId {
    TenantId::new(format!("soak-{}", uuid::Uuid::now_v7().simple())).expect("tenant id")
}

/// Runs the soak for `duration` on a new tenant of `engine`, prints the measurements, checks
/// the end state and deletes the tenant. Panics on any unexpected error or mismatch.
pub async fn run<P: Provider>(engine: &MemoryEngine<P>, duration: Duration) -> Report {
    let id = fresh_tenant();
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await.expect("create tenant");
    let mut counters = Vec::new();
    for c in 0..COUNTERS {
        let new = NewEntity {
            properties: json!({ "count": 0 }).as_object().cloned().unwrap_or_default(),
            ..NewEntity::new(format!("counter {c}"), "counter")
        };
        counters.push(tenant.create_entity(new).await.expect("counter").id);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let seed = u64::from(std::process::id()) << 20 | 7;
    println!("soak seed {seed}");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let tenant = tenant.clone();
        let counters = counters.clone();
        let rng = XorShift(seed ^ ((task as u64 + 1) * 0x9e37_79b9_7f4a_7c15));
        tasks.push(tokio::spawn(async move { drive(tenant, task, counters, rng, deadline).await }));
    }
    let mut states = Vec::new();
    for task in tasks {
        states.push(task.await.expect("a soak task panicked"));
    }
    let elapsed = started.elapsed();
    let mut latencies = vec![Vec::new(); OPS.len()];
    for state in &mut states {
        for (all, mine) in latencies.iter_mut().zip(&mut state.latencies) {
            all.append(mine);
        }
    }
    let report = Report {
        provider: P::NAME,
        elapsed,
        latencies,
        conflicts: states.iter().map(|s| s.conflicts).sum(),
        resources: states.iter().map(|s| s.resources.len()).sum(),
        entities: states.iter().map(|s| s.entities.len()).sum(),
        edges: states.iter().map(|s| s.edges.len()).sum(),
    };
    // The figures first: they are worth having even when the check below fails.
    report.print();
    check_end_state(&tenant, &counters, &states).await;
    drop(tenant);
    engine.delete_tenant(&id).await.expect("delete the soak tenant");
    report
}

fn pick<K: Copy, V>(map: &BTreeMap<K, V>, rng: &mut XorShift) -> Option<K> {
    if map.is_empty() {
        return None;
    }
    map.keys().nth((rng.next_u64() % map.len() as u64) as usize).copied()
}

/// `result` of a call that only this task's own records decide: anything but success fails
/// the soak, except a lost race (`Conflict`), which must have left nothing.
fn expect<T>(result: percolate::Result<T>, what: &str, state: &mut TaskState) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(Error::Conflict(_)) => {
            state.conflicts += 1;
            None
        }
        Err(error) => panic!("{what}: {}", error.with_causes()),
    }
}

/// One task's loop: a weighted random call each time, until the deadline.
async fn drive<P: Provider>(
    tenant: TenantHandle<P>,
    task: usize,
    counters: Vec<EntityId>,
    mut rng: XorShift,
    deadline: Instant,
) -> TaskState {
    let mut state = TaskState { latencies: vec![Vec::new(); OPS.len()], ..TaskState::default() };
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let roll = rng.next_u64() % 100;
        let op = match roll {
            0..10 => 0,
            10..16 => 1,
            16..24 => 2,
            24..31 => 3,
            31..39 => 4,
            39..49 => 5,
            49..52 => 6,
            52..56 => 7,
            56..71 => 8,
            71..81 => 9,
            81..87 => 10,
            _ => 11,
        };
        // Past its cap a task deletes instead of creating, so the tenant stays searchable
        // whole at the end and the mix of calls stays the same.
        let op = match op {
            0 | 1 if state.resources.len() > MAX_RESOURCES => 3,
            4 if state.entities.len() > MAX_ENTITIES => 7,
            op => op,
        };
        let started = Instant::now();
        let done = call(&tenant, task, n, op, &counters, &mut rng, &mut state).await;
        if done {
            let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
            state.latencies[op].push(micros);
        }
    }
    state
}

/// Makes call `op`; returns whether it was made (a call on an empty pool is skipped).
async fn call<P: Provider>(
    tenant: &TenantHandle<P>,
    task: usize,
    n: u64,
    op: usize,
    counters: &[EntityId],
    rng: &mut XorShift,
    state: &mut TaskState,
) -> bool {
    match op {
        0 => {
            let new = NewResource::new(format!("t{task} r{n}")).with_embedding(vector(rng));
            if let Some(r) = expect(tenant.create_resource(new).await, "create resource", state) {
                state.resources.insert(r.id, r);
            }
        }
        1 => {
            let batch = (0..10)
                .map(|i| NewResource::new(format!("t{task} b{n}.{i}")).with_embedding(vector(rng)))
                .collect();
            let written = tenant.batch_create_resources(batch).await;
            for r in expect(written, "batch", state).unwrap_or_default() {
                state.resources.insert(r.id, r);
            }
        }
        2 => {
            let Some(id) = pick(&state.resources, rng) else { return false };
            let mut resource = state.resources[&id].clone();
            resource.content = format!("t{task} u{n}");
            resource.embedding = Some(vector(rng));
            if let Some(r) = expect(tenant.update_resource(resource).await, "update", state) {
                state.resources.insert(r.id, r);
            }
        }
        3 => {
            let Some(id) = pick(&state.resources, rng) else { return false };
            if expect(tenant.delete_resource(id).await, "delete resource", state).is_some() {
                state.resources.remove(&id);
            }
        }
        4 => {
            let new = NewEntity::new(format!("t{task} e{n}"), "thing");
            if let Some(e) = expect(tenant.create_entity(new).await, "create entity", state) {
                state.entities.insert(e.id, e);
            }
        }
        5 => {
            let (Some(from), Some(to)) = (pick(&state.entities, rng), pick(&state.entities, rng))
            else {
                return false;
            };
            let new = NewEdge::new(from, to, if n.is_multiple_of(2) { "knows" } else { "cites" });
            if let Some(e) = expect(tenant.create_edge(new).await, "create edge", state) {
                state.edges.insert(e.id, e);
            }
        }
        6 => {
            let Some(id) = pick(&state.edges, rng) else { return false };
            if expect(tenant.delete_edge(id).await, "delete edge", state).is_some() {
                state.edges.remove(&id);
            }
        }
        7 => {
            let Some(id) = pick(&state.entities, rng) else { return false };
            if expect(tenant.delete_entity(id).await, "delete entity", state).is_some() {
                state.entities.remove(&id);
                state.edges.retain(|_, e| e.from != id && e.to != id);
            }
        }
        8 => {
            let hits = tenant.search_resources(&SearchQuery::new(vector(rng), 10)).await;
            let hits = hits.unwrap_or_else(|e| panic!("search: {}", e.with_causes()));
            assert!(hits.len() <= 10, "search returned more than k");
            assert!(
                hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                "search results are not nearest first"
            );
        }
        9 => {
            let Some(start) = pick(&state.entities, rng) else { return false };
            let query = TraverseQuery::new(start, 2).with_direction(Direction::Out);
            let reached = tenant.traverse(&query).await;
            let reached = reached.unwrap_or_else(|e| panic!("traverse: {}", e.with_causes()));
            // Only this task writes the edges among its entities: the answer is exact.
            let got: BTreeSet<_> = reached.iter().map(|r| (r.entity, r.depth)).collect();
            assert_eq!(got, breadth_first(&state.edges, start, 2), "traverse of own subgraph");
        }
        10 => {
            let after = pick(&state.resources, rng).map(|id| id.as_uuid());
            let page = tenant.scan(RecordKind::Resource, after, 100).await;
            let page = page.unwrap_or_else(|e| panic!("scan: {}", e.with_causes()));
            assert!(page.len() <= 100, "scan page over its limit");
        }
        _ => increment(tenant, task, n, counters, rng, state).await,
    }
    true
}

/// A transaction that increments a shared counter and creates a resource beside it.
async fn increment<P: Provider>(
    tenant: &TenantHandle<P>,
    task: usize,
    n: u64,
    counters: &[EntityId],
    rng: &mut XorShift,
    state: &mut TaskState,
) {
    let c = (rng.next_u64() % COUNTERS as u64) as usize;
    let attempt = async {
        let mut txn = tenant.begin().await?;
        let mut counter = txn.get_entity(counters[c]).await?;
        let count = counter.properties.get("count").and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
        counter.properties.insert("count".into(), json!(count + 1));
        txn.update_entity(counter).await?;
        let beside = NewResource::new(format!("t{task} x{n}")).with_embedding(vector(rng));
        let resource = txn.create_resource(beside).await?;
        txn.commit().await?;
        Ok::<_, Error>(resource)
    };
    if let Some(resource) = expect(attempt.await, "transaction", state) {
        state.increments[c] += 1;
        state.resources.insert(resource.id, resource);
    }
}

/// Entities reached from `start` along `edges` within `depth` hops, with their hop count.
fn breadth_first(
    edges: &BTreeMap<EdgeId, Edge>,
    start: EntityId,
    depth: u32,
) -> BTreeSet<(EntityId, u32)> {
    let mut visited = HashSet::from([start]);
    let mut reached = BTreeSet::new();
    let mut frontier = vec![start];
    for hop in 1..=depth {
        let mut next = Vec::new();
        for node in frontier {
            for edge in edges.values().filter(|e| e.from == node) {
                if visited.insert(edge.to) {
                    reached.insert((edge.to, hop));
                    next.push(edge.to);
                }
            }
        }
        frontier = next;
    }
    reached
}

async fn scan_all<P: Provider>(tenant: &TenantHandle<P>, kind: RecordKind) -> Vec<Record> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = tenant.scan(kind, after, 1000).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(last.id());
        out.extend(page);
    }
}

/// Compares the tenant with the union of what the tasks acknowledged.
async fn check_end_state<P: Provider>(
    tenant: &TenantHandle<P>,
    counters: &[EntityId],
    states: &[TaskState],
) {
    let mut resources = BTreeMap::new();
    let mut entities = BTreeMap::new();
    let mut edges = BTreeMap::new();
    let mut increments = [0u64; COUNTERS];
    for state in states {
        resources.extend(state.resources.iter().map(|(k, v)| (*k, v.clone())));
        entities.extend(state.entities.iter().map(|(k, v)| (*k, v.clone())));
        edges.extend(state.edges.iter().map(|(k, v)| (*k, v.clone())));
        for (total, mine) in increments.iter_mut().zip(state.increments) {
            *total += mine;
        }
    }

    let stored: BTreeMap<ResourceId, Resource> = scan_all(tenant, RecordKind::Resource)
        .await
        .into_iter()
        .filter_map(|r| if let Record::Resource(r) = r { Some((r.id, r)) } else { None })
        .collect();
    let lost = resources.keys().filter(|id| !stored.contains_key(id)).count();
    let extra = stored.keys().filter(|id| !resources.contains_key(id)).count();
    assert!(lost == 0 && extra == 0, "resources: {lost} acknowledged lost, {extra} unacknowledged");
    for (id, resource) in &resources {
        assert_eq!(&stored[id], resource, "resource {id} differs from its acknowledged write");
    }

    let mut stored_entities: BTreeMap<EntityId, Entity> = scan_all(tenant, RecordKind::Entity)
        .await
        .into_iter()
        .filter_map(|r| if let Record::Entity(e) = r { Some((e.id, e)) } else { None })
        .collect();
    for (c, id) in counters.iter().enumerate() {
        let counter = stored_entities.remove(id).expect("a counter vanished");
        let count = counter.properties.get("count").and_then(|v| v.as_u64());
        assert_eq!(count, Some(increments[c]), "counter {c}: acknowledged increments");
    }
    assert_eq!(
        stored_entities.keys().collect::<Vec<_>>(),
        entities.keys().collect::<Vec<_>>(),
        "entities differ from the acknowledged ones"
    );
    for (id, entity) in &entities {
        assert_eq!(&stored_entities[id], entity, "entity {id} differs");
    }

    let stored_edges: BTreeMap<EdgeId, Edge> = scan_all(tenant, RecordKind::Edge)
        .await
        .into_iter()
        .filter_map(|r| if let Record::Edge(e) = r { Some((e.id, e)) } else { None })
        .collect();
    assert!(stored_edges == edges, "edges differ from the acknowledged ones");
    // Adjacency both ways: each entity lists exactly its edges out and in.
    for id in entities.keys() {
        let out = tenant.get_edges(*id, Direction::Out, None).await.expect("edges out");
        let into = tenant.get_edges(*id, Direction::In, None).await.expect("edges in");
        let out: BTreeSet<EdgeId> = out.iter().map(|e| e.id).collect();
        let into: BTreeSet<EdgeId> = into.iter().map(|e| e.id).collect();
        let want_out: BTreeSet<EdgeId> =
            edges.values().filter(|e| e.from == *id).map(|e| e.id).collect();
        let want_in: BTreeSet<EdgeId> =
            edges.values().filter(|e| e.to == *id).map(|e| e.id).collect();
        assert_eq!(out, want_out, "edges out of {id}");
        assert_eq!(into, want_in, "edges into {id}");
    }

    // The vector index returns exactly the stored embeddings, and each finds itself.
    if !resources.is_empty() {
        let mut rng = XorShift(99);
        let query = SearchQuery::new(vector(&mut rng), resources.len().min(percolate::MAX_K));
        let hits = tenant.search_resources(&query).await.expect("search all");
        let found: BTreeSet<ResourceId> = hits.iter().map(|h| h.resource.id).collect();
        assert_eq!(hits.len(), found.len(), "search returned a resource twice");
        if !found.iter().eq(resources.keys()) {
            // Say whether the missing ones are unreachable or only cut from a long answer.
            let mut unreachable = 0;
            let missing: Vec<&Resource> =
                resources.values().filter(|r| !found.contains(&r.id)).collect();
            for resource in &missing {
                let query = SearchQuery::new(resource.embedding.clone().expect("embedding"), 1);
                let hit = tenant.search_resources(&query).await.expect("search");
                unreachable += usize::from(hit.first().map(|h| h.resource.id) != Some(resource.id));
            }
            panic!(
                "search over everything: {} hits for {} stored embeddings ({} missing, {} of \
                 them not found even by their own embedding, {} not stored)",
                found.len(),
                resources.len(),
                missing.len(),
                unreachable,
                found.iter().filter(|id| !resources.contains_key(id)).count()
            );
        }
        for resource in resources.values().step_by(29) {
            let query = SearchQuery::new(resource.embedding.clone().expect("embedding"), 1);
            let hit = tenant.search_resources(&query).await.expect("search");
            assert_eq!(hit[0].resource.id, resource.id, "an embedding does not find itself");
        }
    }
}
