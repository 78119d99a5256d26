//! One task per watched kind: `kube::runtime::watcher` (list, then watch from the list's
//! resourceVersion with bookmarks; resume after a dropped connection; relist on 410 Gone),
//! our own backoff on errors, a full relist every `cluster.resync_s`, and the watch state
//! the metrics and the alerts report.
use std::{
    fmt::Debug,
    sync::{Arc, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt as _;
use kube::{
    Api,
    api::ListParams,
    runtime::watcher::{self, Event},
};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::{Shared, objects::Keyed, store::Change};

/// The kinds the cache watches, in the order metrics list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Pod,
    Service,
    EndpointSlice,
    ReplicaSet,
    Job,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::ReplicaSet,
        Kind::Job,
    ];

    /// The metrics label.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::EndpointSlice => "endpointslice",
            Kind::ReplicaSet => "replicaset",
            Kind::Job => "job",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Where a watch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchState {
    /// The first list has not completed.
    Starting,
    /// Listed, watching.
    Synced,
    /// The last request failed; retrying with backoff.
    Failing,
}

impl WatchState {
    pub const ALL: [WatchState; 3] = [
        WatchState::Starting,
        WatchState::Synced,
        WatchState::Failing,
    ];

    /// The metrics label.
    pub const fn name(self) -> &'static str {
        match self {
            WatchState::Starting => "starting",
            WatchState::Synced => "synced",
            WatchState::Failing => "failing",
        }
    }
}

/// The state of one kind's watch.
#[derive(Debug, Clone, Copy)]
pub struct KindStatus {
    pub state: WatchState,
    /// Completed a list at least once.
    pub synced_once: bool,
    /// When the last list completed.
    pub last_sync: Option<SystemTime>,
    /// Since when requests have been failing (cleared by the next success).
    pub failing_since: Option<Instant>,
    /// Requests that failed.
    pub errors: u64,
    /// Lists started (the first, resyncs, and relists after 410 Gone).
    pub lists: u64,
}

impl Default for KindStatus {
    fn default() -> Self {
        KindStatus {
            state: WatchState::Starting,
            synced_once: false,
            last_sync: None,
            failing_since: None,
            errors: 0,
            lists: 0,
        }
    }
}

/// Exponential backoff between failed requests: `min` doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// What the daemon uses: 500 ms doubling to 30 s (client-go's reflector waits 800 ms to 30 s).
    pub const DAEMON: Backoff = Backoff {
        min: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };
}

/// How one kind is watched: where, and how its objects are cut down and handed to the index
/// builder.
pub(super) struct KindWatch<K, T: Keyed> {
    pub kind: Kind,
    pub api: Api<K>,
    pub config: watcher::Config,
    pub convert: fn(&K) -> T,
    /// Which store the builder applies the event to.
    pub wrap: fn(Event<T>) -> Change,
}

impl<K, T> KindWatch<K, T>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Keyed + Send + 'static,
{
    /// Runs until the task is aborted.
    pub(super) async fn run(self, shared: Arc<Shared>, resync: Duration, backoff: Backoff) {
        loop {
            // One watcher per resync period: a new one starts with a full list.
            let deadline = tokio::time::Instant::now() + resync;
            let stream = watcher::watcher(self.api.clone(), self.config.clone());
            let mut stream = std::pin::pin!(stream);
            let mut delay = backoff.min;
            loop {
                let failing = shared.kind_status(self.kind).failing_since.is_some();
                let next = tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    next = stream.next() => next,
                    // While failing, a cheap list tells when the API is back, even if the
                    // resumed watch has no event to deliver.
                    () = tokio::time::sleep(delay), if failing => {
                        if self.api.list(&ListParams::default().limit(1)).await.is_ok() {
                            shared.update_status(self.kind, |s| {
                                s.failing_since = None;
                                if s.synced_once {
                                    s.state = WatchState::Synced;
                                }
                            });
                        }
                        continue;
                    }
                };
                match next {
                    None => break,
                    Some(Ok(event)) => {
                        delay = backoff.min;
                        self.apply(&shared, event);
                    }
                    Some(Err(e)) => {
                        let first = shared.kind_status(self.kind).failing_since.is_none();
                        shared.update_status(self.kind, |s| {
                            s.errors += 1;
                            s.state = WatchState::Failing;
                            s.failing_since.get_or_insert_with(Instant::now);
                        });
                        if first {
                            warn!(kind = self.kind.name(), error = %e, "cluster watch failed; retrying with backoff (identity from it is marked stale meanwhile)");
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(backoff.max);
                    }
                }
            }
        }
    }

    fn apply(&self, shared: &Shared, event: Event<K>) {
        let event = match event {
            Event::Init => Event::Init,
            Event::InitApply(o) => Event::InitApply((self.convert)(&o)),
            Event::InitDone => Event::InitDone,
            Event::Apply(o) => Event::Apply((self.convert)(&o)),
            Event::Delete(o) => Event::Delete((self.convert)(&o)),
        };
        let (init, done) = (
            matches!(event, Event::Init),
            matches!(event, Event::InitDone),
        );
        deliver(shared, self.kind, (self.wrap)(event), init, done);
    }
}

/// Hands one converted event to the index builder (the inbox's push: never a wait on a build
/// in progress), updates the kind's watch state, and wakes the builder.
pub(super) fn deliver(shared: &Shared, kind: Kind, change: Change, init: bool, done: bool) {
    let may_change = change.may_change();
    // A long list wakes the builder now and then too, so that its objects move into the
    // store's pending list instead of piling up in the inbox.
    let waiting = {
        let mut inbox = shared.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        inbox.push(change);
        inbox.len()
    };
    let was_synced = shared.kind_status(kind).synced_once;
    shared.update_status(kind, |s| {
        s.failing_since = None;
        if init {
            s.lists += 1;
        }
        if done {
            s.synced_once = true;
            s.last_sync = Some(SystemTime::now());
        }
        if s.synced_once {
            s.state = WatchState::Synced;
        } else if s.state == WatchState::Failing {
            s.state = WatchState::Starting;
        }
    });
    if done && !was_synced {
        info!(kind = kind.name(), "cluster watch synced");
    }
    if may_change || waiting >= INBOX_WAKE {
        shared.changed.notify_one();
    }
}

/// Events of a list in progress that wake the builder, so that a large list moves into the
/// stores as it arrives.
const INBOX_WAKE: usize = 4096;
