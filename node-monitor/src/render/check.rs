//! Test support for the formats: the test observers, render a line, and check a JSON format's hand
//! writer against its typed serde document over the whole variety of items.
use serde_json::{Value, json};

use super::observer::Observer;
use crate::detect::{OutputItem, fixture::variety};

/// The observer of the format tests: node `node-a`, version 0.1.0.
pub(crate) fn observer() -> Observer {
    Observer {
        hostname: "node-a".to_owned(),
        product: "node-monitor",
        vendor: "node-monitor",
        version: "0.1.0",
    }
}

/// An observer whose strings need JSON escaping.
pub(crate) fn hostile_observer() -> Observer {
    Observer {
        hostname: "n\"o\\de\n\u{1}é✓".to_owned(),
        product: "node|monitor",
        vendor: "v=\"x\"",
        version: "1.0-\t",
    }
}

/// The `flood` facts of `detect::fixture::group_flood()`, the same in ECS
/// (`node_monitor.flood`) and OCSF (`unmapped.node_monitor.flood`).
pub(crate) fn group_flood_facts() -> Value {
    json!({
        "scope": "group",
        "rate_limited": 12,
        "ringbuf_full": 8,
        "window_s": 10,
        "group_budget": 3880,
        "withheld": 3892,
        "new_connections": 4000,
        "events": 100,
        "distinct_sources": 3850,
        "spoofed_likely": true,
        "top_sources": [
            { "ip": "203.0.113.7", "withheld": 14, "rate_limited": 12 },
            { "ip": "2001:db8::9", "withheld": 2, "rate_limited": 0 }
        ],
        "top_ports": [
            { "port": 10250, "withheld": 3890 },
            { "port": 10251, "withheld": 2 }
        ],
        "window_start": "2024-05-01T11:59:50.123456Z",
        "window_end": "2024-05-01T12:00:00.123456Z",
        "answered": { "accepted": 5, "refused": 2 }
    })
}

/// A format's writer: appends one item's line to a buffer.
pub(crate) type Writer = fn(&OutputItem, &Observer, &mut Vec<u8>);

/// The line `write` renders for `item`.
pub(crate) fn line(write: Writer, item: &OutputItem, observer: &Observer) -> String {
    let mut out = Vec::new();
    write(item, observer, &mut out);
    String::from_utf8(out).unwrap()
}

/// The document `write` renders for `item` with the test observer, parsed back (one line).
pub(crate) fn doc(write: Writer, item: &OutputItem) -> Value {
    let line = line(write, item, &observer());
    assert!(!line.contains('\n'));
    serde_json::from_str(&line).unwrap()
}

/// Every kind of item (hostile strings included) renders to one line of valid JSON that is
/// byte for byte what serde writes for the typed document (`typed`, and so exactly
/// `to_value`), with the fields every document must have (`keys`).
pub(crate) fn every_variety(
    write: Writer,
    typed: impl Fn(&OutputItem, &Observer) -> String,
    to_value: fn(&OutputItem, &Observer) -> Value,
    keys: &[&str],
) {
    let items = variety();
    assert!(items.len() > 100, "{}", items.len());
    for obs in [observer(), hostile_observer()] {
        for item in &items {
            let line = line(write, item, &obs);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(line, typed(item, &obs), "{item:?}");
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(to_value(item, &obs), v, "{item:?}");
            for key in keys {
                assert!(v.get(key).is_some(), "{key} missing: {line}");
            }
        }
    }
}
