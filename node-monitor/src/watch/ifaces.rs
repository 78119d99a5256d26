//! The interface watcher: attach to matching interfaces as they appear, forget those that go.
//!
//! [`IfaceWatcher`] resolves the configured names and globs against the interfaces that exist
//! now (`if_nameindex`). The daemon calls [`IfaceWatcher::poll`] every [`IFACE_POLL_PERIOD`]
//! from its tick. A netlink subscription would react faster, but a 500 ms poll of
//! `if_nameindex` is one cheap syscall, needs no socket or parser, and attaches a new
//! interface well within the 2 s the daemon promises (at most one period plus the attach).
use std::{collections::BTreeMap, time::Duration};

use tracing::warn;

use crate::config::DEFAULT_ROUTE;

/// How often the daemon should call [`IfaceWatcher::poll`]: a new interface is then seen
/// within 500 ms, and attached well within 2 s.
pub const IFACE_POLL_PERIOD: Duration = Duration::from_millis(500);

/// What changed since the previous [`IfaceWatcher::poll`], names sorted. An interface that
/// was deleted and created again under the same name between two polls (a new ifindex) is
/// in both lists: detach from the old one, attach to the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl IfaceChanges {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Where the watcher reads the system state from: the real one, or a test double.
trait IfaceSource: Send {
    /// Every interface that exists now: `(name, ifindex)`.
    fn interfaces(&mut self) -> Vec<(String, u32)>;
    /// The interfaces that carry a default route.
    fn default_route(&mut self) -> Vec<String>;
}

struct SystemIfaces;

impl IfaceSource for SystemIfaces {
    fn interfaces(&mut self) -> Vec<(String, u32)> {
        match nix::net::if_::if_nameindex() {
            Ok(list) => list
                .iter()
                .map(|i| (i.name().to_string_lossy().into_owned(), i.index()))
                .collect(),
            Err(e) => {
                // Transient (ENOMEM, ENOBUFS): report no change rather than "all gone".
                warn!(error = %e, "cannot list the network interfaces");
                Vec::new()
            }
        }
    }

    fn default_route(&mut self) -> Vec<String> {
        crate::netif::default_route_ifaces().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the routing table");
            Vec::new()
        })
    }
}

/// Interface discovery; see the module documentation. Never fails: an interface that
/// disappears is reported in [`IfaceChanges::removed`], nothing more.
pub struct IfaceWatcher {
    patterns: Vec<String>,
    /// What empty `patterns` mean: the default-route interfaces (the uplink watcher), or none
    /// (the pods' interfaces, `pod_interfaces: []`).
    empty_means_default_route: bool,
    /// The matches of the previous poll: name → ifindex.
    current: BTreeMap<String, u32>,
    source: Box<dyn IfaceSource>,
}

impl IfaceWatcher {
    /// Watches for `patterns` (names or globs, see [`matches`]); empty means the interfaces
    /// that carry a default route. Nothing is read until the first [`IfaceWatcher::poll`].
    #[must_use]
    pub fn new(patterns: Vec<String>) -> IfaceWatcher {
        Self::with_source(patterns, Box::new(SystemIfaces))
    }

    /// Watches for `patterns` only: empty means no interface (the pods' interfaces).
    #[must_use]
    pub fn patterns_only(patterns: Vec<String>) -> IfaceWatcher {
        IfaceWatcher {
            empty_means_default_route: false,
            ..Self::new(patterns)
        }
    }

    fn with_source(patterns: Vec<String>, source: Box<dyn IfaceSource>) -> IfaceWatcher {
        IfaceWatcher {
            patterns,
            empty_means_default_route: true,
            current: BTreeMap::new(),
            source,
        }
    }

