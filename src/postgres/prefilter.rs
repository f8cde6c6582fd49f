//! What of a metadata [`Filter`] the server can check: a JSON document that the metadata of
//! every matching resource contains (`metadata @> doc`).
//!
//! The document is a *necessary* condition, never more: a resource the filter matches always
//! passes it, so pushing it into SQL (where a vector index scan can skip past non-matching
//! rows) loses nothing, and the exact [`Filter::matches`] still runs on every row that comes
//! back. Only conditions whose containment is implied by the filter's own semantics are kept:
//! equality (`$eq`, or `$in` of one value) with a string, a boolean, or an integer of
//! magnitude below 2^53 (where the filter's `f64` comparison and PostgreSQL's exact numeric
//! equality agree), under `$and` or an implicit conjunction. Anything else contributes nothing
//! (an empty document, which every metadata object contains).

use serde_json::{Map, Value};

use crate::model::{CmpOp, Filter};

/// Integers of smaller magnitude are exact in an `f64`.
const EXACT_INTEGER: u64 = 1 << 53;

/// A document `metadata @>` holds for every resource `filter` matches (see the module docs).
pub(crate) fn containment(filter: &Filter) -> Value {
    let mut doc = Map::new();
    collect(filter, &mut doc);
    Value::Object(doc)
}

fn collect(filter: &Filter, doc: &mut Map<String, Value>) {
    match filter {
        Filter::And(all) => {
            for f in all {
                collect(f, doc);
            }
        }
        Filter::Compare { path, op: CmpOp::Eq, value } => add(doc, path, value),
        Filter::In { path, values, negated: false } if values.len() == 1 => {
            add(doc, path, &values[0]);
        }
        _ => {}
    }
}

fn containable(value: &Value) -> bool {
    match value {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => {
            n.as_u64().is_some_and(|n| n < EXACT_INTEGER)
                || n.as_i64().is_some_and(|n| n.unsigned_abs() < EXACT_INTEGER)
        }
        _ => false,
    }
}

/// Adds `path = value` unless it conflicts with what the document already holds (then the
/// document stays as it is: weaker, still necessary).
fn add(doc: &mut Map<String, Value>, path: &[String], value: &Value) {
    if !containable(value) || path.is_empty() {
        return;
    }
    let mut node = doc;
    for (i, key) in path.iter().enumerate() {
        if i + 1 == path.len() {
            if !node.contains_key(key) {
                node.insert(key.clone(), value.clone());
            }
            return;
        }
        let next = node.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
        match next {
            Value::Object(map) => node = map,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(filter: Value) -> Value {
        containment(&Filter::parse(&filter).expect("filter"))
    }

    #[test]
    fn equalities_under_conjunctions_are_kept() {
        assert_eq!(doc(json!({"lang": "en", "n": 3})), json!({"lang": "en", "n": 3}));
        assert_eq!(
            doc(json!({"$and": [{"a.b": true}, {"a.c": {"$in": ["x"]}}]})),
            json!({"a": {"b": true, "c": "x"}})
        );
    }

    #[test]
    fn anything_else_contributes_nothing() {
        for filter in [
            json!({"$or": [{"a": 1}, {"a": 2}]}),
            json!({"a": {"$ne": 1}}),
            json!({"a": {"$gt": 1}}),
            json!({"a": {"$in": [1, 2]}}),
            json!({"a": {"$nin": [1]}}),
            json!({"$not": {"a": 1}}),
            json!({"a": 1.5}),
            json!({"a": 9_007_199_254_740_993_u64}),
            json!({"a": {"x": 1}}),
            json!({"a": null}),
        ] {
            assert_eq!(doc(filter.clone()), json!({}), "{filter}");
        }
    }

    #[test]
    fn conflicting_paths_keep_the_first() {
        assert_eq!(doc(json!({"$and": [{"a": 1}, {"a.b": 2}]})), json!({"a": 1}));
        assert_eq!(doc(json!({"$and": [{"a.b": 2}, {"a": 1}]})), json!({"a": {"b": 2}}));
    }
}
