//! Filters over JSON metadata, used by vector search and entity search.
//!
//! The syntax is a small, MongoDB-like JSON object, parsed once into a [`Filter`]:
//! - `{"lang": "en"}`: field equals value (dotted paths reach into nested objects: `"a.b"`);
//! - `{"year": {"$gte": 2020, "$lt": 2025}}`: comparisons `$eq $ne $gt $gte $lt $lte`;
//! - `{"tag": {"$in": ["a", "b"]}}`, `{"tag": {"$nin": [...]}}`, `{"x": {"$exists": true}}`;
//! - `{"$and": [..]}`, `{"$or": [..]}`, `{"$not": {..}}`; several keys in one object are ANDed.
//!
//! Numbers compare as numbers (`1 == 1.0`), strings by bytes; comparing values of different
//! types is false. A missing field matches only `$ne`, `$nin` and `$exists: false`. Parsing
//! rejects unknown operators and nesting deeper than [`MAX_FILTER_DEPTH`], so no input can
//! exhaust the stack.
//!
//! A filter runs on every candidate a search reads, so its size bounds the work of a search:
//! at most [`MAX_FILTER_NODES`] conditions and [`MAX_FILTER_VALUES`] values in all its `$in`
//! and `$nin` lists. [`Filter::parse`] refuses larger ones, and the engine checks a filter built
//! in code with [`Filter::check_limits`] before any provider sees it, so every provider refuses
//! the same filters.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::records::Metadata;
use crate::error::{Error, Result};

/// The deepest nesting a filter may have.
pub const MAX_FILTER_DEPTH: usize = 32;
/// The most conditions a filter may have: every `$and`, `$or`, `$not`, comparison, `$in`,
/// `$nin` and `$exists` counts one.
pub const MAX_FILTER_NODES: usize = 256;
/// The most values a filter's `$in` and `$nin` lists may hold together.
pub const MAX_FILTER_VALUES: usize = 1024;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `$eq`
    Eq,
    /// `$ne`
    Ne,
    /// `$gt`
    Gt,
    /// `$gte`
    Gte,
    /// `$lt`
    Lt,
    /// `$lte`
    Lte,
}

impl CmpOp {
    fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "$eq",
            CmpOp::Ne => "$ne",
            CmpOp::Gt => "$gt",
            CmpOp::Gte => "$gte",
            CmpOp::Lt => "$lt",
            CmpOp::Lte => "$lte",
        }
    }
}

/// A parsed metadata filter. Build one with [`Filter::parse`] or deserialize it from JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every filter matches.
    And(Vec<Filter>),
    /// At least one filter matches.
    Or(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
    /// The field at `path` compares to `value` with `op`.
    Compare {
        /// Dotted path split into keys.
        path: Vec<String>,
        /// The operator.
        op: CmpOp,
        /// The operand.
        value: Value,
    },
    /// The field at `path` equals one of `values` (or, negated, none of them).
    In {
        /// Dotted path split into keys.
        path: Vec<String>,
        /// The candidates.
        values: Vec<Value>,
        /// `$nin` rather than `$in`.
        negated: bool,
    },
    /// The field at `path` exists (or, when `exists` is false, does not).
    Exists {
        /// Dotted path split into keys.
        path: Vec<String>,
        /// Whether it must exist.
        exists: bool,
    },
}

impl Filter {
    /// Parses the JSON syntax described in the module docs.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the offending part.
    pub fn parse(value: &Value) -> Result<Self> {
        let filter = parse_object(value, 0)?;
        filter.check_limits()?;
        Ok(filter)
    }

    /// Checks the size limits [`Filter::parse`] enforces: at most [`MAX_FILTER_DEPTH`] levels,
    /// [`MAX_FILTER_NODES`] conditions and [`MAX_FILTER_VALUES`] `$in`/`$nin` values. For a
    /// filter built in code; the walk stops at the first limit passed, so it costs at most
    /// that much whatever the filter's size.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the limit passed.
    pub fn check_limits(&self) -> Result<()> {
        let (mut nodes, mut values) = (0usize, 0usize);
        let mut pending: Vec<(&Filter, usize)> = vec![(self, 0)];
        while let Some((filter, depth)) = pending.pop() {
            nodes += 1;
            if nodes > MAX_FILTER_NODES {
                return Err(invalid(format!(
                    "more than {MAX_FILTER_NODES} conditions (MAX_FILTER_NODES)"
                )));
            }
            if depth > MAX_FILTER_DEPTH {
                return Err(invalid(format!("nested deeper than {MAX_FILTER_DEPTH}")));
            }
            match filter {
                Filter::And(all) | Filter::Or(all) => {
                    pending.extend(all.iter().map(|f| (f, depth + 1)));
                }
                Filter::Not(inner) => pending.push((inner, depth + 1)),
                Filter::In { values: list, .. } => {
                    values = values.saturating_add(list.len());
                    if values > MAX_FILTER_VALUES {
                        return Err(too_many_values());
                    }
                }
                Filter::Compare { .. } | Filter::Exists { .. } => {}
            }
        }
        Ok(())
    }

