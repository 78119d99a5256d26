//! The config file watcher: reload when the file's content changes.
//!
//! [`ConfigWatcher`] watches the config file's *parent directory* with inotify (`notify`), so
//! that it sees every way a file gets replaced: an in-place write, `mv new config.yaml`, and
//! the Kubernetes ConfigMap update, where `config.yaml -> ..data/config.yaml` stays put and
//! `..data` (a symlink to a timestamped directory) is atomically renamed over. On any event it
//! waits for a quiet spell ([`DEBOUNCE`]), re-reads the file through its symlinks and compares
//! the SHA-256 of the bytes with the last one: it notifies only when the content really
//! changed. It also re-checks every [`RESCAN`], in case an event was lost.
use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak, mpsc as std_mpsc},
    thread,
    time::{Duration, Instant},
};

use notify::{
    Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode},
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Quiet time after the last file system event before the file is re-read.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a burst of events can postpone the re-read.
pub(crate) const MAX_DEBOUNCE: Duration = Duration::from_secs(1);
/// The file is also re-read this often without any event (a safety net for lost events).
pub(crate) const RESCAN: Duration = Duration::from_secs(10);

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
                    warn!(dir = %new.display(), error = %e, "cannot watch the config file's target directory");
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests {
    use std::{
        os::unix::fs::symlink,
        sync::atomic::{AtomicU64, Ordering},
    };

    use super::*;

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
}
