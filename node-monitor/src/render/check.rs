//! Test support for the formats: the test observers, render a line, and check a JSON format's hand
//! writer against its typed serde document over the whole variety of items.
use serde_json::Value;

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
