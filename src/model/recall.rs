//! The hybrid recall query and its hits: several retrieval signals over resources fused into
//! one ranking. The fusion itself is in `crate::engine::recall`; nothing here knows a backend.

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::records::Resource;
use super::time::TimeRange;

/// The reciprocal rank fusion constant: a hit at rank `r` (from 1) of a signal of weight `w`
/// adds `w / (RRF_K + r)` to its fused score. 60 is the value of Cormack et al., which the
/// systems that fuse this way (Qdrant, LanceDB, Elasticsearch) use too.
pub const RRF_K: f64 = 60.0;

/// The weight of each signal in the fusion; a signal of weight 0 still reports its ranks but
/// does not move the order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallWeights {
    /// Full text (BM25 over content).
    pub text: f64,
    /// Vector nearest neighbours.
    pub vector: f64,
}

impl Default for RecallWeights {
    fn default() -> Self {
        Self { text: 1.0, vector: 1.0 }
    }
}

/// One query fusing the signals it names: BM25 over content when `text` is set, vector
/// nearest neighbours when `vector` is set. Each signal yields up to `candidates`
/// resources that match `filter` and were created within `window`; the lists are fused by
/// reciprocal rank fusion ([`RRF_K`], [`RecallWeights`]) and the `k` best come back, ties
/// broken by id. At least one signal must be set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallQuery {
    /// Query text for the full-text signal.
    #[serde(default)]
    pub text: Option<String>,
    /// Query vector for the vector signal (the tenant's dimension, finite).
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Only resources created within this window (both ends included).
    #[serde(default)]
    pub window: Option<TimeRange>,
    /// Only resources whose metadata matches.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// How many fused hits, `1..=MAX_K`.
    pub k: usize,
    /// How many candidates each signal contributes, `k..=MAX_K`; 0 means `max(4k, 50)`.
    #[serde(default)]
    pub candidates: usize,
    /// The weight of each signal.
    #[serde(default)]
    pub weights: RecallWeights,
}

impl RecallQuery {
    /// A query for the `k` best resources, with no signal set yet.
    pub fn new(k: usize) -> Self {
        Self {
            text: None,
            vector: None,
            window: None,
            filter: None,
            k,
            candidates: 0,
            weights: RecallWeights::default(),
        }
    }

    /// With the full-text signal.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// With the vector signal.
    pub fn with_vector(mut self, vector: Vec<f32>) -> Self {
        self.vector = Some(vector);
        self
    }

    /// Only resources created within `window`.
    pub fn within(mut self, window: TimeRange) -> Self {
        self.window = Some(window);
        self
    }

    /// Only resources whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The number of candidates each signal contributes.
    pub fn candidate_count(&self) -> usize {
        if self.candidates == 0 { (4 * self.k).max(50) } else { self.candidates }
    }
}

/// The rank (from 1) a hit had in each signal's list, `None` where it was not a candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRanks {
    /// Its rank in the full-text list.
    pub text: Option<usize>,
    /// Its rank in the vector list.
    pub vector: Option<usize>,
}

/// A recall hit: a resource, its fused score (larger is better) and why it came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallHit {
    /// The resource, embedding included.
    pub resource: Resource,
    /// Its reciprocal rank fusion score.
    pub score: f64,
    /// Its rank in each signal.
    pub ranks: SignalRanks,
}
