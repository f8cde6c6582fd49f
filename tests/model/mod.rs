//! Model-based testing: random operation sequences run against a real provider and against a
//! simple in-memory model of the contract; every result, errors included, must agree.
//!
//! Shared by `tests/model_rocks.rs`, `tests/model_postgres.rs`, `tests/model_mem.rs` and the
//! `model` fuzz target (`fuzz/fuzz_targets/model.rs`, through `#[path]`), so it depends only on
//! percolate, serde_json, tempfile and tokio.
//!
//! How it works:
//! - A [`Plan`] (a tenant configuration and a list of [`Op`]s) is drawn from a stream of
//!   choices ([`Choose`]): proptest feeds it bytes (one chunk per operation, so shrinking drops
//!   whole operations), the fuzzer feeds it `arbitrary::Unstructured`.
//! - Ops name records by [`Pick`]: an index into the ids seen so far, or one past the end for an
//!   id that was never stored. So sequences keep hitting live, deleted and unknown records.
//! - [`run`] applies each op to the engine first, then to the model. The engine assigns ids and
//!   timestamps; the model adopts those, and computes every other field and every error itself.
//! - Transactions: at most one is open. Auto-commit ops issued while it is open are "outside"
//!   writes; the model records which keys they change. A transaction op that touches such a key
//!   is skipped (providers differ on whether a transaction reads its snapshot or the latest
//!   commit, and the contract does not say). The commit must fail with `Conflict` exactly when
//!   the transaction wrote (or validated) a key an outside write changed, and succeed otherwise,
//!   except where the contract leaves it open (see `TxnModel::absent` and
//!   `TxnModel::validated_outside`): then either outcome is accepted.
//! - Vector search uses tiny tenants, which every provider searches exactly; distances are
//!   compared with a tolerance and the top-k set up to ties at the cut.
//! - After a reopen and at the end, every record is compared through `scan`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;

use percolate::{
    Direction, Edge, EdgeId, EngineTxn, Entity, EntityId, EntityQuery, Error, Filter, MAX_BATCH,
    MAX_DEPTH, MAX_K, MAX_NAME_BYTES, MemoryEngine, Metadata, Metric, Moment, MomentId, NewEdge,
    NewEntity, NewMoment, NewResource, Provider, Reached, Record, RecordKind, Resource, ResourceId,
    SearchQuery, TenantConfig, TenantHandle, TenantId, TimeRange, Timestamp, TraverseQuery,
};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Choices

/// A source of choices: proptest bytes or a fuzzer's `Unstructured`.
pub trait Choose {
    /// A number in `0..n` (`n >= 1`); `0` once the source is exhausted.
    fn below(&mut self, n: usize) -> usize;

    /// True or false.
    fn flag(&mut self) -> bool {
        self.below(2) == 1
    }

    /// True about once in `n` times.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0 && n > 0
    }
}

/// Choices read from bytes: one byte per choice below 256, two above; zeros once exhausted.
pub struct ByteChoices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteChoices<'a> {
    /// Choices read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn byte(&mut self) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b as usize
    }
}

impl Choose for ByteChoices<'_> {
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let raw = if n <= 256 { self.byte() } else { self.byte() << 8 | self.byte() };
        raw % n
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

/// A record named by an index into the ids of its kind seen so far; one past the end (after
/// the modulo) is an id that was never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick(pub u8);

/// The fields of a resource to create or to update with.
#[derive(Clone, Debug)]
pub struct ResourceFields {
    /// Its uri.
    pub uri: Option<String>,
    /// Its content.
    pub content: String,
    /// Its metadata.
    pub metadata: Metadata,
    /// Its embedding.
    pub embedding: Option<Vec<f32>>,
}

/// One step of a sequence. `txn: true` routes the op into the open transaction, if any.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum Op {
    CreateResource {
        txn: bool,
        fields: ResourceFields,
    },
    BatchCreateResources(Vec<ResourceFields>),
    InsertResource(Pick),
    GetResource {
        txn: bool,
        pick: Pick,
    },
    UpdateResource {
        txn: bool,
        pick: Pick,
        fields: ResourceFields,
    },
    DeleteResource {
        txn: bool,
        pick: Pick,
    },
    CreateEntity {
        txn: bool,
        name: String,
        kind: String,
        properties: Metadata,
    },
    InsertEntity(Pick),
    GetEntity {
        txn: bool,
        pick: Pick,
    },
    UpdateEntity {
        txn: bool,
        pick: Pick,
        name: String,
        kind: String,
        properties: Metadata,
    },
    DeleteEntity {
        txn: bool,
        pick: Pick,
    },
    CreateEdge {
        txn: bool,
        from: Pick,
        to: Pick,
        relation: String,
        weight: f32,
    },
    InsertEdge(Pick),
    GetEdge {
        txn: bool,
        pick: Pick,
    },
    DeleteEdge {
        txn: bool,
        pick: Pick,
    },
    GetEdges {
        txn: bool,
        pick: Pick,
        direction: Direction,
        relation: Option<String>,
    },
    CreateMoment {
        txn: bool,
        start: i64,
        end: i64,
        kind: String,
        entities: Vec<Pick>,
    },
    InsertMoment(Pick),
    GetMoment {
        txn: bool,
        pick: Pick,
    },
    UpdateMoment {
        txn: bool,
        pick: Pick,
        start: i64,
        end: i64,
        kind: String,
    },
    DeleteMoment {
        txn: bool,
        pick: Pick,
    },
    Search {
        vector: Vec<f32>,
        k: usize,
        filter: Option<&'static str>,
    },
    SearchEntities {
        text: String,
        kind: Option<String>,
        filter: Option<&'static str>,
        limit: usize,
    },
    Traverse {
        start: Pick,
        depth: u32,
        direction: Direction,
        relations: Vec<String>,
    },
    MomentsInRange {
        start: Option<i64>,
        end: Option<i64>,
    },
    Scan {
        kind: RecordKind,
        after: Option<Pick>,
        limit: usize,
    },
    Begin,
    Commit,
    Rollback,
    DropTxn,
    Reopen,
}

/// A tenant configuration and the ops to run on it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The tenant's configuration.
    pub config: TenantConfig,
    /// The ops, in order.
    pub ops: Vec<Op>,
}

/// What text a provider can store. A provider that rejects some text the engine accepts is
/// reported as a finding; these switches keep such text out of its runs meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct Alphabet {
    /// Whether strings may contain NUL.
    pub nul: bool,
    /// Whether timestamps may be the extremes of `i64` microseconds.
    pub extreme_times: bool,
    /// Whether metadata numbers may be any finite double (they must come back bit for bit;
    /// before serde_json's `float_roundtrip` was enabled some came back one ulp off).
    pub any_double: bool,
}

impl Alphabet {
    /// Everything the engine accepts.
    pub const FULL: Alphabet = Alphabet { nul: true, extreme_times: true, any_double: true };
}

fn text(c: &mut impl Choose, alphabet: Alphabet, palette: &[&str]) -> String {
    match c.below(palette.len() + 3) {
        i if i < palette.len() => palette[i].to_owned(),
        i if i == palette.len() => String::new(),
        i if i == palette.len() + 1 => "x".repeat(MAX_NAME_BYTES + 1),
        _ if alphabet.nul => "nul\u{0}byte".to_owned(),
        _ => "no nul".to_owned(),
    }
}

const NAMES: &[&str] =
    &["ada", "Ada Lovelace", "ADA", "bob smith", "Émile Zola", "émile", "zeta-9"];
const KINDS: &[&str] = &["person", "city", "Person"];
const RELATIONS: &[&str] = &["knows", "works_at", "knows2"];
const URIS: &[&str] = &["file:///a", "https://example.com/b"];
const CONTENTS: &[&str] = &["hello", "Hello, world", "ünïcödé ✓"];
const KEYS: &[&str] = &["lang", "year", "tag", "a"];

