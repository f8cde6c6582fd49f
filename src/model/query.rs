//! Queries and their results, and the per-tenant configuration they depend on.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::ids::EntityId;
use super::records::Resource;
use crate::error::{Error, Result};

/// How vector distance is measured. Smaller distances are nearer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `1 - cos(a, b)`, in `[0, 2]`.
    #[default]
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// Negative inner product.
    Dot,
}

impl Metric {
    /// The distance between `a` and `b` (same length) under this metric.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                let denominator = (na * nb).sqrt();
                if denominator == 0.0 { 1.0 } else { 1.0 - dot / denominator }
            }
            Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
            Metric::Dot => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        }
    }

    /// Its name: `cosine`, `l2` or `dot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

impl FromStr for Metric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "l2" => Ok(Metric::L2),
            "dot" => Ok(Metric::Dot),
            other => {
                Err(Error::invalid("metric", format!("{other:?} (expected cosine, l2 or dot)")))
            }
        }
    }
}

/// How a tenant is set up when it is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConfig {
    /// The dimension of every embedding; `None` until the first embedding fixes it.
    pub dimension: Option<u32>,
    /// The vector distance metric.
    pub metric: Metric,
}

/// The largest embedding dimension accepted.
pub const MAX_DIMENSION: usize = 16_000;
/// The largest `k` a vector search accepts.
pub const MAX_K: usize = 10_000;
/// The deepest traversal accepted.
pub const MAX_DEPTH: u32 = 32;

/// A k-nearest-neighbour search over resource embeddings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// The query vector: same dimension as the tenant's embeddings, finite.
    pub vector: Vec<f32>,
    /// How many results, `1..=MAX_K`.
    pub k: usize,
    /// Only resources whose metadata matches. Applied before the top-k cut: when at least `k`
    /// resources match, `k` come back.
    #[serde(default)]
    pub filter: Option<Filter>,
}

impl SearchQuery {
    /// The `k` nearest resources to `vector`.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        Self { vector, k, filter: None }
    }

    /// Only resources whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// A search hit: a resource and its distance to the query (smaller is nearer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredResource {
    /// The resource, embedding included.
    pub resource: Resource,
    /// Its distance under the tenant's metric.
    pub distance: f32,
}

/// A text search over entity names.
///
/// Names and the query are split into lowercase alphanumeric words ([`crate::model::words`]);
/// an entity matches when every query word is a prefix of some word of its name, its kind
/// equals `kind` (when given) and its properties match `properties` (when given). Results are
/// ordered by name, then id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityQuery {
    /// The words to look for; empty matches every entity.
    pub text: String,
    /// Only entities of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only entities whose properties match.
    #[serde(default)]
    pub properties: Option<Filter>,
    /// At most this many results, `1..=MAX_K`.
    pub limit: usize,
}

impl EntityQuery {
    /// Entities whose names match `text`, at most 100.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), kind: None, properties: None, limit: 100 }
    }

    /// Only entities of this kind.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
}

/// Which edges of an entity to follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Edges that leave the entity.
    #[default]
    Out,
    /// Edges that reach the entity.
    In,
    /// Both.
    Both,
}

impl FromStr for Direction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            "both" => Ok(Direction::Both),
            other => {
                Err(Error::invalid("direction", format!("{other:?} (expected out, in or both)")))
            }
        }
    }
}

/// A breadth-first traversal from one entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraverseQuery {
    /// Where to start; must exist.
    pub start: EntityId,
    /// How many hops, `1..=MAX_DEPTH`.
    pub depth: u32,
    /// Which edges to follow.
    #[serde(default)]
    pub direction: Direction,
    /// Only edges with one of these relations; all when empty.
    #[serde(default)]
    pub relations: Vec<String>,
}

impl TraverseQuery {
    /// Every entity within `depth` outgoing hops of `start`.
    pub fn new(start: EntityId, depth: u32) -> Self {
        Self { start, depth, direction: Direction::Out, relations: Vec::new() }
    }

    /// Following edges in `direction`.
    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Following only edges with one of `relations`.
    pub fn with_relations<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        relations: I,
    ) -> Self {
        self.relations = relations.into_iter().map(Into::into).collect();
        self
    }
}

/// An entity reached by a traversal, with the fewest hops it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reached {
    /// The entity.
    pub entity: EntityId,
    /// Hops from the start, `1..=depth`.
    pub depth: u32,
}
