//! Watchers the daemon drives: the config file (reload when its content changes) and the
//! network interfaces (attach to matching ones as they appear, forget those that go).
//!
//! [`ConfigWatcher`] watches the config file's *parent directory* with inotify (`notify`), so
//! that it sees every way a file gets replaced: an in-place write, `mv new config.yaml`, and
//! the Kubernetes ConfigMap update, where `config.yaml -> ..data/config.yaml` stays put and
//! `..data` (a symlink to a timestamped directory) is atomically renamed over. On any event it
//! waits for a quiet spell ([`DEBOUNCE`]), re-reads the file through its symlinks and compares
//! the SHA-256 of the bytes with the last one: it notifies only when the content really
//! changed. It also re-checks every [`RESCAN`], in case an event was lost.
//!
//! [`IfaceWatcher`] resolves the configured names and globs against the interfaces that exist
//! now (`if_nameindex`). The daemon calls [`IfaceWatcher::poll`] every [`IFACE_POLL_PERIOD`]
//! from its tick. A netlink subscription would react faster, but a 500 ms poll of
//! `if_nameindex` is one cheap syscall, needs no socket or parser, and attaches a new
//! interface well within the 2 s the daemon promises (at most one period plus the attach).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Quiet time after the last file system event before the file is re-read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a burst of events can postpone the re-read.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);
/// The file is also re-read this often without any event (a safety net for lost events).
pub const RESCAN: Duration = Duration::from_secs(10);
/// How often the daemon should call [`IfaceWatcher::poll`]: a new interface is then seen
/// within 500 ms, and attached well within 2 s.
pub const IFACE_POLL_PERIOD: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Config file
// ---------------------------------------------------------------------------------------------

/// Watches a config file for content changes; see the module documentation.
///
/// Dropping it stops the watch: the worker thread ends within [`RESCAN`] at the latest
/// (at once in practice, when the inotify watcher goes).
pub struct ConfigWatcher {
    /// Kept alive for the watch; the worker holds only a weak reference.
    _watcher: Arc<Mutex<RecommendedWatcher>>,
    path: PathBuf,
}

impl ConfigWatcher {
    /// Starts watching `path`. The receiver gets one `()` per real change of the file's
    /// content, relative to its content when `new` was called (so create the watcher
    /// *before* loading the config, or load it again after the first notification). Changes
    /// that come faster than the daemon reads are folded into one pending `()`.
    ///
    /// # Errors
    ///
    /// When inotify cannot be set up or the parent directory cannot be watched (it does not
    /// exist, or the inotify watch limit is reached).
    pub fn new(path: &Path) -> io::Result<(ConfigWatcher, mpsc::Receiver<()>)> {
        let path = absolute(path)?;
        let dir = parent_dir(&path);
        let (events_tx, events_rx) = std_mpsc::channel::<notify::Result<Event>>();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The worker may be gone (receiver dropped): nothing left to tell.
            let _ = events_tx.send(event);
        })
        .map_err(notify_to_io)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(notify_to_io)?;
        let watcher = Arc::new(Mutex::new(watcher));
        let (tx, rx) = mpsc::channel(1);
        let mut worker = Worker {
            path: path.clone(),
            dir,
            target_dir: None,
            last: content_digest(&path),
            watcher: Arc::downgrade(&watcher),
            tx,
        };
        worker.follow_target();
        thread::Builder::new()
            .name("config-watch".to_owned())
            .spawn(move || worker.run(&events_rx))?;
        Ok((
            ConfigWatcher {
                _watcher: watcher,
                path,
            },
            rx,
        ))
    }

    /// The watched file (made absolute).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct Worker {
    path: PathBuf,
    /// The parent directory of `path`, always watched.
    dir: PathBuf,
    /// The directory the file resolves to through its symlinks, when that is another
    /// directory: watched too, so that writes to the target are seen.
    target_dir: Option<PathBuf>,
    /// SHA-256 of the content last seen; `None` while the file cannot be read.
    last: Option<[u8; 32]>,
    watcher: Weak<Mutex<RecommendedWatcher>>,
    tx: mpsc::Sender<()>,
}