/// Filters over the metadata [`metadata`] draws, some matching, some not.
pub const FILTERS: &[&str] = &[
    r#"{"lang": "en"}"#,
    r#"{"year": {"$gte": 2}}"#,
    r#"{"tag": {"$in": ["x", 1]}}"#,
    r#"{"$not": {"lang": "en"}}"#,
    r#"{"a.b": 1}"#,
    r#"{"lang": {"$exists": false}}"#,
    r#"{"year": {"$ne": 1}}"#,
    r#"{"$or": [{"lang": "fr"}, {"year": {"$lt": 2.5}}]}"#,
];

fn json_value(c: &mut impl Choose, alphabet: Alphabet) -> Value {
    match c.below(14) {
        0 => json!("en"),
        1 => json!("fr"),
        2 => json!(1),
        3 => json!(2.5),
        4 => json!(0.1 + 0.2),
        5 => json!(-0.0),
        6 => json!(i64::MIN),
        7 => json!(u64::MAX),
        8 => json!({"b": 1}),
        9 => Value::Null,
        10 => json!(true),
        11 => json!(["x", 1, null]),
        12 if alphabet.nul => json!("nul\u{0}"),
        12 => json!("x"),
        _ if alphabet.any_double => {
            // Any finite double, bit for bit: stored metadata must come back unchanged.
            let bits = (0..8).fold(0u64, |acc, _| acc << 8 | c.below(256) as u64);
            let x = f64::from_bits(bits);
            if x.is_finite() { json!(x) } else { json!(1e300) }
        }
        _ => json!([1e300, -1.5e-7, 123456.789][c.below(3)]),
    }
}

fn metadata(c: &mut impl Choose, alphabet: Alphabet) -> Metadata {
    let mut map = Metadata::new();
    for _ in 0..c.below(3) {
        let key = match c.below(KEYS.len() + 1) {
            i if i < KEYS.len() => KEYS[i].to_owned(),
            _ => String::new(),
        };
        map.insert(key, json_value(c, alphabet));
    }
    map
}

fn vector(c: &mut impl Choose, dimension: usize) -> Vec<f32> {
    const VALUES: [f32; 8] = [0.0, 1.0, -1.0, 0.5, 2.0, -0.25, 3.0, 0.1];
    let dimension = match c.below(12) {
        0 => dimension + 1,
        1 => 0,
        _ => dimension,
    };
    let mut v: Vec<f32> = (0..dimension).map(|_| VALUES[c.below(VALUES.len())]).collect();
    if !v.is_empty() && c.one_in(16) {
        v[0] = f32::NAN;
    }
    v
}

fn resource_fields(c: &mut impl Choose, alphabet: Alphabet) -> ResourceFields {
    ResourceFields {
        uri: if c.flag() { Some(text(c, alphabet, URIS)) } else { None },
        content: text(c, alphabet, CONTENTS),
        metadata: metadata(c, alphabet),
        embedding: if c.below(4) > 0 { Some(vector(c, 2)) } else { None },
    }
}

fn time(c: &mut impl Choose, alphabet: Alphabet) -> i64 {
    match c.below(8) {
        0 if alphabet.extreme_times => i64::MIN,
        1 if alphabet.extreme_times => i64::MAX,
        i => (i as i64 - 3) * 10,
    }
}

fn span(c: &mut impl Choose, alphabet: Alphabet) -> (i64, i64) {
    let start = time(c, alphabet);
    let end = match c.below(6) {
        0 => start.saturating_sub(1),
        1 => start,
        i => start.saturating_add((i as i64) * 7),
    };
    (start, end)
}

fn direction(c: &mut impl Choose) -> Direction {
    [Direction::Out, Direction::In, Direction::Both][c.below(3)]
}

fn pick(c: &mut impl Choose) -> Pick {
    Pick(c.below(256) as u8)
}

/// Draws a tenant configuration.
pub fn config(c: &mut impl Choose) -> TenantConfig {
    let metric = [Metric::Cosine, Metric::L2, Metric::Dot][c.below(3)];
    let dimension = if c.one_in(4) { Some(2) } else { None };
    TenantConfig { dimension, metric }
}

/// Draws one op.
pub fn op(c: &mut impl Choose, alphabet: Alphabet) -> Op {
    let txn = c.flag();
    match c.below(33) {
        0..=2 => Op::CreateResource { txn, fields: resource_fields(c, alphabet) },
        3 => Op::BatchCreateResources(
            (0..1 + c.below(3)).map(|_| resource_fields(c, alphabet)).collect(),
        ),
        4 => Op::InsertResource(pick(c)),
        5 => Op::GetResource { txn, pick: pick(c) },
        6 => Op::UpdateResource { txn, pick: pick(c), fields: resource_fields(c, alphabet) },
        7 => Op::DeleteResource { txn, pick: pick(c) },
        8..=10 => Op::CreateEntity {
            txn,
            name: text(c, alphabet, NAMES),
            kind: text(c, alphabet, KINDS),
            properties: metadata(c, alphabet),
        },
        11 => Op::InsertEntity(pick(c)),
        12 => Op::GetEntity { txn, pick: pick(c) },
        13 => Op::UpdateEntity {
            txn,
            pick: pick(c),
            name: text(c, alphabet, NAMES),
            kind: text(c, alphabet, KINDS),
            properties: metadata(c, alphabet),
        },
        14 => Op::DeleteEntity { txn, pick: pick(c) },
        15..=16 => Op::CreateEdge {
            txn,
            from: pick(c),
            to: pick(c),
            relation: text(c, alphabet, RELATIONS),
            weight: [1.0, 0.5, -2.0, f32::INFINITY][c.below(4)],
        },
        17 => Op::InsertEdge(pick(c)),
        18 => Op::GetEdge { txn, pick: pick(c) },
        19 => Op::DeleteEdge { txn, pick: pick(c) },
        20 => Op::GetEdges {
            txn,
            pick: pick(c),
            direction: direction(c),
            relation: if c.flag() { Some(text(c, alphabet, RELATIONS)) } else { None },
        },
        21 => {
            let (start, end) = span(c, alphabet);
            let entities = (0..c.below(3)).map(|_| pick(c)).collect();
            Op::CreateMoment { txn, start, end, kind: text(c, alphabet, KINDS), entities }
        }
        22 => Op::InsertMoment(pick(c)),
        23 => Op::GetMoment { txn, pick: pick(c) },
        24 => {
            let (start, end) = span(c, alphabet);
            Op::UpdateMoment { txn, pick: pick(c), start, end, kind: text(c, alphabet, KINDS) }
        }
        25 => Op::DeleteMoment { txn, pick: pick(c) },
        26 => Op::Search {
            vector: vector(c, 2),
            k: [1, 2, 3, 10, 0][c.below(5)],
            filter: if c.flag() { Some(FILTERS[c.below(FILTERS.len())]) } else { None },
        },
        27 => Op::SearchEntities {
            text: ["", "ada", "a", "émile", "ZOLA", "smith bob", "x"][c.below(7)].to_owned(),
            kind: if c.flag() { Some(text(c, alphabet, KINDS)) } else { None },
            filter: if c.one_in(3) { Some(FILTERS[c.below(FILTERS.len())]) } else { None },
            limit: [1, 2, 100, 0][c.below(4)],
        },
        28 => Op::Traverse {
            start: pick(c),
            depth: [1, 2, 3, 0, MAX_DEPTH + 1][c.below(5)],
            direction: direction(c),
            relations: (0..c.below(3)).map(|_| text(c, alphabet, RELATIONS)).collect(),
        },
        29 => {
            let start = if c.flag() { Some(time(c, alphabet)) } else { None };
            let end = if c.flag() { Some(time(c, alphabet)) } else { None };
            Op::MomentsInRange { start, end }
        }
        30 => Op::Scan {
            kind: RecordKind::ALL[c.below(4)],
            after: if c.flag() { Some(pick(c)) } else { None },
            limit: [1, 2, 1000, 0][c.below(4)],
        },
        _ => match c.below(9) {
            0..=2 => Op::Begin,
            3..=4 => Op::Commit,
            5 => Op::Rollback,
            6 => Op::DropTxn,
            _ => Op::Reopen,
        },
    }
}

/// Draws a plan of at most `max_ops` ops (fewer if the choices run out first).
pub fn plan(c: &mut impl Choose, alphabet: Alphabet, max_ops: usize) -> Plan {
    let config = config(c);
    Plan { config, ops: (0..max_ops).map(|_| op(c, alphabet)).collect() }
}

