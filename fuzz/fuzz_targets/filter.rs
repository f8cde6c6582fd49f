//! The metadata filter parser, on arbitrary text: an `Invalid` error or a filter, never a panic
//! or a stack overflow. A parsed filter prints to JSON that parses back to the same filter, and
//! both agree on sample metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percolate::{Error, Filter, Metadata};

fn samples() -> Vec<Metadata> {
    [
        serde_json::json!({}),
        serde_json::json!({"lang": "en", "year": 2021, "tag": ["x", 1], "a": {"b": 1.0}}),
        serde_json::json!({"lang": null, "year": "2021", "a": {"b": {"c": true}}}),
    ]
    .into_iter()
    .filter_map(|v| v.as_object().cloned())
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let filter = match Filter::parse_str(text) {
        Ok(filter) => filter,
        Err(Error::Invalid { .. }) => return,
        Err(other) => panic!("a bad filter must be Invalid, got {other:?}"),
    };
    let printed = filter.to_json();
    let again = Filter::parse(&printed)
        .unwrap_or_else(|e| panic!("printed filter {printed} does not parse: {e}"));
    assert_eq!(again, filter, "printed as {printed}");
    for metadata in samples() {
        assert_eq!(filter.matches(&metadata), again.matches(&metadata));
    }
});