impl Worker {
    fn run(&mut self, events: &std_mpsc::Receiver<notify::Result<Event>>) {
        loop {
            match events.recv_timeout(RESCAN) {
                Ok(event) => {
                    if !relevant(&event) {
                        continue;
                    }
                    if !self.settle(events) {
                        return;
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    // Safety net; also ends the thread once the watcher is gone.
                    if self.watcher.strong_count() == 0 {
                        return;
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if !self.check() {
                return;
            }
        }
    }

    /// Waits until no relevant event came for [`DEBOUNCE`], at most [`MAX_DEBOUNCE`] in all.
    /// `false` when the watcher is gone.
    fn settle(&self, events: &std_mpsc::Receiver<notify::Result<Event>>) -> bool {
        let deadline = Instant::now() + MAX_DEBOUNCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match events.recv_timeout(DEBOUNCE.min(left)) {
                Ok(_) => {}
                Err(std_mpsc::RecvTimeoutError::Timeout) => return true,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Re-reads the file; notifies when its content changed. `false` when nobody listens.
    fn check(&mut self) -> bool {
        self.follow_target();
        let Some(digest) = content_digest(&self.path) else {
            // Missing for a moment (between an unlink and a rename) or unreadable: keep the
            // last digest, so that the same content coming back is not a change.
            debug!(path = %self.path.display(), "config file unreadable for now");
            return !self.tx.is_closed();
        };
        if self.last == Some(digest) {
            return !self.tx.is_closed();
        }
        self.last = Some(digest);
        debug!(path = %self.path.display(), "config file content changed");
        match self.tx.try_send(()) {
            // Full: a notification is already pending, which covers this change too.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => true,
            Err(mpsc::error::TrySendError::Closed(())) => false,
        }
    }

    /// Watches the directory the file resolves to, when that is not its parent (a symlink
    /// into another directory), and moves that watch when the target moves.
    fn follow_target(&mut self) {
        let target = std::fs::canonicalize(&self.path)
            .ok()
            .map(|p| parent_dir(&p))
            .filter(|d| {
                *d != self.dir && std::fs::canonicalize(&self.dir).ok().as_ref() != Some(d)
            });
        if target == self.target_dir {
            return;
        }
        let Some(watcher) = self.watcher.upgrade() else {
            return;
        };
        let Ok(mut watcher) = watcher.lock() else {
            return;
        };
        if let Some(old) = self.target_dir.take() {
            // It may be gone already (a replaced ConfigMap directory): nothing to undo then.
            let _ = watcher.unwatch(&old);
        }
        if let Some(new) = target {
            match watcher.watch(&new, RecursiveMode::NonRecursive) {
                Ok(()) => self.target_dir = Some(new),
                Err(e) => {
                    warn!(dir = %new.display(), error = %e, "cannot watch the config file's target directory")
                }
            }
        }
    }
}

/// Events that may mean a change: everything but opens, reads and closes without a write
/// (our own reads would otherwise wake us up again).
fn relevant(event: &notify::Result<Event>) -> bool {
    match event {
        Ok(e) => match e.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(e) => {
            warn!(error = %e, "config watch error");
            true
        }
    }
}

/// SHA-256 of the file's bytes (through symlinks), `None` when it cannot be read.
fn content_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(&bytes).into())
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

fn notify_to_io(e: notify::Error) -> io::Error {
    match e.kind {
        notify::ErrorKind::Io(io) => io,
        notify::ErrorKind::PathNotFound => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        notify::ErrorKind::MaxFilesWatch => io::Error::other(format!(
            "{e}: raise fs.inotify.max_user_watches / max_user_instances"
        )),
        _ => io::Error::other(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Interfaces
// ---------------------------------------------------------------------------------------------

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

    fn with_source(patterns: Vec<String>, source: Box<dyn IfaceSource>) -> IfaceWatcher {
        IfaceWatcher {
            patterns,
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
        let next: BTreeMap<String, u32> = if self.patterns.is_empty() {
            let wanted = self.source.default_route();
            existing
                .into_iter()
                .filter(|(name, _)| wanted.contains(name))
                .collect()
        } else {
            existing
                .into_iter()
                .filter(|(name, _)| self.patterns.iter().any(|p| matches(p, name)))
                .collect()
        };
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
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    if !crate::config::is_glob(pattern) {
        return false;
    }
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU64, Ordering};

    // --- config watcher ---------------------------------------------------------------------

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "node-monitor-watch-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Waits at most `within` for a notification.
    fn notified(rx: &mut mpsc::Receiver<()>, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match rx.try_recv() {
                Ok(()) => return true,
                Err(mpsc::error::TryRecvError::Empty) => thread::sleep(Duration::from_millis(20)),
                Err(mpsc::error::TryRecvError::Disconnected) => panic!("watcher thread ended"),
            }
        }
        false
    }

    /// Exactly one notification within 3 s, and no second one in the following debounce
    /// window and a half.
    #[track_caller]
    fn expect_one(rx: &mut mpsc::Receiver<()>, what: &str) {
        assert!(
            notified(rx, Duration::from_secs(3)),
            "{what}: no notification"
        );
        assert!(
            !notified(rx, MAX_DEBOUNCE + DEBOUNCE),
            "{what}: more than one notification"
        );
    }

    #[track_caller]
    fn expect_none(rx: &mut mpsc::Receiver<()>, what: &str) {
        assert!(
            !notified(rx, MAX_DEBOUNCE + DEBOUNCE * 2),
            "{what}: unexpected notification"
        );
    }

    #[test]
    fn in_place_write_mv_and_identical_content() {
        let dir = TempDir::new("plain");
        let path = dir.0.join("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let (watcher, mut rx) = ConfigWatcher::new(&path).unwrap();
        assert_eq!(watcher.path(), path);

        // In place, in two writes (as an editor might): one notification.
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(b"a: ").unwrap();
            f.flush().unwrap();
            thread::sleep(Duration::from_millis(20));
            f.write_all(b"2\n").unwrap();
        }
        expect_one(&mut rx, "in-place write");

        // The same bytes again: no notification.
        std::fs::write(&path, "a: 2\n").unwrap();
        expect_none(&mut rx, "identical content");

        // `mv new config.yaml`.
        let new = dir.0.join("config.yaml.new");
        std::fs::write(&new, "a: 3\n").unwrap();
        std::fs::rename(&new, &path).unwrap();
        expect_one(&mut rx, "mv replace");

        // Deleted, then back with the same content: no change. Then with new content: one.
        std::fs::remove_file(&path).unwrap();
        expect_none(&mut rx, "deleted");
        std::fs::write(&path, "a: 3\n").unwrap();
        expect_none(&mut rx, "recreated identical");
        std::fs::write(&path, "a: 4\n").unwrap();
        expect_one(&mut rx, "recreated changed");

        // Other files in the directory do not notify.
        std::fs::write(dir.0.join("other.yaml"), "x").unwrap();
        expect_none(&mut rx, "other file");
    }

    #[test]
    fn configmap_symlink_swap() {
        let dir = TempDir::new("configmap");
        let d = &dir.0;
        std::fs::create_dir(d.join("..2026_a")).unwrap();
        std::fs::write(d.join("..2026_a/config.yaml"), "v: a\n").unwrap();
        symlink("..2026_a", d.join("..data")).unwrap();
        symlink("..data/config.yaml", d.join("config.yaml")).unwrap();
        let path = d.join("config.yaml");
        let (_watcher, mut rx) = ConfigWatcher::new(&path).unwrap();

        // The kubelet's update: a new timestamped directory, a temporary symlink to it,
        // renamed over `..data`, then the old directory removed.
        let swap = |from: &str, to: &str, content: &str| {
            std::fs::create_dir(d.join(to)).unwrap();
            std::fs::write(d.join(to).join("config.yaml"), content).unwrap();
            symlink(to, d.join("..data_tmp")).unwrap();
            std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
            std::fs::remove_dir_all(d.join(from)).unwrap();
        };
        swap("..2026_a", "..2026_b", "v: b\n");
        expect_one(&mut rx, "ConfigMap swap");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "v: b\n");

        // A resync that writes the same content into a new directory: no notification.
        swap("..2026_b", "..2026_c", "v: b\n");
        expect_none(&mut rx, "ConfigMap swap, same content");

        // And again with new content: the watch followed the target.
        swap("..2026_c", "..2026_d", "v: d\n");
        expect_one(&mut rx, "second ConfigMap swap");
    }

    #[test]
    fn symlink_into_another_directory_follows_target_writes() {
        let dir = TempDir::new("target");
        std::fs::create_dir(dir.0.join("etc")).unwrap();
        std::fs::create_dir(dir.0.join("real")).unwrap();
        let real = dir.0.join("real/config.yaml");
        std::fs::write(&real, "v: 1\n").unwrap();
        let link = dir.0.join("etc/config.yaml");
        symlink(&real, &link).unwrap();
        let (_watcher, mut rx) = ConfigWatcher::new(&link).unwrap();
        std::fs::write(&real, "v: 2\n").unwrap();
        expect_one(&mut rx, "write through a symlink into another directory");
    }

    #[test]
    fn missing_directory_is_an_error_and_drop_ends_the_watch() {
        let dir = TempDir::new("missing");
        assert!(ConfigWatcher::new(&dir.0.join("nope/config.yaml")).is_err());
        let path = dir.0.join("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let (watcher, mut rx) = ConfigWatcher::new(&path).unwrap();
        drop(watcher);
        // The worker ends (its sender goes with it) without any event.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match rx.try_recv() {
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                _ if Instant::now() > deadline => panic!("the worker did not end"),
                _ => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    #[test]
    fn works_with_a_tokio_receiver() {
        let dir = TempDir::new("tokio");
        let path = dir.0.join("config.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let (_watcher, mut rx) = ConfigWatcher::new(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        std::fs::write(&path, "a: 2\n").unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), rx.recv()).await });
        assert_eq!(got, Ok(Some(())));
    }

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
