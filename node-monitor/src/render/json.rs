//! The JSON writer: appends JSON text to a byte buffer (fragments already in JSON form,
//! strings escaped exactly as `serde_json` escapes them, numbers with `itoa`, addresses), and
//! the serde helpers of the typed documents it is checked against.
use std::{fmt, net::IpAddr, time::SystemTime};

/// Appends JSON text to a buffer. The hand-written documents (ECS, OCSF) use it; their tests
/// check them byte for byte against the `serde` documents.
pub(crate) struct JsonOut<'a>(pub &'a mut Vec<u8>);

/// Whether `serde_json` would escape anything in `b` (control characters, `"` and `\`).
fn needs_json_escape(b: &[u8]) -> bool {
    // No early exit: the loop vectorizes, and the strings are short.
    b.iter().fold(0u8, |acc, &c| {
        acc | u8::from(c < 0x20) | u8::from(c == b'"') | u8::from(c == b'\\')
    }) != 0
}

impl JsonOut<'_> {
    /// A fragment that is already JSON (keys, punctuation, constant values).
    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Bytes that are already JSON (fragments rendered earlier).
    pub(crate) fn frag(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A JSON string.
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        if needs_json_escape(s.as_bytes()) {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.0, s);
        } else {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        }
        self
    }
    /// A JSON string holding what `value` displays, written in place and escaped only when
    /// it needs it.
    pub(crate) fn display(&mut self, value: impl fmt::Display) -> &mut Self {
        use std::io::Write as _;
        // Writing to a Vec fails only if `value` itself fails; the text stays as written.
        self.text(|out| {
            let _ = write!(out, "{value}");
        })
    }
    /// A JSON string of the text that `write` appends (UTF-8), escaped only if it needs it.
    pub(crate) fn text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.0.push(b'"');
        let start = self.0.len();
        write(self.0);
        if needs_json_escape(&self.0[start..]) {
            let text = self.0.split_off(start);
            self.0.pop();
            let text = String::from_utf8_lossy(&text);
            let _ = serde_json::to_writer(&mut *self.0, text.as_ref());
        } else {
            self.0.push(b'"');
        }
        self
    }
    /// A JSON number.
    pub(crate) fn num(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }
    /// A JSON string holding a number (schemas that want ids as strings).
    pub(crate) fn num_str(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0.push(b'"');
        self.num(n);
        self.0.push(b'"');
        self
    }
    /// An address as a JSON string (addresses need no escaping).
    pub(crate) fn ip(&mut self, ip: IpAddr) -> &mut Self {
        self.0.push(b'"');
        write_ip(self.0, ip);
        self.0.push(b'"');
        self
    }
    /// Any serializable value, as `serde_json` writes it (small, rare parts).
    pub(crate) fn serde(&mut self, value: &impl serde::Serialize) -> &mut Self {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.0, value);
        self
    }
}

/// Writes the members of a JSON object one at a time: `"key":` with commas between.
pub(crate) struct Members {
    first: bool,
}

impl Members {
    pub(crate) fn new() -> Members {
        Members { first: true }
    }
    pub(crate) fn key(&mut self, j: &mut JsonOut<'_>, k: &str) {
        j.raw(if std::mem::take(&mut self.first) {
            "\""
        } else {
            ",\""
        })
        .raw(k)
        .raw("\":");
    }
}

/// Appends an address as `Display` writes it: IPv4 without the formatting machinery.
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Serializes any `Display` value as a JSON string, written in place (no intermediate
/// `String`): numbers that a schema wants as strings, timestamps, messages.
pub(crate) struct Text<T>(pub T);

impl<T: fmt::Display> serde::Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// RFC 3339, UTC, microseconds: the same text as [`crate::record::rfc3339`], serialized in
/// place.
pub(crate) fn rfc3339_text(t: SystemTime) -> Text<humantime::Rfc3339Timestamp> {
    Text(humantime::format_rfc3339_micros(t))
}
