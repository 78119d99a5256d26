//! The CEF escapers: an escaped value reads back to the original (line breaks as `\n`/`\r`),
//! never holds a raw line break or an unescaped `=`; an escaped header field never holds a
//! raw `|` or line break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_monitor::render::cef::{escape_header, escape_value};

/// The reading a CEF parser does of an extension value.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(x) => out.push(x),
            None => out.push('\\'),
        }
    }
    out
}

fuzz_target!(|s: &str| {
    let v = escape_value(s);
    assert!(!v.contains('\n') && !v.contains('\r'));
    let mut escaped = false;
    for c in v.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '=') => panic!("unescaped = in {v:?}"),
            _ => {}
        }
    }
    // CEF values cannot carry a lone CR apart from LF, both read back as written.
    assert_eq!(unescape(&v), s);
    let h = escape_header(s);
    assert!(!h.contains('\n') && !h.contains('\r'));
});
