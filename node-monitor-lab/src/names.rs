//! Unique names for everything the lab makes (namespaces, bpffs directories):
//! `nmlab-<pid>-<counter>-<role>`, so that parallel tests and processes never collide
//! and `cargo xtask lab down` can find leftovers by prefix.

use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace and bpffs directory made here starts with this prefix.
pub const NAME_PREFIX: &str = "nmlab-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name `nmlab-<pid>-<counter>-<role>`.
pub(crate) fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{n}-{role}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let a = unique_name("node");
        let b = unique_name("node");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{NAME_PREFIX}{}-", std::process::id())));
        assert!(a.ends_with("-node"));
    }
}