    /// New patterns (on a config reload); the next poll reports the difference.
    pub fn set_patterns(&mut self, patterns: Vec<String>) {
        self.patterns = patterns;
    }

    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Reads the interfaces once and reports what changed since the previous poll (the first
    /// poll reports every current match as added).
    ///
    /// With explicit patterns, an interface that was lost while the source listing failed
    /// transiently would show as removed: the listing only fails on memory exhaustion, and
    /// the next poll adds it back.
    pub fn poll(&mut self) -> IfaceChanges {
        let existing = self.source.interfaces();
        // The default-route interfaces: for an empty list, or beside the others when the list
        // names them (`default-route`). Only the uplink watcher reads them.
        let by_route = self.empty_means_default_route
            && (self.patterns.is_empty() || self.patterns.iter().any(|p| p == DEFAULT_ROUTE));
        let routed = if by_route {
            self.source.default_route()
        } else {
            Vec::new()
        };
        let next: BTreeMap<String, u32> = existing
            .into_iter()
            .filter(|(name, _)| {
                routed.contains(name)
                    || self
                        .patterns
                        .iter()
                        .any(|p| p != DEFAULT_ROUTE && matches(p, name))
            })
            .collect();
        let mut changes = IfaceChanges::default();
        for (name, index) in &self.current {
            if next.get(name) != Some(index) {
                changes.removed.push(name.clone());
            }
        }
        for (name, index) in &next {
            if self.current.get(name) != Some(index) {
                changes.added.push(name.clone());
            }
        }
        self.current = next;
        changes
    }

    /// The matches of the last poll, sorted.
    #[must_use]
    pub fn current(&self) -> Vec<String> {
        self.current.keys().cloned().collect()
    }
}

/// Whether interface `name` matches `pattern`: equal, or a glob match (`*`, `?`, `[...]`,
/// `[!...]`). A malformed glob (rejected by config validation, but the command line may
/// pass one) matches only its exact text.
#[must_use]
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    if !crate::config::is_glob(pattern) {
        return false;
    }
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        thread,
    };

    use super::*;

    // --- interfaces -----------------------------------------------------------------------

    #[test]
    fn glob_matching() {
        let yes = [
            ("eth0", "eth0"),
            ("eth*", "eth0"),
            ("eth*", "eth"),
            ("eth*", "eth10"),
            ("en?0s*", "enp0s3"),
            ("en??s*", "enp0s3"),
            ("ens?", "ens5"),
            ("en[op]*", "enp0s3"),
            ("en[op]*", "eno1"),
            ("[!l]*", "eth0"),
            ("*", "lo"),
            ("bond0.10[0-9]", "bond0.105"),
            ("eth[", "eth["),
        ];
        let no = [
            ("eth0", "eth1"),
            ("eth0", "eth00"),
            ("eth*", "veth0"),
            ("ens?", "ens10"),
            ("en[op]*", "ens5"),
            ("[!l]*", "lo"),
            ("eth[", "eth0"),
            ("ETH*", "eth0"),
        ];
        for (p, n) in yes {
            assert!(matches(p, n), "{p} should match {n}");
        }
        for (p, n) in no {
            assert!(!matches(p, n), "{p} should not match {n}");
        }
    }

    /// A scripted system: the interfaces and default-route set the next poll sees.
    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<FakeState>>);

    /// (every interface with its index, the default-route interfaces)
    type FakeState = (Vec<(String, u32)>, Vec<String>);

    impl Fake {
        fn set(&self, ifaces: &[(&str, u32)], default_route: &[&str]) {
            let mut s = self.0.lock().unwrap();
            s.0 = ifaces.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect();
            s.1 = default_route.iter().map(|n| (*n).to_owned()).collect();
        }
    }

    impl IfaceSource for Fake {
        fn interfaces(&mut self) -> Vec<(String, u32)> {
            self.0.lock().unwrap().0.clone()
        }
        fn default_route(&mut self) -> Vec<String> {
            self.0.lock().unwrap().1.clone()
        }
    }

    fn changes(added: &[&str], removed: &[&str]) -> IfaceChanges {
        IfaceChanges {
            added: added.iter().map(|s| (*s).to_owned()).collect(),
            removed: removed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn iface_watcher_reports_additions_removals_and_recreations() {
        let fake = Fake::default();
        let mut w =
            IfaceWatcher::with_source(vec!["eth*".into(), "ens5".into()], Box::new(fake.clone()));
        fake.set(
            &[("lo", 1), ("eth0", 2), ("ens5", 3), ("ens6", 4)],
            &["ens6"],
        );
        assert_eq!(w.poll(), changes(&["ens5", "eth0"], &[]));
        assert_eq!(w.current(), ["ens5", "eth0"]);
        assert!(w.poll().is_empty());

        fake.set(&[("lo", 1), ("eth0", 2), ("ens5", 3), ("eth1", 7)], &[]);
        assert_eq!(w.poll(), changes(&["eth1"], &[]));
        // Gone: reported once, no error.
        fake.set(&[("lo", 1), ("eth1", 7)], &[]);
        assert_eq!(w.poll(), changes(&[], &["ens5", "eth0"]));
        assert_eq!(w.current(), ["eth1"]);
        // Deleted and created again between two polls: a new index, both lists.
        fake.set(&[("lo", 1), ("eth1", 8)], &[]);
        assert_eq!(w.poll(), changes(&["eth1"], &["eth1"]));

        // New patterns take effect at the next poll.
        w.set_patterns(vec!["lo".into()]);
        assert_eq!(w.patterns(), ["lo"]);
        assert_eq!(w.poll(), changes(&["lo"], &["eth1"]));
    }

    #[test]
    fn iface_watcher_without_patterns_follows_the_default_route() {
        let fake = Fake::default();
        let mut w = IfaceWatcher::with_source(vec![], Box::new(fake.clone()));
        fake.set(&[("lo", 1), ("eth0", 2), ("eth1", 3)], &["eth0"]);
        assert_eq!(w.poll(), changes(&["eth0"], &[]));
        // The default route moves to eth1; a route on an interface that does not exist is
        // ignored.
        fake.set(&[("lo", 1), ("eth0", 2), ("eth1", 3)], &["eth1", "ghost0"]);
        assert_eq!(w.poll(), changes(&["eth1"], &["eth0"]));
        assert_eq!(w.current(), ["eth1"]);
    }

    #[test]
    fn default_route_in_the_list_adds_the_uplinks_beside_the_others() {
        let fake = Fake::default();
        let mut w = IfaceWatcher::with_source(
            vec![DEFAULT_ROUTE.into(), "vxlan.calico".into()],
            Box::new(fake.clone()),
        );
        fake.set(
            &[("lo", 1), ("eth0", 2), ("eth1", 3), ("vxlan.calico", 4)],
            &["eth0"],
        );
        assert_eq!(w.poll(), changes(&["eth0", "vxlan.calico"], &[]));
        // The route moves; the named interface stays.
        fake.set(
            &[("lo", 1), ("eth0", 2), ("eth1", 3), ("vxlan.calico", 4)],
            &["eth1"],
        );
        assert_eq!(w.poll(), changes(&["eth1"], &["eth0"]));
        // Without the entry, the list alone: no uplink.
        w.set_patterns(vec!["vxlan.calico".into()]);
        assert_eq!(w.poll(), changes(&[], &["eth1"]));
        // The keyword is no name: an interface so called is matched by a glob only.
        fake.set(&[("lo", 1), ("default-route", 5)], &[]);
        w.set_patterns(vec![DEFAULT_ROUTE.into()]);
        assert_eq!(w.poll(), changes(&[], &["vxlan.calico"]));
        w.set_patterns(vec!["default-rout[e]".into()]);
        assert_eq!(w.poll(), changes(&["default-route"], &[]));
        // The pods' watcher never reads the route.
        let mut pods = IfaceWatcher {
            empty_means_default_route: false,
            ..IfaceWatcher::with_source(vec![DEFAULT_ROUTE.into()], Box::new(fake.clone()))
        };
        fake.set(&[("lo", 1), ("eth0", 2)], &["eth0"]);
        assert!(pods.poll().is_empty());
    }

    #[test]
    fn pod_iface_watcher_without_patterns_watches_nothing() {
        let fake = Fake::default();
        let mut w = IfaceWatcher {
            empty_means_default_route: false,
            ..IfaceWatcher::with_source(vec![], Box::new(fake.clone()))
        };
        fake.set(&[("lo", 1), ("eth0", 2), ("cali1", 3)], &["eth0"]);
        assert!(w.poll().is_empty());
        w.set_patterns(vec!["cali*".into(), "lxc*".into()]);
        assert_eq!(w.poll(), changes(&["cali1"], &[]));
        fake.set(&[("lo", 1), ("eth0", 2), ("lxc9", 4)], &["eth0"]);
        assert_eq!(w.poll(), changes(&["lxc9"], &["cali1"]));
        w.set_patterns(vec![]);
        assert_eq!(w.poll(), changes(&[], &["lxc9"]));
    }

    #[test]
    fn iface_watcher_reads_this_namespace() {
        // The real source: `lo` exists in every network namespace.
        let mut w = IfaceWatcher::new(vec!["lo".into()]);
        assert_eq!(w.poll(), changes(&["lo"], &[]));
        assert!(w.poll().is_empty());
    }

    // --- interfaces in a network namespace of our own --------------------------------------

    /// A named network namespace (`ip netns add`), deleted on drop, panics included.
    struct NetNs(String);

    impl NetNs {
        /// `None` when namespaces cannot be made here (not root, no `ip`): the test skips.
        fn new() -> Option<NetNs> {
            let name = format!(
                "nm-watch-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            );
            let ok = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(NetNs(name))
        }

        /// Runs `ip -n NS args...` (only ever inside this namespace).
        fn ip(&self, args: &[&str]) {
            let status = std::process::Command::new("ip")
                .arg("-n")
                .arg(&self.0)
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip -n {} {args:?} failed", self.0);
        }

        /// Adds an interface with no traffic: a `dummy` one, or a bridge where the kernel
        /// has no dummy driver (the name is what the watcher looks at).
        fn add_link(&self, name: &str) {
            let dummy = std::process::Command::new("ip")
                .args(["-n", &self.0, "link", "add", name, "type", "dummy"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !dummy {
                self.ip(&["link", "add", name, "type", "bridge"]);
            }
        }
    }

    impl Drop for NetNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    #[test]
    fn iface_watcher_in_a_network_namespace() {
        let Some(ns) = NetNs::new() else {
            eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
            return;
        };
        let ns = Arc::new(ns);
        let ns2 = Arc::clone(&ns);
        // setns() changes the calling thread only: a thread of our own enters the namespace,
        // and ends with the test, so no other thread ever runs in it.
        let result = thread::spawn(move || {
            let ns = ns2;
            let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();

            let mut w = IfaceWatcher::new(vec!["dummy*".into()]);
            assert!(w.poll().is_empty(), "a fresh namespace has only lo");

            ns.add_link("dummy0");
            assert_eq!(w.poll(), changes(&["dummy0"], &[]));
            ns.add_link("dummy1");
            ns.add_link("other0");
            assert_eq!(w.poll(), changes(&["dummy1"], &[]));
            assert_eq!(w.current(), ["dummy0", "dummy1"]);

            ns.ip(&["link", "del", "dummy0"]);
            assert_eq!(w.poll(), changes(&[], &["dummy0"]));
            assert!(w.poll().is_empty());

            // Deleted and re-created between two polls: a new ifindex, reported both ways.
            ns.ip(&["link", "del", "dummy1"]);
            ns.add_link("dummy1");
            assert_eq!(w.poll(), changes(&["dummy1"], &["dummy1"]));
            assert_eq!(w.current(), ["dummy1"]);
        })
        .join();
        drop(ns);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}
