//! Full-text queries and their hits. The tokenizer and ranking they name live in
//! [`crate::text`]; nothing here knows a backend.

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::records::Record;
use super::time::TimeRange;

/// The longest full-text query accepted, in bytes.
pub const MAX_TEXT_QUERY_BYTES: usize = 4096;
/// The most distinct terms a full-text query may have.
pub const MAX_TEXT_QUERY_TERMS: usize = 64;

/// Which records a full-text search ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TextTarget {
    /// Resources, by their content.
    #[default]
    Resources,
    /// Moments, by their content.
    Moments,
}

/// A BM25-ranked full-text search over the content of resources or moments.
///
/// The query and the content are split into terms by [`crate::text`] (Unicode words,
/// lowercased, English stemming); a record matches when its content has at least one query
/// term, its metadata matches `filter` and its time is within `window` (when given). The `k`
/// best come back, best first, ties broken by id; the filter and the window apply before the
/// cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextQuery {
    /// The query text, at most [`MAX_TEXT_QUERY_BYTES`] bytes and
    /// [`MAX_TEXT_QUERY_TERMS`] distinct terms. A query with no term matches nothing.
    pub text: String,
    /// Which records to rank.
    #[serde(default)]
    pub target: TextTarget,
    /// How many results, `1..=MAX_K`.
    pub k: usize,
    /// Only records whose metadata matches.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Only resources created within this window, or moments overlapping it (ends included).
    #[serde(default)]
    pub window: Option<TimeRange>,
}

impl TextQuery {
    /// The `k` resources whose content best matches `text`.
    pub fn new(text: impl Into<String>, k: usize) -> Self {
        Self { text: text.into(), target: TextTarget::Resources, k, filter: None, window: None }
    }

    /// Ranks moments rather than resources.
    pub fn moments(mut self) -> Self {
        self.target = TextTarget::Moments;
        self
    }

    /// Only records whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Only resources created within `window`, or moments overlapping it.
    pub fn within(mut self, window: TimeRange) -> Self {
        self.window = Some(window);
        self
    }

    /// Whether `record` is of the query's target and passes its filter and window: the check
    /// every provider applies to ranked records before the cut.
    pub fn admits(&self, record: &Record) -> bool {
        let (metadata, start, end) = match (self.target, record) {
            (TextTarget::Resources, Record::Resource(r)) => {
                (&r.metadata, r.created_at, r.created_at)
            }
            (TextTarget::Moments, Record::Moment(m)) => (&m.metadata, m.start, m.end),
            _ => return false,
        };
        self.window.is_none_or(|window| window.overlaps(start, end))
            && self.filter.as_ref().is_none_or(|filter| filter.matches(metadata))
    }
}

/// A full-text hit: a resource (embedding included) or a moment, and its BM25 score (larger is
/// better).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextHit {
    /// The record: [`Record::Resource`] or [`Record::Moment`], as the query's target.
    pub record: Record,
    /// Its BM25 score.
    pub score: f64,
}
