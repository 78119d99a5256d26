//! Per-thread caches of JSON fragments: the parts of a line that depend only on the observer
//! or on the rule, rendered once and then copied.
use std::{cell::RefCell, thread::LocalKey};

use super::{json::JsonOut, observer::Observer};
use crate::detect::Rule;

/// A format's per-thread cache of the line parts that depend only on the observer.
pub(crate) type FragmentCache<F> = RefCell<Option<(Observer, F)>>;

/// Runs `f` on this thread's fragments for `observer`, made by `make` when the thread has
/// none yet or made them for another observer.
pub(crate) fn with_fragments<F, R>(
    cache: &'static LocalKey<FragmentCache<F>>,
    observer: &Observer,
    make: impl FnOnce(&Observer) -> F,
    f: impl FnOnce(&mut F) -> R,
) -> R {
    cache.with_borrow_mut(|cached| {
        let frags = match cached {
            Some((o, frags)) if o == observer => frags,
            _ => &mut cached.insert((observer.clone(), make(observer))).1,
        };
        f(frags)
    })
}

/// JSON fragments rendered once per rule (the catalog has about ten rules; a format keeps
/// the parts of a line that depend only on the rule here).
#[derive(Default)]
pub(crate) struct RuleFragments(Vec<(Rule, Vec<u8>)>);

impl RuleFragments {
    /// Rules kept at most; past that the cache starts over.
    const MAX: usize = 64;

    /// The fragment of `rule`, rendered by `render` the first time.
    pub(crate) fn get(&mut self, rule: Rule, render: impl FnOnce(&mut JsonOut<'_>)) -> &[u8] {
        let i = match self.0.iter().position(|(r, _)| *r == rule) {
            Some(i) => i,
            None => {
                if self.0.len() >= Self::MAX {
                    self.0.clear();
                }
                let mut frag = Vec::new();
                render(&mut JsonOut(&mut frag));
                self.0.push((rule, frag));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}
