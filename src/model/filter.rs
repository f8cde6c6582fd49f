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

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::records::Metadata;
use crate::error::{Error, Result};

/// The deepest nesting a filter may have.
pub const MAX_FILTER_DEPTH: usize = 32;

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
        parse_object(value, 0)
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
    fn to_json_round_trips() {
        let f = Filter::parse(&json!({"a": {"$gte": 1, "$lt": 4}, "$or": [{"b": "x"}]})).unwrap();
        assert_eq!(Filter::parse(&f.to_json()).unwrap(), f);
    }
}
