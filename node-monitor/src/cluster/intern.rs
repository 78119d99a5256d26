//! One copy of each name that many objects repeat (namespaces, node names, owner kinds and
//! names, label keys and values), of each set of labels (the pods of one ReplicaSet share
//! theirs) and of each owner reference (the pods of one ReplicaSet name the same one): a pod
//! keeps pointers to them, not copies. The tables are shared by every cache in
//! the process and pruned after each index build of what no object holds any more.
use std::{
    collections::HashSet,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use super::objects::{Labels, Owner};

static NAMES: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);
static LABELS: LazyLock<Mutex<HashSet<Labels>>> = LazyLock::new(Mutex::default);
static OWNERS: LazyLock<Mutex<HashSet<Owner>>> = LazyLock::new(Mutex::default);

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

/// The shared copy of a set of labels (each a pair of shared names, sorted by key).
pub fn labels(set: &[(Arc<str>, Arc<str>)]) -> Labels {
    let mut sets = LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(have) = sets.get(set) {
        return Arc::clone(have);
    }
    let new: Labels = Arc::from(set);
    sets.insert(Arc::clone(&new));
    new
}

/// The shared copy of an owner reference `(kind, name)`.
pub fn owner(kind: &str, owner_name: &str) -> Owner {
    let key = (name(kind), name(owner_name));
    let mut owners = OWNERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(have) = owners.get(&key) {
        return Arc::clone(have);
    }
    let new: Owner = Arc::new(key);
    owners.insert(Arc::clone(&new));
    new
}

/// Drops the owner references, label sets and names that only the tables hold (the
/// references and sets first: they hold names).
pub fn prune() {
    OWNERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|o| Arc::strong_count(o) > 1);
    LABELS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|l| Arc::strong_count(l) > 1);
    NAMES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|n| Arc::strong_count(n) > 1);
}

/// The heap bytes of the tables themselves (their slots; the names and label sets are
/// counted where they are held).
pub fn table_bytes() -> usize {
    let names = NAMES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .capacity();
    let labels = LABELS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .capacity();
    let owners = OWNERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .capacity();
    super::bytes::hash_table::<Arc<str>>(names)
        + super::bytes::hash_table::<Labels>(labels)
        + super::bytes::hash_table::<Owner>(owners)
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

    #[test]
    fn one_copy_of_each_label_set() {
        let pair = |k: &str, v: &str| (name(k), name(v));
        let a = labels(&[
            pair("intern-test-app", "web"),
            pair("intern-test-hash", "1"),
        ]);
        let b = labels(&[
            pair("intern-test-app", "web"),
            pair("intern-test-hash", "1"),
        ]);
        let c = labels(&[
            pair("intern-test-app", "web"),
            pair("intern-test-hash", "2"),
        ]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(
            a,
            c[..1]
                .iter()
                .cloned()
                .chain([pair("intern-test-hash", "1")])
                .collect()
        );
        drop((a, b, c));
        prune();
        assert!(
            LABELS
                .lock()
                .unwrap()
                .iter()
                .all(|l| l.iter().all(|(k, _)| !k.starts_with("intern-test")))
        );
        assert!(!NAMES.lock().unwrap().contains("intern-test-app"));
    }
}