/// A plan from byte chunks: the first configures the tenant, each other one is one op.
pub fn plan_from_chunks(chunks: &[Vec<u8>], alphabet: Alphabet) -> Plan {
    let config = config(&mut ByteChoices::new(chunks.first().map_or(&[][..], |c| c)));
    let ops =
        chunks.iter().skip(1).map(|chunk| op(&mut ByteChoices::new(chunk), alphabet)).collect();
    Plan { config, ops }
}

// ---------------------------------------------------------------------------------------------
// The backend under test

/// How the runner opens the engine under test, and opens it again on the same storage.
pub trait Backend {
    /// The provider.
    type P: Provider;
    /// An engine on the backend's storage (the same storage on every call).
    fn open(&mut self) -> impl Future<Output = MemoryEngine<Self::P>>;
}

/// The RocksDB provider on a temporary store, configured so tiny tenants are searched exactly
/// and search results can be compared with the model.
pub struct RocksBackend {
    /// The store's directory (removed when the backend is dropped).
    pub dir: tempfile::TempDir,
}

impl RocksBackend {
    /// A backend on a fresh temporary directory.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }
}

impl Backend for RocksBackend {
    type P = percolate::rocks::RocksProvider;

    async fn open(&mut self) -> MemoryEngine<Self::P> {
        let mut config = percolate::rocks::RocksConfig::new(self.dir.path());
        config.exact_search_below = 1024;
        MemoryEngine::new(percolate::rocks::RocksProvider::open(config).expect("open store"))
    }
}

/// The in-memory provider. Opening again builds a new engine on a clone of the provider, which
/// shares its store, as a reopened disk store would.
pub struct MemBackend {
    /// The store every engine of this backend opens.
    pub provider: percolate::mem::MemProvider,
}

impl MemBackend {
    /// A backend on a fresh, empty store.
    pub fn new() -> Self {
        Self { provider: percolate::mem::MemProvider::new() }
    }
}

impl Backend for MemBackend {
    type P = percolate::mem::MemProvider;

    async fn open(&mut self) -> MemoryEngine<Self::P> {
        MemoryEngine::new(self.provider.clone())
    }
}

/// Runs the plan proptest's `chunks` describe on `backend`, on a fresh two-thread runtime; a
/// failure message carries the plan.
pub fn run_chunks<B: Backend>(mut backend: B, chunks: &[Vec<u8>]) -> Result<(), String> {
    let plan = plan_from_chunks(chunks, Alphabet::FULL);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(async { run(&mut backend, &plan).await })
        .map_err(|e| format!("{e}\nplan: {plan:#?}"))
}

// ---------------------------------------------------------------------------------------------
// The model

/// A key whose change makes a transaction that touched it conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Resource(ResourceId),
    Entity(EntityId),
    Edge(EdgeId),
    Moment(MomentId),
    /// The set of edges at an entity.
    Adjacency(EntityId),
}

#[derive(Clone, Debug, Default)]
struct Store {
    resources: BTreeMap<ResourceId, Resource>,
    entities: BTreeMap<EntityId, Entity>,
    edges: BTreeMap<EdgeId, Edge>,
    moments: BTreeMap<MomentId, Moment>,
}

impl Store {
    /// Whether `key` holds the same thing here as in `other`.
    fn same_at(&self, other: &Store, key: &Key) -> bool {
        match key {
            Key::Resource(id) => self.resources.get(id) == other.resources.get(id),
            Key::Entity(id) => self.entities.get(id) == other.entities.get(id),
            Key::Edge(id) => self.edges.get(id) == other.edges.get(id),
            Key::Moment(id) => self.moments.get(id) == other.moments.get(id),
            Key::Adjacency(id) => {
                self.edges_of(*id, Direction::Both, None)
                    == other.edges_of(*id, Direction::Both, None)
            }
        }
    }

