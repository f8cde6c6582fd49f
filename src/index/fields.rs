//! A point's metadata as the index keeps it for filters, the postings that find the points
//! an equality filter pins, and the verdicts one search remembers per point. Owns nothing of
//! the graph or of storage.

use std::collections::HashMap;

use crate::model::{Filter, Metadata};

/// A point's metadata as the index keeps it for filters: the top-level fields sorted by key in
/// one allocation: `serde_json`'s own map is a `BTreeMap` whose node alone is ~630 bytes even
/// for two small fields, more than a 128-d vector.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Fields(Box<[(Box<str>, serde_json::Value)]>);

impl Fields {
    pub(crate) fn of(metadata: &Metadata) -> Self {
        // The map iterates in key order (byte order, as `str` compares), so the slice is sorted.
        Self(metadata.iter().map(|(key, value)| (key.as_str().into(), value.clone())).collect())
    }

    pub(super) fn get(&self, key: &str) -> Option<&serde_json::Value> {
        let found = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[found].1)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(key, value)| (&**key, value))
    }

    pub(super) fn matches(&self, filter: &Filter) -> bool {
        filter.matches_fields(&|key: &str| self.get(key))
    }

    /// Heap bytes, estimated (allocator overhead not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<(Box<str>, serde_json::Value)>()
            + self.iter().map(|(key, value)| key.len() + value_heap_bytes(value)).sum::<usize>()
    }
}

/// Heap bytes of a JSON map and what it holds, estimated: `serde_json`'s map is a `BTreeMap`
/// whose nodes hold up to 11 entries, so even a map of two small fields costs a whole node
/// (~630 bytes).
pub(super) fn map_heap_bytes(map: &Metadata) -> usize {
    use std::mem::size_of;
    const CAPACITY: usize = 11;
    let node =
        2 * size_of::<usize>() + CAPACITY * (size_of::<String>() + size_of::<serde_json::Value>());
    map.len().div_ceil(CAPACITY) * node
        + map.iter().map(|(key, value)| key.capacity() + value_heap_bytes(value)).sum::<usize>()
}

fn value_heap_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => text.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => map_heap_bytes(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// A JSON scalar as a posting key. Numbers are keyed by their `f64` value, the way filters
/// compare them (`1 == 1.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
}

impl Scalar {
    fn of(value: &serde_json::Value) -> Option<Scalar> {
        Some(match value {
            serde_json::Value::Null => Scalar::Null,
            serde_json::Value::Bool(b) => Scalar::Bool(*b),
            serde_json::Value::Number(n) => {
                let x = n.as_f64()?;
                Scalar::Number(if x == 0.0 { 0.0f64.to_bits() } else { x.to_bits() })
            }
            serde_json::Value::String(s) => Scalar::String(s.clone()),
            _ => return None,
        })
    }
}

/// Graph points by top-level scalar metadata value: the candidates of an equality filter
/// without walking or scanning. Deleted points stay listed and are skipped at query time.
#[derive(Default)]
pub(super) struct Postings(HashMap<String, HashMap<Scalar, Vec<u32>>>);

