//! The stores the watches feed: per kind, the kept objects by key, and a list in progress.
//! A relist (the first list, a resync, or a watch that fell behind: 410 Gone) replaces a
//! store whole when it completes, so that an object deleted while nobody watched goes too.
use std::collections::HashMap;

use kube::runtime::watcher::Event;

use super::objects::{Keyed, NodeObj, OwnerObj, PodObj, ServiceObj, SliceObj};

/// The objects of one kind.
#[derive(Debug)]
pub struct Store<T: Keyed> {
    pub live: HashMap<T::Key, T>,
    /// Objects of a list in progress; they replace `live` at its end.
    pending: Option<HashMap<T::Key, T>>,
}

impl<T: Keyed> Default for Store<T> {
    fn default() -> Self {
        Store {
            live: HashMap::new(),
            pending: None,
        }
    }
}

impl<T: Keyed> Store<T> {
    /// The objects of a list in progress.
    pub fn pending(&self) -> Option<&HashMap<T::Key, T>> {
        self.pending.as_ref()
    }

    /// Applies one watch event. Returns true when `live` changed (a list completing always
    /// counts as a change).
    pub fn apply(&mut self, event: Event<T>) -> bool {
        match event {
            Event::Init => {
                self.pending = Some(HashMap::new());
                false
            }
            Event::InitApply(obj) => {
                self.pending
                    .get_or_insert_with(HashMap::new)
                    .insert(obj.key(), obj);
                false
            }
            Event::InitDone => {
                if let Some(objs) = self.pending.take() {
                    self.live = objs;
                }
                true
            }
            Event::Apply(obj) => {
                self.live.insert(obj.key(), obj);
                true
            }
            Event::Delete(obj) => self.live.remove(&obj.key()).is_some(),
        }
    }
}

/// Every kind the cache watches.
#[derive(Debug, Default)]
pub struct Stores {
    pub nodes: Store<NodeObj>,
    pub pods: Store<PodObj>,
    pub services: Store<ServiceObj>,
    pub slices: Store<SliceObj>,
    pub replicasets: Store<OwnerObj>,
    pub jobs: Store<OwnerObj>,
}