    fn edges_of(
        &self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Vec<Edge> {
        self.edges
            .values()
            .filter(|e| match direction {
                Direction::Out => e.from == entity,
                Direction::In => e.to == entity,
                Direction::Both => e.from == entity || e.to == entity,
            })
            .filter(|e| relation.is_none_or(|r| e.relation == r))
            .cloned()
            .collect()
    }

    /// Keys a write changes, for conflict detection; `before` is the store it applies to.
    fn apply(&mut self, write: &Write) -> Vec<Key> {
        match write {
            Write::PutResource(r) => {
                self.resources.insert(r.id, r.clone());
                vec![Key::Resource(r.id)]
            }
            Write::DeleteResource(id) => {
                self.resources.remove(id);
                vec![Key::Resource(*id)]
            }
            Write::PutEntity(e) => {
                self.entities.insert(e.id, e.clone());
                vec![Key::Entity(e.id)]
            }
            Write::DeleteEntity(id) => {
                self.entities.remove(id);
                let mut keys = vec![Key::Entity(*id), Key::Adjacency(*id)];
                for edge in self.edges_of(*id, Direction::Both, None) {
                    self.edges.remove(&edge.id);
                    keys.extend([
                        Key::Edge(edge.id),
                        Key::Adjacency(edge.from),
                        Key::Adjacency(edge.to),
                    ]);
                }
                keys
            }
            Write::PutEdge(e) => {
                self.edges.insert(e.id, e.clone());
                vec![Key::Edge(e.id), Key::Adjacency(e.from), Key::Adjacency(e.to)]
            }
            Write::DeleteEdge(id) => match self.edges.remove(id) {
                Some(e) => vec![Key::Edge(e.id), Key::Adjacency(e.from), Key::Adjacency(e.to)],
                None => vec![Key::Edge(*id)],
            },
            Write::PutMoment(m) => {
                self.moments.insert(m.id, m.clone());
                vec![Key::Moment(m.id)]
            }
            Write::DeleteMoment(id) => {
                self.moments.remove(id);
                vec![Key::Moment(*id)]
            }
        }
    }

    fn records(&self, kind: RecordKind) -> Vec<(Uuid, Record)> {
        match kind {
            RecordKind::Resource => self
                .resources
                .values()
                .map(|r| (r.id.as_uuid(), Record::Resource(r.clone())))
                .collect(),
            RecordKind::Entity => self
                .entities
                .values()
                .map(|e| (e.id.as_uuid(), Record::Entity(e.clone())))
                .collect(),
            RecordKind::Edge => {
                self.edges.values().map(|e| (e.id.as_uuid(), Record::Edge(e.clone()))).collect()
            }
            RecordKind::Moment => {
                self.moments.values().map(|m| (m.id.as_uuid(), Record::Moment(m.clone()))).collect()
            }
        }
    }
}

/// A write as the model applies it (a transaction replays its writes at commit).
#[derive(Clone, Debug)]
enum Write {
    PutResource(Resource),
    DeleteResource(ResourceId),
    PutEntity(Entity),
    DeleteEntity(EntityId),
    PutEdge(Edge),
    DeleteEdge(EdgeId),
    PutMoment(Moment),
    DeleteMoment(MomentId),
}

#[derive(Debug, Default)]
struct TxnModel {
    /// The committed store when the transaction began.
    began: Store,
    /// The committed store when the transaction began, with its own writes applied.
    view: Store,
    writes: Vec<Write>,
    /// Keys the transaction wrote or validated.
    footprint: HashSet<Key>,
    /// Keys outside writes changed since the transaction began.
    outside: HashSet<Key>,
    /// Keys a write of the transaction looked up and found missing (it failed `NotFound`).
    /// The contract leaves open whether such a read conflicts: RocksDB reads them for update
    /// (a concurrent insert makes the commit fail), PostgreSQL does not.
    absent: HashSet<Key>,
    /// Keys outside writes validated without changing them: an edge insert's endpoints. The
    /// contract leaves open whether a transaction that also touched one conflicts: RocksDB
    /// rewrites the endpoints unchanged (so that an insert racing a delete of one cannot both
    /// commit) and refuses, PostgreSQL commits.
    validated_outside: HashSet<Key>,
}

/// The model: the committed store, the tenant's dimension, and the open transaction.
#[derive(Debug)]
struct Model {
    committed: Store,
    dimension: Option<u32>,
    metric: Metric,
    txn: Option<TxnModel>,
}

/// An error as compared: its kind, and for `Invalid` what was invalid.
fn kind(error: &Error) -> String {
    match error {
        Error::Invalid { what, .. } => format!("invalid {what}"),
        Error::NotFound { .. } => "not found".to_owned(),
        Error::AlreadyExists { .. } => "already exists".to_owned(),
        Error::Conflict(_) => "conflict".to_owned(),
        other => format!("unexpected error: {other} ({other:?})"),
    }
}

fn invalid(what: &str) -> String {
    format!("invalid {what}")
}

const NOT_FOUND: &str = "not found";
const ALREADY_EXISTS: &str = "already exists";

type Expect<T> = std::result::Result<T, String>;

/// Text with NUL is invalid everywhere (PostgreSQL cannot store it).
fn check_name(what: &str, value: &str) -> Expect<()> {
    if value.is_empty() || value.contains('\0') || value.len() > MAX_NAME_BYTES {
        Err(invalid(what))
    } else {
        Ok(())
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn check_metadata(what: &str, metadata: &Metadata) -> Expect<()> {
    if metadata.iter().any(|(k, v)| k.is_empty() || k.contains('\0') || has_nul(v)) {
        Err(invalid(what))
    } else {
        Ok(())
    }
}

fn check_entity(name: &str, kind: &str, properties: &Metadata) -> Expect<()> {
    check_name("name", name)?;
    check_name("kind", kind)?;
    check_metadata("properties", properties)
}

fn check_moment(start: i64, end: i64, kind: &str) -> Expect<()> {
    if end < start {
        return Err(invalid("moment"));
    }
    check_name("kind", kind)
}

impl Model {
    /// The engine's resource validation, in its order: every resource's fields and the
    /// embeddings' agreement with each other first; only then is the dimension fixed by the
    /// first embedding (before anything is written, and even if the write then fails).
    fn check_resources(&mut self, resources: &[&ResourceFields]) -> Expect<()> {
        let mut first: Option<usize> = None;
        for fields in resources {
            if let Some(uri) = &fields.uri {
                check_name("uri", uri)?;
            }
            if fields.content.contains('\0') {
                return Err(invalid("content"));
            }
            check_metadata("metadata", &fields.metadata)?;
            let Some(embedding) = &fields.embedding else { continue };
            if embedding.is_empty() || embedding.iter().any(|x| !x.is_finite()) {
                return Err(invalid("embedding"));
            }
            match first {
                Some(len) if len != embedding.len() => return Err(invalid("embedding")),
                Some(_) => {}
                None => first = Some(embedding.len()),
            }
        }
        let Some(len) = first else { return Ok(()) };
        let dimension = *self.dimension.get_or_insert(len as u32);
        if len != dimension as usize {
            return Err(invalid("embedding"));
        }
        Ok(())
    }

    /// The store an op reads: the transaction's view or the committed store.
    fn store(&self, in_txn: bool) -> &Store {
        match (&self.txn, in_txn) {
            (Some(txn), true) => &txn.view,
            _ => &self.committed,
        }
    }

    /// Applies a write: into the transaction (recording its footprint) or committed (recording
    /// what outside writes changed).
    fn write(&mut self, in_txn: bool, write: Write, validated: &[Key]) {
        match (&mut self.txn, in_txn) {
            (Some(txn), true) => {
                let keys = match &write {
                    // Deleting an entity writes its edges, not the other ends' edge sets.
                    Write::DeleteEntity(id) => {
                        let mut keys = vec![Key::Entity(*id), Key::Adjacency(*id)];
                        keys.extend(
                            txn.view
                                .edges_of(*id, Direction::Both, None)
                                .iter()
                                .map(|e| Key::Edge(e.id)),
                        );
                        keys
                    }
                    Write::PutEdge(e) => vec![Key::Edge(e.id)],
                    Write::DeleteEdge(id) => vec![Key::Edge(*id)],
                    _ => Vec::new(),
                };
                let applied = txn.view.apply(&write);
                let keys = if keys.is_empty() { applied } else { keys };
                txn.footprint.extend(keys);
                txn.footprint.extend(validated.iter().copied());
                txn.writes.push(write);
            }
            (txn, _) => {
                let changed = self.committed.apply(&write);
                if let Some(txn) = txn {
                    txn.outside.extend(changed);
                    txn.validated_outside.extend(validated.iter().copied());
                }
            }
        }
    }

    /// Records that a transaction write failed `NotFound` after looking `keys` up.
    fn found_absent(&mut self, in_txn: bool, keys: &[Key]) {
        if let (Some(txn), true) = (&mut self.txn, in_txn) {
            txn.absent.extend(keys.iter().copied());
        }
    }

    /// Whether a transaction op touching `keys` must be skipped: an outside write changed one.
    fn ambiguous(&self, in_txn: bool, keys: &[Key]) -> bool {
        match (&self.txn, in_txn) {
            (Some(txn), true) => keys.iter().any(|k| txn.outside.contains(k)),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runner

/// Ids seen so far, per kind, and the latest version of each record seen.
#[derive(Default)]
struct Pools {
    resources: Vec<ResourceId>,
    entities: Vec<EntityId>,
    edges: Vec<EdgeId>,
    moments: Vec<MomentId>,
    known_resources: BTreeMap<ResourceId, Resource>,
    known_entities: BTreeMap<EntityId, Entity>,
    known_edges: BTreeMap<EdgeId, Edge>,
    known_moments: BTreeMap<MomentId, Moment>,
}

fn resolve<T: Copy>(pool: &[T], pick: Pick, fresh: impl FnOnce() -> T) -> T {
    let index = pick.0 as usize % (pool.len() + 1);
    pool.get(index).copied().unwrap_or_else(fresh)
}

/// A mismatch between the provider and the model, located.
fn mismatch(step: usize, op: &Op, what: impl std::fmt::Display) -> String {
    format!("step {step} ({op:?}): {what}")
}

fn compare<T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    real: &percolate::Result<T>,
    expected: &Expect<T>,
) -> std::result::Result<(), String> {
    let same = match (real, expected) {
        (Ok(a), Ok(b)) => a == b,
        (Err(e), Err(k)) => kind(e) == *k,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(mismatch(step, op, format!("provider {real:?}, model {expected:?}")))
    }
}

fn fresh_tenant_id() -> TenantId {
    let uuid = Uuid::now_v7().simple().to_string();
    TenantId::new(format!("model{}", &uuid[uuid.len() - 20..])).expect("valid tenant id")
}

/// Runs `plan` against the backend and the model; the first disagreement is the error.
///
/// # Errors
/// A description of the first step where the provider and the model disagree.
pub async fn run<B: Backend>(backend: &mut B, plan: &Plan) -> std::result::Result<(), String> {
    let id = fresh_tenant_id();
    let mut engine = backend.open().await;
    let mut handle = engine
        .create_tenant(&id, plan.config)
        .await
        .map_err(|e| format!("create tenant: {e:?}"))?;
    let mut model = Model {
        committed: Store::default(),
        dimension: plan.config.dimension,
        metric: plan.config.metric,
        txn: None,
    };
    let mut pools = Pools::default();
    let mut queue: VecDeque<(usize, &Op)> = plan.ops.iter().enumerate().collect();
    loop {
        let reopen = Session { handle: &handle, model: &mut model, pools: &mut pools, txn: None }
            .run(&mut queue)
            .await?;
        if !reopen {
            break;
        }
        drop(handle);
        drop(engine);
        engine = backend.open().await;
        handle = engine.tenant(&id).await.map_err(|e| format!("reopen tenant: {e:?}"))?;
        compare_everything(&handle, &model, "after reopen").await?;
    }
    compare_everything(&handle, &model, "at the end").await?;
    drop(handle);
    engine.delete_tenant(&id).await.map_err(|e| format!("delete tenant: {e:?}"))
}

async fn compare_everything<P: Provider>(
    handle: &TenantHandle<P>,
    model: &Model,
    when: &str,
) -> std::result::Result<(), String> {
    for kind in RecordKind::ALL {
        let real = handle.scan(kind, None, MAX_BATCH).await.map_err(|e| format!("scan: {e:?}"))?;
        let expected: Vec<Record> =
            model.committed.records(kind).into_iter().map(|(_, r)| r).collect();
        if real != expected {
            return Err(format!(
                "{when}: {kind:?} records differ: provider {real:?}, model {expected:?}"
            ));
        }
    }
    let config = handle.config().await.map_err(|e| format!("config: {e:?}"))?;
    if config.dimension != model.dimension || config.metric != model.metric {
        return Err(format!("{when}: config {config:?}, model {:?}", model.dimension));
    }
    Ok(())
}

/// One engine session: ops until the plan ends or a reopen.
struct Session<'h, P: Provider> {
    handle: &'h TenantHandle<P>,
    model: &'h mut Model,
    pools: &'h mut Pools,
    txn: Option<EngineTxn<'h, P>>,
}

impl<'h, P: Provider> Session<'h, P> {
    /// Runs ops from `queue`; true if it stopped for a reopen.
    async fn run(
        mut self,
        queue: &mut VecDeque<(usize, &Op)>,
    ) -> std::result::Result<bool, String> {
        while let Some((step, op)) = queue.pop_front() {
            if matches!(op, Op::Reopen) {
                // The open transaction dies with the engine.
                self.txn = None;
                self.model.txn = None;
                return Ok(true);
            }
            self.step(step, op).await?;
        }
        Ok(false)
    }

    fn in_txn(&self, txn: bool) -> bool {
        txn && self.txn.is_some()
    }

    async fn step(&mut self, step: usize, op: &Op) -> std::result::Result<(), String> {
        match op {
            Op::Begin => {
                if self.txn.is_none() {
                    let txn = self.handle.begin().await.map_err(|e| mismatch(step, op, e))?;
                    self.txn = Some(txn);
                    self.model.txn = Some(TxnModel {
                        began: self.model.committed.clone(),
                        view: self.model.committed.clone(),
                        ..TxnModel::default()
                    });
                }
                Ok(())
            }
            Op::Commit => {
                let (Some(txn), Some(model_txn)) = (self.txn.take(), self.model.txn.take()) else {
                    return Ok(());
                };
                let real = txn.commit().await;
                let touched: Vec<&Key> =
                    model_txn.footprint.intersection(&model_txn.outside).collect();
                let may_conflict = !model_txn.absent.is_disjoint(&model_txn.outside)
                    || !model_txn.footprint.is_disjoint(&model_txn.validated_outside);
                // Outside writes that left every key they share with the transaction as it was
                // when it began (an insert then a delete of the same id) leave it serializable
                // after them: PostgreSQL commits it, RocksDB (which validates by key) refuses.
                let reverted =
                    touched.iter().all(|key| self.model.committed.same_at(&model_txn.began, key));
                let must_conflict = !touched.is_empty() && !reverted;
                if (may_conflict || !touched.is_empty())
                    && !must_conflict
                    && matches!(real, Err(Error::Conflict(_)))
                {
                    return Ok(());
                }
                let expected = if must_conflict {
                    Err("conflict".to_owned())
                } else {
                    for write in &model_txn.writes {
                        self.model.committed.apply(write);
                    }
                    Ok(())
                };
                compare(step, op, &real, &expected)
            }
            Op::Rollback => {
                if let Some(txn) = self.txn.take() {
                    self.model.txn = None;
                    txn.rollback().await.map_err(|e| mismatch(step, op, e))?;
                }
                Ok(())
            }
            Op::DropTxn => {
                self.txn = None;
                self.model.txn = None;
                Ok(())
            }
            Op::Reopen => Ok(()),
            Op::CreateResource { txn, fields } => {
                self.create_resource(step, op, *txn, fields).await
            }
            Op::BatchCreateResources(batch) => self.batch_create(step, op, batch).await,
            Op::InsertResource(pick) => self.insert_resource(step, op, *pick).await,
            Op::GetResource { txn, pick } => {
                let id = resolve(&self.pools.resources, *pick, ResourceId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Resource(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.get_resource(id).await,
                    _ => self.handle.get_resource(id).await,
                };
                let expected = self
                    .model
                    .store(in_txn)
                    .resources
                    .get(&id)
                    .cloned()
                    .ok_or(NOT_FOUND.to_owned());
                compare(step, op, &real, &expected)
            }
            Op::UpdateResource { txn, pick, fields } => {
                self.update_resource(step, op, *txn, *pick, fields).await
            }
            Op::DeleteResource { txn, pick } => {
                let id = resolve(&self.pools.resources, *pick, ResourceId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Resource(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.delete_resource(id).await,
                    _ => self.handle.delete_resource(id).await,
                };
                let expected = if self.model.store(in_txn).resources.contains_key(&id) {
                    self.model.write(in_txn, Write::DeleteResource(id), &[]);
                    Ok(())
                } else {
                    self.model.found_absent(in_txn, &[Key::Resource(id)]);
                    Err(NOT_FOUND.to_owned())
                };
                compare(step, op, &real, &expected)
            }
            Op::CreateEntity { txn, name, kind, properties } => {
                let in_txn = self.in_txn(*txn);
                let new = NewEntity {
                    name: name.clone(),
                    kind: kind.clone(),
                    properties: properties.clone(),
                };
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.create_entity(new).await,
                    _ => self.handle.create_entity(new).await,
                };
                let expected = match (check_entity(name, kind, properties), &real) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(created)) => {
                        let entity = Entity {
                            id: created.id,
                            name: name.clone(),
                            kind: kind.clone(),
                            properties: properties.clone(),
                            created_at: created.created_at,
                            updated_at: created.created_at,
                        };
                        self.pools.entities.push(entity.id);
                        self.pools.known_entities.insert(entity.id, entity.clone());
                        self.model.write(in_txn, Write::PutEntity(entity.clone()), &[]);
                        Ok(entity)
                    }
                    (Ok(()), Err(_)) => Err("success".to_owned()),
                };
                compare(step, op, &real, &expected)
            }
            Op::InsertEntity(pick) => {
                let id = resolve(&self.pools.entities, *pick, EntityId::new);
                let entity = self.pools.known_entities.get(&id).cloned().unwrap_or(Entity {
                    id,
                    name: "Imported Entity".into(),
                    kind: "person".into(),
                    properties: Metadata::new(),
                    created_at: Timestamp::from_micros(1_000),
                    updated_at: Timestamp::from_micros(2_000),
                });
                let real = self.handle.insert_entity(&entity).await;
                let expected = if self.model.committed.entities.contains_key(&id) {
                    Err(ALREADY_EXISTS.to_owned())
                } else {
                    if !self.pools.entities.contains(&id) {
                        self.pools.entities.push(id);
                        self.pools.known_entities.insert(id, entity.clone());
                    }
                    self.model.write(false, Write::PutEntity(entity), &[]);
                    Ok(())
                };
                compare(step, op, &real, &expected)
            }
            Op::GetEntity { txn, pick } => {
                let id = resolve(&self.pools.entities, *pick, EntityId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Entity(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.get_entity(id).await,
                    _ => self.handle.get_entity(id).await,
                };
                let expected =
                    self.model.store(in_txn).entities.get(&id).cloned().ok_or(NOT_FOUND.to_owned());
                compare(step, op, &real, &expected)
            }
            Op::UpdateEntity { txn, pick, name, kind, properties } => {
                let id = resolve(&self.pools.entities, *pick, EntityId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Entity(id)]) {
                    return Ok(());
                }
                // A caller-supplied created_at must be ignored: the stored one is kept.
                let entity = Entity {
                    id,
                    name: name.clone(),
                    kind: kind.clone(),
                    properties: properties.clone(),
                    created_at: Timestamp::from_micros(7),
                    updated_at: Timestamp::from_micros(7),
                };
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.update_entity(entity).await,
                    _ => self.handle.update_entity(entity).await,
                };
                let stored = self.model.store(in_txn).entities.get(&id).cloned();
                let expected = match (check_entity(name, kind, properties), stored, &real) {
                    (Err(e), _, _) => Err(e),
                    (Ok(()), None, _) => {
                        self.model.found_absent(in_txn, &[Key::Entity(id)]);
                        Err(NOT_FOUND.to_owned())
                    }
                    (Ok(()), Some(stored), Ok(updated)) => {
                        let entity = Entity {
                            id,
                            name: name.clone(),
                            kind: kind.clone(),
                            properties: properties.clone(),
                            created_at: stored.created_at,
                            updated_at: updated.updated_at,
                        };
                        self.pools.known_entities.insert(id, entity.clone());
                        self.model.write(in_txn, Write::PutEntity(entity.clone()), &[]);
                        Ok(entity)
                    }
                    (Ok(()), Some(_), Err(_)) => Err("success".to_owned()),
                };
                compare(step, op, &real, &expected)
            }
            Op::DeleteEntity { txn, pick } => {
                let id = resolve(&self.pools.entities, *pick, EntityId::new);
                let in_txn = self.in_txn(*txn);
                let mut touched = vec![Key::Entity(id), Key::Adjacency(id)];
                touched.extend(
                    self.model
                        .store(in_txn)
                        .edges_of(id, Direction::Both, None)
                        .iter()
                        .map(|e| Key::Edge(e.id)),
                );
                if self.model.ambiguous(in_txn, &touched) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.delete_entity(id).await,
                    _ => self.handle.delete_entity(id).await,
                };
                let expected = if self.model.store(in_txn).entities.contains_key(&id) {
                    self.model.write(in_txn, Write::DeleteEntity(id), &[]);
                    Ok(())
                } else {
                    self.model.found_absent(in_txn, &touched);
                    Err(NOT_FOUND.to_owned())
                };
                compare(step, op, &real, &expected)
            }
            Op::CreateEdge { txn, from, to, relation, weight } => {
                let from = resolve(&self.pools.entities, *from, EntityId::new);
                let to = resolve(&self.pools.entities, *to, EntityId::new);
                let in_txn = self.in_txn(*txn);
                let validated = [Key::Entity(from), Key::Entity(to)];
                if self.model.ambiguous(in_txn, &validated) {
                    return Ok(());
                }
                let new = NewEdge {
                    from,
                    to,
                    relation: relation.clone(),
                    weight: *weight,
                    properties: Metadata::new(),
                };
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.create_edge(new).await,
                    _ => self.handle.create_edge(new).await,
                };
                let store = self.model.store(in_txn);
                let ends = store.entities.contains_key(&from) && store.entities.contains_key(&to);
                let expected = match (check_name("relation", relation), &real) {
                    (Err(e), _) => Err(e),
                    _ if !weight.is_finite() => Err(invalid("weight")),
                    _ if !ends => {
                        self.model.found_absent(in_txn, &validated);
                        Err(NOT_FOUND.to_owned())
                    }
                    (Ok(()), Ok(created)) => {
                        let edge = Edge {
                            id: created.id,
                            from,
                            to,
                            relation: relation.clone(),
                            weight: *weight,
                            properties: Metadata::new(),
                            created_at: created.created_at,
                        };
                        self.pools.edges.push(edge.id);
                        self.pools.known_edges.insert(edge.id, edge.clone());
                        self.model.write(in_txn, Write::PutEdge(edge.clone()), &validated);
                        Ok(edge)
                    }
                    (Ok(()), Err(_)) => Err("success".to_owned()),
                };
                compare(step, op, &real, &expected)
            }
            Op::InsertEdge(pick) => {
                let id = resolve(&self.pools.edges, *pick, EdgeId::new);
                let Some(edge) = self.pools.known_edges.get(&id).cloned() else {
                    // An edge never seen has no ends to name; nothing to insert.
                    return Ok(());
                };
                let real = self.handle.insert_edge(&edge).await;
                let store = &self.model.committed;
                let expected = if store.edges.contains_key(&id) {
                    Err(ALREADY_EXISTS.to_owned())
                } else if !(store.entities.contains_key(&edge.from)
                    && store.entities.contains_key(&edge.to))
                {
                    Err(NOT_FOUND.to_owned())
                } else {
                    let validated = [Key::Entity(edge.from), Key::Entity(edge.to)];
                    self.model.write(false, Write::PutEdge(edge), &validated);
                    Ok(())
                };
                compare(step, op, &real, &expected)
            }
            Op::GetEdge { txn, pick } => {
                let id = resolve(&self.pools.edges, *pick, EdgeId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Edge(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.get_edge(id).await,
                    _ => self.handle.get_edge(id).await,
                };
                let expected =
                    self.model.store(in_txn).edges.get(&id).cloned().ok_or(NOT_FOUND.to_owned());
                compare(step, op, &real, &expected)
            }
            Op::DeleteEdge { txn, pick } => {
                let id = resolve(&self.pools.edges, *pick, EdgeId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Edge(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.delete_edge(id).await,
                    _ => self.handle.delete_edge(id).await,
                };
                let expected = if self.model.store(in_txn).edges.contains_key(&id) {
                    self.model.write(in_txn, Write::DeleteEdge(id), &[]);
                    Ok(())
                } else {
                    self.model.found_absent(in_txn, &[Key::Edge(id)]);
                    Err(NOT_FOUND.to_owned())
                };
                compare(step, op, &real, &expected)
            }
            Op::GetEdges { txn, pick, direction, relation } => {
                let id = resolve(&self.pools.entities, *pick, EntityId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Entity(id), Key::Adjacency(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.get_edges(id, *direction, relation.as_deref()).await,
                    _ => self.handle.get_edges(id, *direction, relation.as_deref()).await,
                };
                let store = self.model.store(in_txn);
                let expected = match relation.as_deref().map(|r| check_name("relation", r)) {
                    Some(Err(e)) => Err(e),
                    _ if !store.entities.contains_key(&id) => Err(NOT_FOUND.to_owned()),
                    _ => Ok(store.edges_of(id, *direction, relation.as_deref())),
                };
                compare(step, op, &real, &expected)
            }
            Op::CreateMoment { txn, start, end, kind, entities } => {
                let in_txn = self.in_txn(*txn);
                let entities = entities
                    .iter()
                    .map(|p| resolve(&self.pools.entities, *p, EntityId::new))
                    .collect();
                let mut new = NewMoment::new(
                    Timestamp::from_micros(*start),
                    Timestamp::from_micros(*end),
                    kind.clone(),
                );
                new.content = "moment".into();
                new.entities = entities;
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.create_moment(new.clone()).await,
                    _ => self.handle.create_moment(new.clone()).await,
                };
                let expected = match (check_moment(*start, *end, kind), &real) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(created)) => {
                        let moment = Moment {
                            id: created.id,
                            start: new.start,
                            end: new.end,
                            kind: new.kind,
                            content: new.content,
                            entities: new.entities,
                            metadata: new.metadata,
                        };
                        self.pools.moments.push(moment.id);
                        self.pools.known_moments.insert(moment.id, moment.clone());
                        self.model.write(in_txn, Write::PutMoment(moment.clone()), &[]);
                        Ok(moment)
                    }
                    (Ok(()), Err(_)) => Err("success".to_owned()),
                };
                compare(step, op, &real, &expected)
            }
            Op::InsertMoment(pick) => {
                let id = resolve(&self.pools.moments, *pick, MomentId::new);
                let moment = self.pools.known_moments.get(&id).cloned().unwrap_or_else(|| Moment {
                    id,
                    start: Timestamp::from_micros(-15),
                    end: Timestamp::from_micros(25),
                    kind: "imported".into(),
                    content: String::new(),
                    entities: Default::default(),
                    metadata: Metadata::new(),
                });
                let real = self.handle.insert_moment(&moment).await;
                let expected = if self.model.committed.moments.contains_key(&id) {
                    Err(ALREADY_EXISTS.to_owned())
                } else {
                    if !self.pools.moments.contains(&id) {
                        self.pools.moments.push(id);
                        self.pools.known_moments.insert(id, moment.clone());
                    }
                    self.model.write(false, Write::PutMoment(moment), &[]);
                    Ok(())
                };
                compare(step, op, &real, &expected)
            }
            Op::GetMoment { txn, pick } => {
                let id = resolve(&self.pools.moments, *pick, MomentId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Moment(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.get_moment(id).await,
                    _ => self.handle.get_moment(id).await,
                };
                let expected =
                    self.model.store(in_txn).moments.get(&id).cloned().ok_or(NOT_FOUND.to_owned());
                compare(step, op, &real, &expected)
            }
            Op::UpdateMoment { txn, pick, start, end, kind } => {
                let id = resolve(&self.pools.moments, *pick, MomentId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Moment(id)]) {
                    return Ok(());
                }
                let mut moment =
                    self.pools.known_moments.get(&id).cloned().unwrap_or_else(|| Moment {
                        id,
                        start: Timestamp::from_micros(0),
                        end: Timestamp::from_micros(0),
                        kind: "k".into(),
                        content: String::new(),
                        entities: Default::default(),
                        metadata: Metadata::new(),
                    });
                moment.start = Timestamp::from_micros(*start);
                moment.end = Timestamp::from_micros(*end);
                moment.kind = kind.clone();
                moment.content = format!("updated at step {step}");
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.update_moment(moment.clone()).await,
                    _ => self.handle.update_moment(moment.clone()).await,
                };
                let exists = self.model.store(in_txn).moments.contains_key(&id);
                let expected = match check_moment(*start, *end, kind) {
                    Err(e) => Err(e),
                    Ok(()) if !exists => {
                        self.model.found_absent(in_txn, &[Key::Moment(id)]);
                        Err(NOT_FOUND.to_owned())
                    }
                    Ok(()) => {
                        self.pools.known_moments.insert(id, moment.clone());
                        self.model.write(in_txn, Write::PutMoment(moment.clone()), &[]);
                        Ok(moment)
                    }
                };
                compare(step, op, &real, &expected)
            }
            Op::DeleteMoment { txn, pick } => {
                let id = resolve(&self.pools.moments, *pick, MomentId::new);
                let in_txn = self.in_txn(*txn);
                if self.model.ambiguous(in_txn, &[Key::Moment(id)]) {
                    return Ok(());
                }
                let real = match (&mut self.txn, in_txn) {
                    (Some(t), true) => t.delete_moment(id).await,
                    _ => self.handle.delete_moment(id).await,
                };
                let expected = if self.model.store(in_txn).moments.contains_key(&id) {
                    self.model.write(in_txn, Write::DeleteMoment(id), &[]);
                    Ok(())
                } else {
                    self.model.found_absent(in_txn, &[Key::Moment(id)]);
                    Err(NOT_FOUND.to_owned())
                };
                compare(step, op, &real, &expected)
            }
            Op::Search { vector, k, filter } => self.search(step, op, vector, *k, *filter).await,
            Op::SearchEntities { text, kind, filter, limit } => {
                let filter = filter.map(|f| Filter::parse_str(f).expect("valid filter"));
                let query = EntityQuery {
                    text: text.clone(),
                    kind: kind.clone(),
                    properties: filter.clone(),
                    limit: *limit,
                };
                let real = self.handle.search_entities(&query).await;
                let expected = if *limit == 0 || *limit > MAX_K {
                    Err(invalid("limit"))
                } else if let Some(Err(e)) = kind.as_deref().map(|k| check_name("kind", k)) {
                    Err(e)
                } else {
                    let words = percolate::words(text);
                    let mut found: Vec<Entity> = self
                        .model
                        .committed
                        .entities
                        .values()
                        .filter(|e| percolate::words_match(&percolate::words(&e.name), &words))
                        .filter(|e| kind.as_ref().is_none_or(|k| &e.kind == k))
                        .filter(|e| filter.as_ref().is_none_or(|f| f.matches(&e.properties)))
                        .cloned()
                        .collect();
                    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
                    found.truncate(*limit);
                    Ok(found)
                };
                compare(step, op, &real, &expected)
            }
            Op::Traverse { start, depth, direction, relations } => {
                let start = resolve(&self.pools.entities, *start, EntityId::new);
                let query = TraverseQuery {
                    start,
                    depth: *depth,
                    direction: *direction,
                    relations: relations.clone(),
                };
                let real = self.handle.traverse(&query).await;
                let expected = if *depth == 0 || *depth > MAX_DEPTH {
                    Err(invalid("depth"))
                } else if let Some(Err(e)) =
                    relations.iter().map(|r| check_name("relation", r)).find(|r| r.is_err())
                {
                    Err(e)
                } else if !self.model.committed.entities.contains_key(&start) {
                    Err(NOT_FOUND.to_owned())
                } else {
                    Ok(traverse(&self.model.committed, &query))
                };
                compare(step, op, &real, &expected)
            }
            Op::MomentsInRange { start, end } => {
                let range = TimeRange {
                    start: start.map(Timestamp::from_micros),
                    end: end.map(Timestamp::from_micros),
                };
                let real = self.handle.moments_in_range(&range).await;
                let expected = match (start, end) {
                    (Some(s), Some(e)) if e < s => Err(invalid("time range")),
                    _ => {
                        let mut found: Vec<Moment> = self
                            .model
                            .committed
                            .moments
                            .values()
                            .filter(|m| range.overlaps(m.start, m.end))
                            .cloned()
                            .collect();
                        found.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));
                        Ok(found)
                    }
                };
                compare(step, op, &real, &expected)
            }
            Op::Scan { kind, after, limit } => {
                let after = after.map(|p| match kind {
                    RecordKind::Resource => {
                        resolve(&self.pools.resources, p, ResourceId::new).as_uuid()
                    }
                    RecordKind::Entity => resolve(&self.pools.entities, p, EntityId::new).as_uuid(),
                    RecordKind::Edge => resolve(&self.pools.edges, p, EdgeId::new).as_uuid(),
                    RecordKind::Moment => resolve(&self.pools.moments, p, MomentId::new).as_uuid(),
                });
                let real = self.handle.scan(*kind, after, *limit).await;
                let expected = if *limit == 0 || *limit > MAX_BATCH {
                    Err(invalid("limit"))
                } else {
                    Ok(self
                        .model
                        .committed
                        .records(*kind)
                        .into_iter()
                        .filter(|(id, _)| after.is_none_or(|a| *id > a))
                        .take(*limit)
                        .map(|(_, r)| r)
                        .collect())
                };
                compare(step, op, &real, &expected)
            }
        }
    }

    fn resource_from(
        fields: &ResourceFields,
        id: ResourceId,
        created: Timestamp,
        updated: Timestamp,
    ) -> Resource {
        Resource {
            id,
            uri: fields.uri.clone(),
            content: fields.content.clone(),
            metadata: fields.metadata.clone(),
            embedding: fields.embedding.clone(),
            created_at: created,
            updated_at: updated,
        }
    }

    fn new_resource(fields: &ResourceFields) -> NewResource {
        NewResource {
            uri: fields.uri.clone(),
            content: fields.content.clone(),
            metadata: fields.metadata.clone(),
            embedding: fields.embedding.clone(),
        }
    }

    async fn create_resource(
        &mut self,
        step: usize,
        op: &Op,
        txn: bool,
        fields: &ResourceFields,
    ) -> std::result::Result<(), String> {
        let in_txn = self.in_txn(txn);
        let real = match (&mut self.txn, in_txn) {
            (Some(t), true) => t.create_resource(Self::new_resource(fields)).await,
            _ => self.handle.create_resource(Self::new_resource(fields)).await,
        };
        let expected = match (self.model.check_resources(&[fields]), &real) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(created)) => {
                let resource =
                    Self::resource_from(fields, created.id, created.created_at, created.created_at);
                self.pools.resources.push(resource.id);
                self.pools.known_resources.insert(resource.id, resource.clone());
                self.model.write(in_txn, Write::PutResource(resource.clone()), &[]);
                Ok(resource)
            }
            (Ok(()), Err(_)) => Err("success".to_owned()),
        };
        compare(step, op, &real, &expected)
    }

    async fn batch_create(
        &mut self,
        step: usize,
        op: &Op,
        batch: &[ResourceFields],
    ) -> std::result::Result<(), String> {
        let real = self
            .handle
            .batch_create_resources(batch.iter().map(Self::new_resource).collect())
            .await;
        let all: Vec<&ResourceFields> = batch.iter().collect();
        let expected = match (self.model.check_resources(&all), &real) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(created)) if created.len() == batch.len() => {
                let mut resources = Vec::new();
                for (fields, created) in batch.iter().zip(created) {
                    let resource = Self::resource_from(
                        fields,
                        created.id,
                        created.created_at,
                        created.created_at,
                    );
                    self.pools.resources.push(resource.id);
                    self.pools.known_resources.insert(resource.id, resource.clone());
                    self.model.write(false, Write::PutResource(resource.clone()), &[]);
                    resources.push(resource);
                }
                Ok(resources)
            }
            (Ok(()), _) => Err(format!("success with {} resources", batch.len())),
        };
        compare(step, op, &real, &expected)
    }

    async fn insert_resource(
        &mut self,
        step: usize,
        op: &Op,
        pick: Pick,
    ) -> std::result::Result<(), String> {
        let id = resolve(&self.pools.resources, pick, ResourceId::new);
        let resource = self.pools.known_resources.get(&id).cloned().unwrap_or_else(|| Resource {
            id,
            uri: None,
            content: "imported".into(),
            metadata: Metadata::new(),
            embedding: None,
            created_at: Timestamp::from_micros(1_000),
            updated_at: Timestamp::from_micros(2_000),
        });
        let real = self.handle.insert_resources(std::slice::from_ref(&resource)).await;
        let fields = ResourceFields {
            uri: resource.uri.clone(),
            content: resource.content.clone(),
            metadata: resource.metadata.clone(),
            embedding: resource.embedding.clone(),
        };
        let expected = match self.model.check_resources(&[&fields]) {
            Err(e) => Err(e),
            Ok(()) if self.model.committed.resources.contains_key(&id) => {
                Err(ALREADY_EXISTS.to_owned())
            }
            Ok(()) => {
                if !self.pools.resources.contains(&id) {
                    self.pools.resources.push(id);
                    self.pools.known_resources.insert(id, resource.clone());
                }
                self.model.write(false, Write::PutResource(resource), &[]);
                Ok(())
            }
        };
        compare(step, op, &real, &expected)
    }

    async fn update_resource(
        &mut self,
        step: usize,
        op: &Op,
        txn: bool,
        pick: Pick,
        fields: &ResourceFields,
    ) -> std::result::Result<(), String> {
        let id = resolve(&self.pools.resources, pick, ResourceId::new);
        let in_txn = self.in_txn(txn);
        if self.model.ambiguous(in_txn, &[Key::Resource(id)]) {
            return Ok(());
        }
        // A caller-supplied created_at must be ignored: the stored one is kept.
        let input =
            Self::resource_from(fields, id, Timestamp::from_micros(7), Timestamp::from_micros(7));
        let real = match (&mut self.txn, in_txn) {
            (Some(t), true) => t.update_resource(input).await,
            _ => self.handle.update_resource(input).await,
        };
        let stored = self.model.store(in_txn).resources.get(&id).cloned();
        let expected = match (self.model.check_resources(&[fields]), stored, &real) {
            (Err(e), _, _) => Err(e),
            (Ok(()), None, _) => {
                self.model.found_absent(in_txn, &[Key::Resource(id)]);
                Err(NOT_FOUND.to_owned())
            }
            (Ok(()), Some(stored), Ok(updated)) => {
                let resource =
                    Self::resource_from(fields, id, stored.created_at, updated.updated_at);
                self.pools.known_resources.insert(id, resource.clone());
                self.model.write(in_txn, Write::PutResource(resource.clone()), &[]);
                Ok(resource)
            }
            (Ok(()), Some(_), Err(_)) => Err("success".to_owned()),
        };
        compare(step, op, &real, &expected)
    }

    async fn search(
        &mut self,
        step: usize,
        op: &Op,
        vector: &[f32],
        k: usize,
        filter: Option<&'static str>,
    ) -> std::result::Result<(), String> {
        let filter = filter.map(|f| Filter::parse_str(f).expect("valid filter"));
        let query = SearchQuery { vector: vector.to_vec(), k, filter: filter.clone() };
        let real = self.handle.search_resources(&query).await;
        let bad_vector = vector.is_empty() || vector.iter().any(|x| !x.is_finite());
        let expected_error = if k == 0 || k > MAX_K {
            Some(invalid("k"))
        } else if bad_vector {
            Some(invalid("query vector"))
        } else {
            match self.model.dimension {
                Some(d) if d as usize != vector.len() => Some(invalid("query vector")),
                _ => None,
            }
        };
        let hits = match (real, expected_error) {
            (Err(e), Some(expected)) if kind(&e) == expected => return Ok(()),
            (Ok(hits), None) => hits,
            (real, expected) => {
                return Err(mismatch(step, op, format!("provider {real:?}, model {expected:?}")));
            }
        };
        let metric = self.model.metric;
        let mut candidates: Vec<(f64, &Resource)> = self
            .model
            .committed
            .resources
            .values()
            .filter(|r| filter.as_ref().is_none_or(|f| f.matches(&r.metadata)))
            .filter_map(|r| r.embedding.as_deref().map(|e| (distance(metric, e, vector), r)))
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        let fail = |what: String| Err(mismatch(step, op, format!("{what}; hits {hits:?}")));
        if hits.len() != k.min(candidates.len()) {
            return fail(format!("{} hits, expected {}", hits.len(), k.min(candidates.len())));
        }
        let Some(cut) = candidates.get(hits.len().saturating_sub(1)).map(|c| c.0) else {
            return Ok(());
        };
        let tolerance = |d: f64| 1e-4 * d.abs().max(1.0);
        for (i, hit) in hits.iter().enumerate() {
            let Some((expected, resource)) = candidates.iter().find(|c| c.1.id == hit.resource.id)
            else {
                return fail(format!("hit {} is not a candidate", hit.resource.id));
            };
            if &hit.resource != *resource {
                return fail(format!("hit {} differs from the stored resource", hit.resource.id));
            }
            if (f64::from(hit.distance) - expected).abs() > tolerance(*expected) {
                return fail(format!(
                    "distance {} of {}, expected {expected}",
                    hit.distance, hit.resource.id
                ));
            }
            if *expected > cut + tolerance(cut) {
                return fail(format!("{} is beyond the top {k}", hit.resource.id));
            }
            if let Some(next) = hits.get(i + 1) {
                let ordered = hit.distance < next.distance
                    || (hit.distance == next.distance && hit.resource.id < next.resource.id);
                if !ordered {
                    return fail("not nearest first, ties by id".to_owned());
                }
            }
        }
        for (distance, resource) in &candidates {
            if *distance < cut - tolerance(cut)
                && !hits.iter().any(|h| h.resource.id == resource.id)
            {
                return fail(format!("{} (distance {distance}) is missing", resource.id));
            }
        }
        Ok(())
    }
}

