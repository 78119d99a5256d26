//! Cluster identity: who is behind a flow (pod, workload, node; a NodePort's Service), and
//! the allow sets that follow the cluster (`control-plane-nodes`, `nodes`, `pod-cidrs`,
//! `apiserver-endpoints`, `{pods: {namespace, selector}}`).
//!
//! One file per job:
//! - `connect`: credentials (`kube::Config::infer`: in-cluster, else `KUBECONFIG` /
//!   `~/.kube/config`), `cluster.enabled`, the node name;
//! - `watch`: a task per kind (Nodes, Pods, Services, the EndpointSlices of
//!   `default/kubernetes`, and metadata only of ReplicaSets and Jobs for the owner chain),
//!   with backoff, resync and the watch state;
//! - `objects` and `store`: what is kept of each object, and the stores the index is built
//!   from (the watches hand their events to the builder through an inbox);
//! - `intern`: one shared copy of the names many objects repeat;
//! - `index`: the snapshot lookups read, rebuilt after a change and published whole
//!   (`hash`: the hasher of its tables);
//! - `bytes`: the heap the stores and the index hold (`node_monitor_cluster_cache_bytes`);
//! - `lookup`: a record's identity from a snapshot;
//! - `sets`: the allow sets from a snapshot.
//!
//! Nothing here blocks the data path or the alert pipeline: a watch pushes its converted
//! event into an inbox (a short mutex; never a wait on a build in progress); the index
//! builder alone takes the stores, applies what the inbox holds and builds off the runtime;
//! a lookup clones the published snapshot's `Arc` under a read lock held for that clone, and
//! an address the snapshot does not hold is unresolved (or external), never waited for.
mod bytes;
mod connect;
mod hash;
mod index;
mod intern;
mod lookup;
mod objects;
mod sets;
mod store;
mod watch;

#[cfg(any(test, feature = "test-support"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    reason = "test support: a fake API server fails loudly on what a test did not expect"
)]
pub mod testing;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests;

use std::{
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub use connect::{ConnectError, connect, node_name};
pub use index::{KindCounts, SelectablePod, Snapshot};
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{Api, Client, core::PartialObjectMeta, runtime::watcher};
pub use lookup::View;
pub use objects::CONTROL_PLANE_LABEL;
pub use sets::{node_port_ranges, set_values};
use store::{Change, Stores};
use tokio::{sync::Notify, task::JoinHandle};
use watch::KindWatch;
pub use watch::{Backoff, Kind, KindStatus, WatchState};

use crate::{config::ClusterSettings, record::CacheState};

/// How long the index builder waits after a change for more changes, so that a burst (a
/// list, a rollout) makes one snapshot, not thousands.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// What the watch tasks, the index builder and the handle share.
struct Shared {
    /// Converted watch events not yet applied to the stores, oldest first.
    inbox: Mutex<Vec<Change>>,
    /// Taken only by the index builder (for the whole of a build).
    stores: Mutex<Stores>,
    snapshot: RwLock<Arc<Snapshot>>,
    status: Mutex<[KindStatus; Kind::ALL.len()]>,
    /// Signalled by a watch when a store changed.
    changed: Notify,
    /// Bumped each time a snapshot is published.
    generation: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            inbox: Mutex::new(Vec::new()),
            stores: Mutex::new(Stores::default()),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            status: Mutex::new(Default::default()),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Applies the inbox to the stores and builds a snapshot of them, unless nothing
    /// changed since the published one. `mid_build` runs while the stores are held for the
    /// build (a test's window into a build in progress).
    fn rebuild(&self, synced: bool, mid_build: impl FnOnce()) -> Option<Snapshot> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        let changes =
            std::mem::take(&mut *self.inbox.lock().unwrap_or_else(PoisonError::into_inner));
        let mut changed = false;
        for c in changes {
            changed |= stores.apply(c);
        }
        let published_synced = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .synced;
        if !changed && synced == published_synced {
            return None;
        }
        mid_build();
        let snapshot = Snapshot::build(&stores, synced);
        drop(stores);
        intern::prune();
        Some(snapshot)
    }

    fn kind_status(&self, kind: Kind) -> KindStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()]
    }

    fn update_status(&self, kind: Kind, f: impl FnOnce(&mut KindStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()]);
    }
}

/// The cluster cache: watch tasks, the index builder, and the snapshot they publish. The
/// tasks stop when this is dropped.
pub struct Cluster {
    shared: Arc<Shared>,
    node: Option<Arc<str>>,
    stale_after: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    /// Stops the watches and waits until their tasks are gone, so that nothing of theirs
    /// (a watch stream's warning as its connection closes) logs after this returns.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The state of the cache as a whole, with each kind's, for the metrics.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub kinds: [(Kind, KindStatus); Kind::ALL.len()],
    pub counts: KindCounts,
    /// The heap the stores and the published index held when it was built.
    pub cache_bytes: usize,
    pub cache: CacheState,
    /// Snapshots published so far.
    pub generation: u64,
}

