//! The pods' host-side interfaces (`pod_interfaces`: CNI veths and bridges), watched beside the
//! uplinks: a compromised pod that reaches its own node's kubelet arrives on its veth, never on
//! the uplink. Always tc (ingress and egress) whatever `attach` says: XDP on a veth switches it
//! to NAPI mode, and in generic mode costs a copy per packet. Their addresses never join
//! `node-subnets` (a CNI bridge holds the pods' gateway address, and pods must not be allowed
//! on the kubelet by it). An interface that an uplink pattern also matches is an uplink.
use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::{config::AttachMode, datapath::Datapath, watch::IfaceWatcher};

/// The pods' interface watcher and what it attached.
pub(super) struct PodIfaces {
    watcher: IfaceWatcher,
    attached: BTreeSet<String>,
    /// Matches an uplink held or just gave back (see [`PodIfaces::release`]).
    released: BTreeSet<String>,
    /// The command line named the patterns (`--pod-iface`, `--no-pod-ifaces`): a reload's
    /// `pod_interfaces` does not apply.
    from_cli: bool,
}

impl PodIfaces {
    pub(super) fn new(patterns: Vec<String>, from_cli: bool) -> PodIfaces {
        PodIfaces {
            watcher: IfaceWatcher::patterns_only(patterns),
            attached: BTreeSet::new(),
            released: BTreeSet::new(),
            from_cli,
        }
    }

    /// A reload's `pod_interfaces`; the next [`PodIfaces::sync`] attaches and detaches.
    pub(super) fn set_patterns(&mut self, patterns: Vec<String>) {
        if !self.from_cli {
            self.watcher.set_patterns(patterns);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.attached.len()
    }

    /// Gives up `names` to the uplink watcher, which is about to attach them with its own hook.
    pub(super) fn release(&mut self, dp: &mut Datapath, names: &[String]) {
        for iface in names {
            if self.attached.remove(iface) {
                dp.detach_iface(iface);
                self.released.insert(iface.clone());
            }
        }
    }

    /// `names` are no longer uplinks: the next [`PodIfaces::sync`] takes back those it matches.
    pub(super) fn reclaim(&mut self, names: &[String]) {
        self.released.extend(names.iter().cloned());
    }

    /// Attaches to pods' interfaces that appeared (and to those an uplink gave back),
    /// detaches from those that went. `uplinks` (the uplink watcher's interfaces) are never
    /// attached here.
    pub(super) fn sync(&mut self, dp: &mut Datapath, uplinks: &BTreeSet<String>) {
        let changes = self.watcher.poll();
        for iface in &changes.removed {
            self.released.remove(iface);
            if self.attached.remove(iface) {
                dp.detach_iface(iface);
                info!(iface, "pod interface gone; detached and forgotten");
            }
        }
        let current: BTreeSet<String> = self.watcher.current().into_iter().collect();
        let back: Vec<String> = std::mem::take(&mut self.released)
            .into_iter()
            .filter(|i| current.contains(i))
            .collect();
        let mut new = 0usize;
        for iface in changes.added.into_iter().chain(back) {
            if uplinks.contains(&iface) || self.attached.contains(&iface) {
                continue;
            }
            match dp.attach(&iface, AttachMode::Tc) {
                Ok(_) => {
                    self.attached.insert(iface);
                    new += 1;
                }
                Err(e) => {
                    warn!(iface, error = %e, "cannot attach to a pod interface; will retry if it reappears");
                }
            }
        }
        if new > 0 {
            info!(
                new,
                watched = self.attached.len(),
                "pod interfaces attached (tc)"
            );
        }
    }
}
