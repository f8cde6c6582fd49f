//! Kill a writer with SIGKILL at random moments, reopen, and check the store against a model.
//!
//! The test binary re-runs itself as the writer (`writer_child`, active only when
//! `PERCOLATE_CRASH_DIR` is set). Batch `n` is one transaction that creates a resource with an
//! embedding, an entity, an edge to the previous batch's entity and a moment, and churns older
//! batches: every 4th batch deletes a resource and re-embeds another, every 6th deletes an
//! entity (and so its edges). The writer prints `ack n` after each commit returns.
//!
//! Because the batches are deterministic, the parent knows the whole expected state after `a`
//! acknowledged batches; after a kill the store must equal that state or the state one batch
//! later (the batch in flight), exactly: every acknowledged batch present, none partly present.
//! It also checks that adjacency is symmetric, that the vector index holds exactly the live
//! embeddings, and that search returns only live records, each embedding finding itself.
//!
//! Cycles alternate between a plaintext store and an encrypted one. The test command runs
//! `PERCOLATE_CRASH_CYCLES` cycles (default 50); `PERCOLATE_CRASH_CYCLES=1000 cargo test
//! --release --test rocks_crash` runs a thousand. `PERCOLATE_CRASH_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use percolate::bench::dataset::XorShift;
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
use percolate::{
    Direction, EntityId, MemoryEngine, NewEdge, NewEntity, NewMoment, NewResource, Record,
    RecordKind, Resource, SearchQuery, TenantConfig, TenantHandle, TenantId, TextQuery, Timestamp,
};

const DIMENSION: usize = 16;
/// Re-embedded resources get the seed of their batch plus this.
const RE_EMBED: u64 = 1_000_000;

fn engine(dir: &std::path::Path, encrypted: bool) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(dir);
    config.exact_search_below = 0;
    if encrypted {
        config.master_key = Some(MasterKey::from_bytes([0xc7; 32]));
    }
    MemoryEngine::new(RocksProvider::open(config).expect("open store"))
}

fn tenant_id() -> TenantId {
    TenantId::new("crash").expect("id")
}

fn vector(seed: u64) -> Vec<f32> {
    percolate::bench::dataset::Dataset::synthetic(1, 0, DIMENSION, 0, seed + 1).row(0).to_vec()
}

/// What the store holds, by batch number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    /// Resource of batch n → the seed of its embedding.
    resources: BTreeMap<u64, u64>,
    entities: BTreeSet<u64>,
    /// (from batch, to batch).
    edges: BTreeSet<(u64, u64)>,
    moments: BTreeSet<u64>,
}

impl State {
    /// The model of batch `n`; `writer_child` does the same to the store.
    fn apply(&mut self, n: u64) {
        self.resources.insert(n, n);
        self.entities.insert(n);
        if n > 0 {
            self.edges.insert((n, n - 1));
        }
        self.moments.insert(n);
        if n % 4 == 3 {
            self.resources.remove(&(n - 2));
            self.resources.insert(n - 1, n - 1 + RE_EMBED);
        }
        if n % 6 == 5 {
            let victim = n - 5;
            self.entities.remove(&victim);
            self.edges.retain(|(from, to)| *from != victim && *to != victim);
        }
    }

    fn after(batches: u64) -> Self {
        let mut state = Self::default();
        (0..batches).for_each(|n| state.apply(n));
        state
    }
}

fn batch_of(text: &str, prefix: char) -> Option<u64> {
    text.strip_prefix(prefix)?.parse().ok()
}

async fn all(tenant: &TenantHandle<RocksProvider>, kind: RecordKind) -> Vec<Record> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = tenant.scan(kind, after, 1000).await.expect("scan");
        let Some(last) = page.last() else { return out };
        after = Some(last.id());
        out.extend(page);
    }
}

/// The store's records, indexed by batch.
struct Stored {
    resources: BTreeMap<u64, Resource>,
    entities: BTreeMap<u64, EntityId>,
    batch_of_entity: HashMap<EntityId, u64>,
    state: State,
}