impl Cluster {
    /// Starts the watches on `client` (on the tokio runtime of the caller). `node` is this
    /// node's name, for the destination of every flow.
    pub fn start(
        client: &Client,
        settings: &ClusterSettings,
        node: Option<String>,
        backoff: Backoff,
    ) -> Cluster {
        let shared = Arc::new(Shared::new());
        let resync = settings.resync;
        let c = client.clone();
        let wc = watcher::Config::default;
        let tasks = vec![
            tokio::spawn(
                KindWatch {
                    kind: Kind::Node,
                    api: Api::<Node>::all(c.clone()),
                    config: wc(),
                    convert: |o| o.into(),
                    wrap: Change::Node,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(
                KindWatch {
                    kind: Kind::Pod,
                    api: Api::<Pod>::all(c.clone()),
                    config: wc(),
                    convert: |o| o.into(),
                    wrap: Change::Pod,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(
                KindWatch {
                    kind: Kind::Service,
                    api: Api::<Service>::all(c.clone()),
                    config: wc(),
                    convert: |o| o.into(),
                    wrap: Change::Service,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(
                KindWatch {
                    kind: Kind::EndpointSlice,
                    api: Api::<EndpointSlice>::namespaced(c.clone(), "default"),
                    config: wc().labels("kubernetes.io/service-name=kubernetes"),
                    convert: |o| o.into(),
                    wrap: Change::Slice,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(
                KindWatch {
                    kind: Kind::ReplicaSet,
                    api: Api::<PartialObjectMeta<ReplicaSet>>::all(c.clone()),
                    config: wc(),
                    convert: |o| o.into(),
                    wrap: Change::ReplicaSet,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(
                KindWatch {
                    kind: Kind::Job,
                    api: Api::<PartialObjectMeta<Job>>::all(c),
                    config: wc(),
                    convert: |o| o.into(),
                    wrap: Change::Job,
                }
                .run(Arc::clone(&shared), resync, backoff),
            ),
            tokio::spawn(build_index(Arc::clone(&shared))),
        ];
        Cluster {
            shared,
            node: node.map(Arc::from),
            stale_after: settings.stale_after,
            tasks,
        }
    }

    /// The published snapshot, with the cache's state now: what lookups read. Cheap (an
    /// `Arc` clone under a read lock, and one short mutex for the watch states); take one
    /// per batch of records.
    pub fn view(&self) -> View {
        let snapshot = self.snapshot();
        let cache = self.cache_state(&snapshot);
        View::new(snapshot, cache, self.node.clone())
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Snapshots published so far: a change tells that the allow sets may have changed.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// This node's name.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    fn cache_state(&self, snapshot: &Snapshot) -> CacheState {
        let status = *self
            .shared
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache_state(&status, snapshot, self.stale_after)
    }

    /// Every kind's watch state, the objects held, and the cache's state.
    pub fn status(&self) -> ClusterStatus {
        let status = *self
            .shared
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.snapshot();
        ClusterStatus {
            kinds: std::array::from_fn(|i| (Kind::ALL[i], status[i])),
            counts: snapshot.counts,
            cache_bytes: snapshot.cache_bytes,
            cache: cache_state(&status, &snapshot, self.stale_after),
            generation: self.generation(),
        }
    }
}

/// `synced` is the published snapshot's (the watches may have listed everything a moment
/// before the index shows it); `age` the longest-failing watch's.
fn cache_state(status: &[KindStatus], snapshot: &Snapshot, stale_after: Duration) -> CacheState {
    let now = Instant::now();
    let age = status
        .iter()
        .filter_map(|s| s.failing_since)
        .map(|t| now.saturating_duration_since(t))
        .max()
        .unwrap_or_default();
    CacheState {
        synced: snapshot.synced,
        age,
        stale: age > stale_after,
    }
}

/// Rebuilds and publishes the snapshot after each change (debounced).
async fn build_index(shared: Arc<Shared>) {
    loop {
        shared.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        // The watch states before the inbox: a kind marked listed has pushed its whole list.
        let synced = shared
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(|s| s.synced_once);
        // Off the runtime: with a large cluster a build takes a good part of a second, and
        // the daemon's alert pipeline runs on this (single-threaded) runtime. The watches
        // keep pushing into the inbox meanwhile; the next round applies what they pushed.
        let build = Arc::clone(&shared);
        let snapshot = match tokio::task::spawn_blocking(move || build.rebuild(synced, || {})).await
        {
            Ok(Some(snapshot)) => snapshot,
            // Nothing changed: keep the published one.
            Ok(None) => continue,
            // The build panicked (a bug) or the runtime is shutting down: keep the last one.
            Err(_) => continue,
        };
        *shared
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        shared.generation.fetch_add(1, Ordering::AcqRel);
    }
}
