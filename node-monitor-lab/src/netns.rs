//! Named network namespaces (`/run/netns/<name>`) as guards: [`Netns`] creates one with a
//! unique `nmlab-*` name and deletes it on drop together with every process still in it;
//! [`NsThread`] runs Rust code (std sockets) inside one. Nothing here ever touches the
//! root namespace: every `ip` command names its lab namespace.

use std::{
    fs::File,
    process::{Command, Output, Stdio},
    sync::mpsc,
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use nix::{
    sched::CloneFlags,
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    names::{NAME_PREFIX, unique_name},
    process::{output_with_timeout, run_ok},
};

/// Default timeout of [`Netns::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_ok(cmd, Duration::from_secs(10)).context("is iproute2 installed? (`cargo xtask setup`)")
}

/// Process ids in a named network namespace (`ip netns pids`), never our own.
fn netns_pids(name: &str) -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    ip(&["netns", "pids", name])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|&p| p != me && p > 1)
                .collect()
        })
        .unwrap_or_default()
}

/// Ends every process in the namespace (SIGTERM, then SIGKILL after at most 1 s) and
/// deletes it. Errors are reported on stderr, never raised (used from `Drop`).
pub(crate) fn destroy_netns(name: &str) {
    let pids = netns_pids(name);
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    if !pids.is_empty() {
        for _ in 0..20 {
            if netns_pids(name).is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        for p in netns_pids(name) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        let msg = format!("{e:#}");
        if !msg.contains("No such file") {
            eprintln!("lab: could not delete netns {name}: {msg}");
        }
    }
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop together with every
/// process still running in it.
#[derive(Debug)]
pub struct Netns {
    /// `nmlab-<pid>-<counter>-<role>`.
    pub name: String,
    keep: bool,
}

impl Netns {
    /// Creates a namespace named `nmlab-<pid>-<counter>-<role>` with `lo` up, IPv6 DAD and
    /// router advertisements off.
    pub fn new(role: &str) -> anyhow::Result<Netns> {
        let name = unique_name(role);
        ip(&["netns", "add", &name]).with_context(|| format!("create netns {name}"))?;
        let ns = Netns { name, keep: false };
        ns.sysctl(&[
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.accept_ra=0",
            "net.ipv6.conf.default.accept_ra=0",
            "net.ipv6.conf.default.router_solicitations=0",
        ])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NAME program`, with stdin closed. Note that `ip netns exec` runs the
    /// program in a fresh mount namespace with a new `/sys`, which hides the host's bpffs
    /// at `/sys/fs/bpf`: use [`Netns::nsenter`] for a program that must see pins there.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program])
            .stdin(Stdio::null());
        cmd
    }

    /// `nsenter --net=/run/netns/NAME -- program`: this namespace's network, the host's
    /// mounts (so `/sys/fs/bpf` is the shared bpffs; `/sys/class/net` is the root
    /// namespace's, so do not read interfaces from sysfs there). Stdin closed.
    pub fn nsenter(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd args...` in the namespace with [`EXEC_TIMEOUT`]; the exit status is not
    /// checked.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> anyhow::Result<Output> {
        self.exec_timeout(EXEC_TIMEOUT, cmd, args)
    }

    /// [`Netns::exec`] with an explicit timeout.
    pub fn exec_timeout(
        &self,
        timeout: Duration,
        cmd: &str,
        args: &[&str],
    ) -> anyhow::Result<Output> {
        let mut c = self.command(cmd);
        c.args(args);
        output_with_timeout(c, timeout).with_context(|| format!("in netns {}", self.name))
    }

    /// `ip -n NAME args...`, which must succeed; returns its stdout.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all).with_context(|| format!("in netns {}", self.name))
    }

    /// Sets sysctls (`key=value`) in this namespace.
    pub fn sysctl(&self, settings: &[&str]) -> anyhow::Result<()> {
        let mut cmd = self.command("sysctl");
        cmd.arg("-qw").args(settings);
        run_ok(cmd, Duration::from_secs(10))
            .with_context(|| format!("sysctl in netns {}", self.name))?;
        Ok(())
    }

    /// Runs `f` on a fresh thread that has joined this namespace (setns), and returns its
    /// result; a panic in `f` is resumed here. Sockets that `f` creates belong to this
    /// namespace, also after it returns.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.spawn(f)?.join()
    }

    /// Like [`Netns::run`] but returns at once with a handle on the thread (a server loop,
    /// say). The thread must stop by itself: bound its loops.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<NsThread<T>> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(
                move || match nix::sched::setns(&file, CloneFlags::CLONE_NEWNET) {
                    Ok(()) => {
                        drop(file);
                        let _ = tx.send(Ok(()));
                        Some(f())
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        None
                    }
                },
            )
            .context("spawn thread")?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(NsThread {
                handle,
                ns: self.name.clone(),
            }),
            Ok(Err(e)) => Err(anyhow!("setns into {}: {e}", self.name)),
            Err(e) => Err(anyhow!("thread for {} did not start: {e}", self.name)),
        }
    }

    /// Leaves the namespace in place when this guard drops (for `cargo xtask lab up`).
    pub fn keep(mut self) -> String {
        self.keep = true;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.keep && !self.name.is_empty() {
            destroy_netns(&self.name);
        }
    }
}

/// A thread running inside a namespace (see [`Netns::spawn`]).
#[derive(Debug)]
pub struct NsThread<T> {
    handle: JoinHandle<Option<T>>,
    ns: String,
}

impl<T> NsThread<T> {
    /// Waits for the thread; a panic in it is resumed here.
    pub fn join(self) -> anyhow::Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(anyhow!("thread in {} did not run", self.ns)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Names of the lab namespaces that exist now (prefix [`NAME_PREFIX`]).
pub fn list_namespaces() -> anyhow::Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NAME_PREFIX))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Mutex};

    use super::*;

    fn exists(name: &str) -> bool {
        Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn panic_still_removes_namespaces() {
        let names = Mutex::new(Vec::new());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let node = Netns::new("node").unwrap();
            let other = Netns::new("outside").unwrap();
            names
                .lock()
                .unwrap()
                .extend([node.name.clone(), other.name.clone()]);
            panic!("test panic inside a lab scope");
        }));
        assert!(result.is_err());
        let names = names.into_inner().unwrap();
        assert_eq!(names.len(), 2);
        assert!(
            names.iter().all(|n| !exists(n)),
            "namespaces left: {names:?}"
        );
    }

    #[test]
    fn run_propagates_panics_and_values() {
        let ns = Netns::new("run").unwrap();
        // The thread's own view (/proc/thread-self/net) is the namespace's.
        let ifaces_thread = ns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
            .unwrap();
        assert!(ifaces_thread.contains("lo:"));
        assert!(!ifaces_thread.contains("eth0:"), "{ifaces_thread}");
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.run(|| panic!("inner"))));
        assert!(r.is_err());
    }
}