async fn read_store(tenant: &TenantHandle<RocksProvider>) -> Stored {
    let mut stored = Stored {
        resources: BTreeMap::new(),
        entities: BTreeMap::new(),
        batch_of_entity: HashMap::new(),
        state: State::default(),
    };
    for record in all(tenant, RecordKind::Resource).await {
        let Record::Resource(r) = record else { panic!("not a resource") };
        let n = batch_of(&r.content, 'r').expect("resource batch");
        let seed = [n, n + RE_EMBED]
            .into_iter()
            .find(|seed| r.embedding.as_deref() == Some(&vector(*seed)[..]))
            .expect("a resource's embedding is one the writer wrote for it");
        stored.state.resources.insert(n, seed);
        stored.resources.insert(n, r);
    }
    for record in all(tenant, RecordKind::Entity).await {
        let Record::Entity(e) = record else { panic!("not an entity") };
        let n = batch_of(&e.name, 'e').expect("entity batch");
        stored.state.entities.insert(n);
        stored.entities.insert(n, e.id);
        stored.batch_of_entity.insert(e.id, n);
    }
    for record in all(tenant, RecordKind::Edge).await {
        let Record::Edge(e) = record else { panic!("not an edge") };
        let from = stored.batch_of_entity.get(&e.from).expect("edge from a stored entity");
        let to = stored.batch_of_entity.get(&e.to).expect("edge to a stored entity");
        stored.state.edges.insert((*from, *to));
    }
    for record in all(tenant, RecordKind::Moment).await {
        let Record::Moment(m) = record else { panic!("not a moment") };
        stored.state.moments.insert(batch_of(&m.content, 'm').expect("moment batch"));
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_child() -> percolate::Result<()> {
    let Some(dir) = std::env::var_os("PERCOLATE_CRASH_DIR") else { return Ok(()) };
    let encrypted = std::env::var_os("PERCOLATE_CRASH_ENCRYPTED").is_some();
    let first: u64 =
        std::env::var("PERCOLATE_CRASH_NEXT").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let engine = engine(std::path::Path::new(&dir), encrypted);
    let tenant = match engine.tenant(&tenant_id()).await {
        Ok(tenant) => tenant,
        Err(_) => engine.create_tenant(&tenant_id(), TenantConfig::default()).await?,
    };
    let Stored { mut resources, mut entities, .. } = read_store(&tenant).await;
    // libtest prints "test writer_child ... " without a newline first: acks are matched
    // anywhere in a line.
    for n in first.. {
        let mut txn = tenant.begin().await?;
        let mut metadata = percolate::Metadata::new();
        metadata.insert("batch".into(), n.into());
        let resource = txn
            .create_resource(
                NewResource::new(format!("r{n}"))
                    .with_metadata(metadata.clone())
                    .with_embedding(vector(n)),
            )
            .await?;
        let entity = txn.create_entity(NewEntity::new(format!("e{n}"), "node")).await?;
        if n > 0 {
            txn.create_edge(NewEdge::new(entity.id, entities[&(n - 1)], "follows")).await?;
        }
        let mut moment = NewMoment::new(
            Timestamp::from_micros(n as i64 * 1000),
            Timestamp::from_micros(n as i64 * 1000 + 500),
            "step",
        );
        moment.content = format!("m{n}");
        moment.entities.push(entity.id);
        txn.create_moment(moment).await?;
        let mut re_embedded = None;
        if n % 4 == 3 {
            txn.delete_resource(resources[&(n - 2)].id).await?;
            let mut moved = resources[&(n - 1)].clone();
            moved.embedding = Some(vector(n - 1 + RE_EMBED));
            re_embedded = Some(txn.update_resource(moved).await?);
        }
        if n % 6 == 5 {
            txn.delete_entity(entities[&(n - 5)]).await?;
        }
        txn.commit().await?;
        resources.insert(n, resource);
        entities.insert(n, entity.id);
        if let Some(moved) = re_embedded {
            resources.remove(&(n - 2));
            resources.insert(n - 1, moved);
        }
        if n % 6 == 5 {
            entities.remove(&(n - 5));
        }
        if n % 5 == 4 {
            // A text search indexes the pending records, so kills also land inside folds.
            let hits = tenant.text_search(&TextQuery::new(format!("r{n}"), 1)).await?;
            assert_eq!(hits.len(), 1, "resource {n} is found by its content");
        }
        println!("ack {n}");
        std::io::Write::flush(&mut std::io::stdout())
            .map_err(|e| percolate::Error::invalid("stdout", e))?;
    }
    Ok(())
}

/// Checks everything a crash must not break; returns how many batches the store holds.
async fn check(dir: &std::path::Path, encrypted: bool, acknowledged: u64, cycle: usize) -> u64 {
    let engine = engine(dir, encrypted);
    let tenant = engine.tenant(&tenant_id()).await.expect("tenant opens after a crash");
    let stored = read_store(&tenant).await;
    let committed = if stored.state == State::after(acknowledged) {
        acknowledged
    } else if stored.state == State::after(acknowledged + 1) {
        acknowledged + 1
    } else {
        panic!(
            "cycle {cycle}: after {acknowledged} acknowledged batches the store holds neither \
             that state nor the next: {:?}",
            stored.state
        );
    };

    // Adjacency is symmetric: every edge is listed out of its source and into its target,
    // and nothing else is listed.
    let mut out = BTreeSet::new();
    let mut into = BTreeSet::new();
    for (n, id) in &stored.entities {
        for edge in tenant.get_edges(*id, Direction::Out, None).await.expect("out edges") {
            assert_eq!(edge.from, *id);
            out.insert((*n, stored.batch_of_entity[&edge.to]));
        }
        for edge in tenant.get_edges(*id, Direction::In, None).await.expect("in edges") {
            assert_eq!(edge.to, *id);
            into.insert((stored.batch_of_entity[&edge.from], *n));
        }
    }
    assert_eq!(out, stored.state.edges, "cycle {cycle}: outgoing adjacency");
    assert_eq!(into, stored.state.edges, "cycle {cycle}: incoming adjacency");

    // The vector index holds exactly the live embeddings.
    let stats = RocksProvider::index_stats(tenant.provider_tenant());
    assert_eq!(
        stats.graph - stats.tombstones + stats.pending,
        stored.resources.len(),
        "cycle {cycle}: index {stats:?}"
    );
    let k = (stored.resources.len() + 10).min(percolate::MAX_K);
    let hits = tenant.search_resources(&SearchQuery::new(vector(7), k)).await.expect("search");
    assert_eq!(hits.len(), stored.resources.len().min(k), "cycle {cycle}: search size");
    for hit in &hits {
        let n = batch_of(&hit.resource.content, 'r').expect("batch");
        assert_eq!(Some(&hit.resource), stored.resources.get(&n), "cycle {cycle}: a dead hit");
    }
    // The text index agrees with the records: a live resource or moment is found by its
    // content's term, and a deleted resource by nothing.
    for n in (0..committed).step_by(7) {
        let hits = tenant.text_search(&TextQuery::new(format!("r{n}"), 5)).await.expect("text");
        let ids: Vec<uuid::Uuid> = hits.iter().map(|hit| hit.record.id()).collect();
        let live: Vec<uuid::Uuid> =
            stored.resources.get(&n).map(|r| r.id.as_uuid()).into_iter().collect();
        assert_eq!(ids, live, "cycle {cycle}: text search for resource {n}");
        let query = TextQuery::new(format!("m{n}"), 5).moments();
        let moments = tenant.text_search(&query).await.expect("text");
        assert_eq!(moments.len(), 1, "cycle {cycle}: text search for moment {n}");
    }
    for resource in stored.resources.values().step_by(23) {
        let query = SearchQuery::new(resource.embedding.clone().unwrap_or_default(), 1);
        let hit = tenant.search_resources(&query).await.expect("search");
        assert_eq!(hit[0].resource.id, resource.id, "cycle {cycle}: each embedding finds itself");
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_at_random_moments_loses_no_acknowledged_batch_and_leaves_no_partial_one() {
    let cycles: usize =
        std::env::var("PERCOLATE_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("PERCOLATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) << 16 | 1);
    println!("PERCOLATE_CRASH_SEED={seed}");
    let mut rng = XorShift(seed);
    let roots = [tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir")];
    let mut committed = [0u64; 2];
    let exe = std::env::current_exe().expect("test binary");
    for cycle in 0..cycles {
        let store = cycle % 2;
        let encrypted = store == 1;
        let mut command = Command::new(&exe);
        command
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("PERCOLATE_CRASH_DIR", roots[store].path())
            .env("PERCOLATE_CRASH_NEXT", committed[store].to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if encrypted {
            command.env("PERCOLATE_CRASH_ENCRYPTED", "1");
        }
        let mut child = command.spawn().expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        // Kill after a random number of acknowledged batches (sometimes before the first),
        // then a random few hundred microseconds, so the kill lands anywhere in a batch.
        let kill_after = (rng.next_u64() % 40) as usize;
        let mut lines = BufReader::new(stdout).lines();
        let mut acknowledged = 0u64;
        if kill_after > 0 {
            for line in lines.by_ref() {
                if line.expect("line").contains("ack ") {
                    acknowledged += 1;
                    if acknowledged as usize == kill_after {
                        break;
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(rng.next_u64() % 300));
        }
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 700));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // The writer may have acknowledged more before it died: count what it printed.
        acknowledged += lines.map_while(Result::ok).filter(|l| l.contains("ack ")).count() as u64;
        let total = committed[store] + acknowledged;
        committed[store] = check(roots[store].path(), encrypted, total, cycle).await;
    }
    println!(
        "{cycles} cycles; batches committed: plaintext {}, encrypted {}",
        committed[0], committed[1]
    );
    assert!(committed.iter().all(|c| *c > 0), "the writers never committed anything");
}