    /// Parses a filter from JSON text.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the text is not JSON or not a valid filter.
    pub fn parse_str(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::invalid("filter", e))?;
        Self::parse(&value)
    }

    /// Whether `metadata` satisfies the filter.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        self.matches_fields(&|key: &str| metadata.get(key))
    }

    /// [`Filter::matches`] on metadata kept in another form: `field` gives the value of a
    /// top-level key.
    pub(crate) fn matches_fields<'a>(&self, field: &impl Fn(&str) -> Option<&'a Value>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches_fields(field)),
            Filter::Or(any) => any.iter().any(|f| f.matches_fields(field)),
            Filter::Not(inner) => !inner.matches_fields(field),
            Filter::Compare { path, op, value } => match (lookup(field, path), op) {
                (None, CmpOp::Ne) => true,
                (None, _) => false,
                (Some(found), op) => compare(found, *op, value),
            },
            Filter::In { path, values, negated } => {
                let hit = lookup(field, path)
                    .is_some_and(|found| values.iter().any(|v| json_eq(found, v)));
                hit != *negated
            }
            Filter::Exists { path, exists } => lookup(field, path).is_some() == *exists,
        }
    }

    /// The filter in its JSON syntax; [`Filter::parse`] of it gives back an equal filter.
    pub fn to_json(&self) -> Value {
        fn path_str(path: &[String]) -> String {
            path.join(".")
        }
        match self {
            Filter::And(all) => {
                serde_json::json!({ "$and": all.iter().map(Filter::to_json).collect::<Vec<_>>() })
            }
            Filter::Or(any) => {
                serde_json::json!({ "$or": any.iter().map(Filter::to_json).collect::<Vec<_>>() })
            }
            Filter::Not(inner) => serde_json::json!({ "$not": inner.to_json() }),
            Filter::Compare { path, op, value } => {
                serde_json::json!({ path_str(path): { op.name(): value } })
            }
            Filter::In { path, values, negated } => {
                let op = if *negated { "$nin" } else { "$in" };
                serde_json::json!({ path_str(path): { op: values } })
            }
            Filter::Exists { path, exists } => {
                serde_json::json!({ path_str(path): { "$exists": exists } })
            }
        }
    }
}

fn invalid(reason: impl std::fmt::Display) -> Error {
    Error::invalid("filter", reason)
}

fn too_many_values() -> Error {
    invalid(format!("more than {MAX_FILTER_VALUES} $in/$nin values (MAX_FILTER_VALUES)"))
}

fn parse_object(value: &Value, depth: usize) -> Result<Filter> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(format!("nested deeper than {MAX_FILTER_DEPTH}")));
    }
    let Value::Object(map) = value else {
        return Err(invalid("a filter must be a JSON object"));
    };
    let mut parts = Vec::with_capacity(map.len());
    for (key, operand) in map {
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = operand else {
                    return Err(invalid(format!("{key} takes an array of filters")));
                };
                let inner = items
                    .iter()
                    .map(|item| parse_object(item, depth + 1))
                    .collect::<Result<Vec<_>>>()?;
                parts.push(if key == "$and" { Filter::And(inner) } else { Filter::Or(inner) });
            }
            "$not" => parts.push(Filter::Not(Box::new(parse_object(operand, depth + 1)?))),
            op if op.starts_with('$') => return Err(invalid(format!("unknown operator {op}"))),
            field => parts.push(parse_field(field, operand)?),
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
}

fn parse_path(field: &str) -> Result<Vec<String>> {
    if field.is_empty() || field.split('.').any(str::is_empty) {
        return Err(invalid(format!("bad field path {field:?}")));
    }
    Ok(field.split('.').map(str::to_owned).collect())
}

fn parse_field(field: &str, operand: &Value) -> Result<Filter> {
    let path = parse_path(field)?;
    let operators = match operand {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
        other => return Ok(Filter::Compare { path, op: CmpOp::Eq, value: other.clone() }),
    };
    let mut parts = Vec::with_capacity(operators.len());
    for (op, value) in operators {
        let part = match op.as_str() {
            "$eq" => Filter::Compare { path: path.clone(), op: CmpOp::Eq, value: value.clone() },
            "$ne" => Filter::Compare { path: path.clone(), op: CmpOp::Ne, value: value.clone() },
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if !(value.is_number() || value.is_string()) {
                    return Err(invalid(format!("{op} takes a number or a string")));
                }
                let op = match op.as_str() {
                    "$gt" => CmpOp::Gt,
                    "$gte" => CmpOp::Gte,
                    "$lt" => CmpOp::Lt,
                    _ => CmpOp::Lte,
                };
                Filter::Compare { path: path.clone(), op, value: value.clone() }
            }
            "$in" | "$nin" => {
                let Value::Array(values) = value else {
                    return Err(invalid(format!("{op} takes an array")));
                };
                // Refused before the list is copied.
                if values.len() > MAX_FILTER_VALUES {
                    return Err(too_many_values());
                }
                Filter::In { path: path.clone(), values: values.clone(), negated: op == "$nin" }
            }
            "$exists" => {
                let Value::Bool(exists) = value else {
                    return Err(invalid("$exists takes true or false"));
                };
                Filter::Exists { path: path.clone(), exists: *exists }
            }
            other => return Err(invalid(format!("unknown operator {other} on {field:?}"))),
        };
        parts.push(part);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
}

