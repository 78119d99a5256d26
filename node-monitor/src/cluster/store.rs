//! The stores the index is built from: per kind, the kept objects by key, and a list in
//! progress. A relist (the first list, a resync, or a watch that fell behind: 410 Gone)
//! replaces a store whole when it completes, so that an object deleted while nobody watched
//! goes too.
//!
//! Only the index builder touches the stores: the watches hand it their converted events
//! ([`Change`]) through an inbox, which the builder drains into the stores before each build.
//! A watch event that arrives while an index is being built waits for nothing but the
//! inbox's push.
use std::collections::HashMap;

use kube::runtime::watcher::Event;

use super::objects::{Keyed, NodeObj, OwnerObj, PodObj, ServiceObj, SliceObj};

/// The objects of one kind, each in its own allocation (the table's slots stay small: a key
/// and a pointer, so that its empty slots cost little).
#[derive(Debug)]
pub struct Store<T: Keyed> {
    pub live: HashMap<T::Key, Box<T>>,
    /// Objects of a list in progress; they replace `live` at its end.
    pending: Option<HashMap<T::Key, Box<T>>>,
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
    pub fn pending(&self) -> Option<&HashMap<T::Key, Box<T>>> {
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
                    .insert(obj.key(), Box::new(obj));
                false
            }
            Event::InitDone => {
                if let Some(mut objs) = self.pending.take() {
                    objs.shrink_to_fit();
                    self.live = objs;
                }
                true
            }
            Event::Apply(obj) => {
                self.live.insert(obj.key(), Box::new(obj));
                true
            }
            Event::Delete(obj) => self.live.remove(&obj.key()).is_some(),
        }
    }
}

/// One converted watch event, of any kind: what a watch hands the index builder.
#[derive(Debug)]
pub enum Change {
    Node(Event<NodeObj>),
    Pod(Event<PodObj>),
    Service(Event<ServiceObj>),
    Slice(Event<SliceObj>),
    ReplicaSet(Event<OwnerObj>),
    Job(Event<OwnerObj>),
}

impl Change {
    /// Whether applying it may change the live objects (the events of a list in progress
    /// only fill that list).
    pub fn may_change(&self) -> bool {
        fn live<T>(e: &Event<T>) -> bool {
            !matches!(e, Event::Init | Event::InitApply(_))
        }
        match self {
            Change::Node(e) => live(e),
            Change::Pod(e) => live(e),
            Change::Service(e) => live(e),
            Change::Slice(e) => live(e),
            Change::ReplicaSet(e) | Change::Job(e) => live(e),
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

impl Stores {
    /// Applies one change. Returns true when a store's live objects changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Node(e) => self.nodes.apply(e),
            Change::Pod(e) => self.pods.apply(e),
            Change::Service(e) => self.services.apply(e),
            Change::Slice(e) => self.slices.apply(e),
            Change::ReplicaSet(e) => self.replicasets.apply(e),
            Change::Job(e) => self.jobs.apply(e),
        }
    }
}
