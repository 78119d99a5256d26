//! One copy of each name that many objects repeat (namespaces, node names, owner kinds and
//! names, label keys and values): a pod keeps pointers to them, not copies. The table is
//! shared by every cache in the process and pruned after each index build of names that no
//! object holds any more.
use std::{
    collections::HashSet,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

static NAMES: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);

/// The shared copy of `text`.
pub fn name(text: &str) -> Arc<str> {
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(have) = names.get(text) {
        return Arc::clone(have);
    }
    let new: Arc<str> = Arc::from(text);
    names.insert(Arc::clone(&new));
    new
}

/// Drops the names that only the table holds.
pub fn prune() {
    NAMES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|n| Arc::strong_count(n) > 1);
}

/// The heap bytes of the table itself (its slots; the names are counted where they are
/// held).
pub fn table_bytes() -> usize {
    let names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    super::bytes::hash_table::<Arc<str>>(names.capacity())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_and_pruned_when_unused() {
        let a = name("intern-test-a");
        let b = name("intern-test-a");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        prune();
        let names = NAMES.lock().unwrap();
        assert!(!names.contains("intern-test-a"));
    }
}