fn lookup<'a>(field: &impl Fn(&str) -> Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = field(first)?;
    for key in rest {
        current = current.as_object()?.get(key)?;
    }
    Some(current)
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(found: &Value, op: CmpOp, operand: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (found, operand) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    };
    match op {
        CmpOp::Eq => json_eq(found, operand),
        CmpOp::Ne => !json_eq(found, operand),
        CmpOp::Gt => ordering == Some(Ordering::Greater),
        CmpOp::Gte => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Lt => ordering == Some(Ordering::Less),
        CmpOp::Lte => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Filter::parse(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn filters_match_as_documented() {
        let m = meta(json!({"lang": "en", "year": 2021, "tags": "x", "a": {"b": 1.0}}));
        let yes = [
            json!({"lang": "en"}),
            json!({"year": {"$gte": 2021, "$lt": 2022}}),
            json!({"a.b": 1}),
            json!({"tags": {"$in": ["x", "y"]}}),
            json!({"missing": {"$ne": 3}}),
            json!({"missing": {"$exists": false}}),
            json!({"$or": [{"lang": "fr"}, {"year": 2021}]}),
            json!({"$not": {"lang": "fr"}}),
        ];
        for f in yes {
            assert!(Filter::parse(&f).unwrap().matches(&m), "{f}");
        }
        let no = [
            json!({"lang": "fr"}),
            json!({"year": {"$gt": 2021}}),
            json!({"year": {"$gt": "2000"}}),
            json!({"missing": 1}),
            json!({"tags": {"$nin": ["x"]}}),
        ];
        for f in no {
            assert!(!Filter::parse(&f).unwrap().matches(&m), "{f}");
        }
    }

    #[test]
    fn bad_filters_are_invalid_not_panics() {
        let deep = (0..100).fold(json!({"a": 1}), |acc, _| json!({"$not": acc}));
        for f in [json!([1]), json!({"$foo": 1}), json!({"a": {"$in": 3}}), json!({"": 1}), deep] {
            assert!(matches!(Filter::parse(&f), Err(Error::Invalid { .. })), "{f}");
        }
    }

    #[test]
    fn filters_past_the_size_limits_are_invalid_naming_the_limit() {
        let conditions =
            |n: usize| json!({"$or": (0..n).map(|i| json!({"a": i})).collect::<Vec<_>>()});
        // `$or` itself is one condition.
        assert!(Filter::parse(&conditions(MAX_FILTER_NODES - 1)).is_ok());
        let error = Filter::parse(&conditions(MAX_FILTER_NODES)).expect_err("too many");
        assert!(error.to_string().contains("MAX_FILTER_NODES"), "{error}");
        let values = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
        assert!(Filter::parse(&json!({"a": {"$in": values(MAX_FILTER_VALUES)}})).is_ok());
        let split = json!({"a": {"$in": values(MAX_FILTER_VALUES / 2)},
                           "b": {"$nin": values(MAX_FILTER_VALUES / 2 + 1)}});
        let error = Filter::parse(&split).expect_err("too many values in all");
        assert!(error.to_string().contains("MAX_FILTER_VALUES"), "{error}");
        let error = Filter::parse(&json!({"a": {"$in": values(1_000_000)}})).expect_err("huge");
        assert!(error.to_string().contains("MAX_FILTER_VALUES"), "{error}");
    }

    #[test]
    fn limits_are_checked_without_recursion_on_filters_built_in_code() {
        // Deep enough to overflow the stack of a recursive walk.
        let deep = (0..100_000)
            .fold(Filter::Exists { path: vec!["a".into()], exists: true }, |f, _| {
                Filter::Not(Box::new(f))
            });
        assert!(matches!(deep.check_limits(), Err(Error::Invalid { .. })));
        // Dropping it recurses too: leak it rather than overflow the test's stack.
        std::mem::forget(deep);
        let wide = Filter::And(
            (0..MAX_FILTER_NODES)
                .map(|_| Filter::Exists { path: vec!["a".into()], exists: true })
                .collect(),
        );
        assert!(wide.check_limits().is_err());
        let within = Filter::parse(&json!({"a": {"$in": [1, 2]}, "b": 3})).unwrap();
        assert!(within.check_limits().is_ok());
    }

    #[test]
    fn to_json_round_trips() {
        let f = Filter::parse(&json!({"a": {"$gte": 1, "$lt": 4}, "$or": [{"b": "x"}]})).unwrap();
        assert_eq!(Filter::parse(&f.to_json()).unwrap(), f);
    }
}