impl Postings {
    /// Forgets every point.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Heap bytes, estimated (allocator overhead not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(key, values)| {
                key.capacity()
                    + values.capacity() * (std::mem::size_of::<(Scalar, Vec<u32>)>() + 1)
                    + values.values().map(|ids| 4 * ids.capacity()).sum::<usize>()
            })
            .sum()
    }

    /// Lists `point` under each top-level scalar of its metadata.
    pub(super) fn post(&mut self, point: u32, metadata: &Fields) {
        for (key, value) in metadata.iter() {
            if let Some(scalar) = Scalar::of(value) {
                self.0.entry(key.to_owned()).or_default().entry(scalar).or_default().push(point);
            }
        }
    }

    /// The graph points that may match `filter`, from the postings, when the filter pins
    /// top-level fields to values (`{"a": 1}`, `$eq`, `$in`, and `$and`/`$or` of those);
    /// `None` when it does not.
    pub(super) fn candidates(&self, filter: &Filter) -> Option<Posted> {
        let posted = |path: &[String], value: &serde_json::Value| -> Option<&[u32]> {
            let [key] = path else { return None };
            let scalar = Scalar::of(value)?;
            Some(
                self.0
                    .get(key)
                    .and_then(|values| values.get(&scalar))
                    .map_or(&[][..], Vec::as_slice),
            )
        };
        match filter {
            Filter::Compare { path, op: crate::model::CmpOp::Eq, value } => {
                Some(Posted { points: posted(path, value)?.to_vec(), exact: true })
            }
            Filter::In { path, values, negated: false } => {
                let mut points = Vec::new();
                for value in values {
                    points.extend_from_slice(posted(path, value)?);
                }
                points.sort_unstable();
                points.dedup();
                Some(Posted { points, exact: true })
            }
            // The smallest part's points: a superset of the conjunction's, exact only when
            // there is no other part.
            Filter::And(parts) => {
                let smallest = parts
                    .iter()
                    .filter_map(|part| self.candidates(part))
                    .min_by_key(|posted| posted.points.len())?;
                Some(Posted { exact: smallest.exact && parts.len() == 1, ..smallest })
            }
            Filter::Or(parts) => {
                let (mut points, mut exact) = (Vec::new(), true);
                for part in parts {
                    let posted = self.candidates(part)?;
                    points.extend(posted.points);
                    exact &= posted.exact;
                }
                points.sort_unstable();
                points.dedup();
                Some(Posted { points, exact })
            }
            _ => None,
        }
    }
}

/// The graph points a filter may match, from the [`Postings`]. Deleted points may be listed.
pub(super) struct Posted {
    pub(super) points: Vec<u32>,
    /// Every listed point that is not deleted matches the filter (the filter is equalities the
    /// postings answer: a scalar's postings list exactly the points whose field has a value
    /// the filter's comparison calls equal), so its metadata need not be read again; else the
    /// list is a superset and each point must be matched.
    pub(super) exact: bool,
}

/// Whether each graph point passes one search's filter, decided at most once per point and
/// remembered in two bitsets: the filtered walk asks about a point each time it meets it (up
/// to once per expansion that reaches it in two hops), and a bit test is far cheaper than
/// reading the point's metadata again. Points outside the postings' candidates are known to
/// fail from the start.
pub(super) struct Verdicts {
    /// Bit set: the point's verdict is known.
    known: Vec<u64>,
    /// Bit set: the point passes (meaningful only where `known` is set).
    passed: Vec<u64>,
}

impl Verdicts {
    /// Every one of `points` points rejected except `candidates`, whose verdicts are left to
    /// be decided: for a filter whose matches are all among `candidates` (from
    /// [`Postings::candidates`]).
    pub(super) fn only(points: usize, candidates: &[u32]) -> Self {
        let words = points.div_ceil(64);
        let mut known = vec![u64::MAX; words];
        for &point in candidates {
            if let Some(word) = known.get_mut(point as usize / 64) {
                *word &= !(1 << (point % 64));
            }
        }
        Self { known, passed: vec![0; words] }
    }

    /// Whether `point` passes: the remembered verdict, else `decide()`'s, remembered. A point
    /// beyond those the verdicts were made for is decided every time.
    #[inline]
    pub(super) fn passes(&mut self, point: u32, decide: impl FnOnce() -> bool) -> bool {
        let (word, bit) = (point as usize / 64, 1u64 << (point % 64));
        let Some(known) = self.known.get_mut(word) else { return decide() };
        if *known & bit != 0 {
            return self.passed[word] & bit != 0;
        }
        *known |= bit;
        let passes = decide();
        if passes {
            self.passed[word] |= bit;
        }
        passes
    }
}