/// The distance the contract defines, computed in f64 independently of the library; a zero
/// vector is at cosine distance 1.
fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    match metric {
        Metric::Cosine => {
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            if na * nb == 0.0 { 1.0 } else { 1.0 - dot / (na * nb) }
        }
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum(),
        Metric::Dot => -dot,
    }
}

/// Breadth-first traversal as the contract states it.
fn traverse(store: &Store, query: &TraverseQuery) -> Vec<Reached> {
    let mut depth_of: BTreeMap<EntityId, u32> = BTreeMap::new();
    let mut frontier = vec![query.start];
    for depth in 1..=query.depth {
        let mut next = Vec::new();
        for node in &frontier {
            for edge in store.edges.values() {
                if !query.relations.is_empty() && !query.relations.contains(&edge.relation) {
                    continue;
                }
                let mut ends = Vec::new();
                if matches!(query.direction, Direction::Out | Direction::Both) && edge.from == *node
                {
                    ends.push(edge.to);
                }
                if matches!(query.direction, Direction::In | Direction::Both) && edge.to == *node {
                    ends.push(edge.from);
                }
                for end in ends {
                    if end != query.start && !depth_of.contains_key(&end) {
                        depth_of.insert(end, depth);
                        next.push(end);
                    }
                }
            }
        }
        frontier = next;
    }
    let mut reached: Vec<Reached> =
        depth_of.into_iter().map(|(entity, depth)| Reached { entity, depth }).collect();
    reached.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.entity.cmp(&b.entity)));
    reached
}
