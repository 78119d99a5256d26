//! The lab network: network namespaces joined by veth pairs, for the demo and the tests.
//!
//! Rules this module enforces (see DESIGN.md, "Tests and the lab network"):
//! - everything lives in network namespaces created here, named
//!   `nmlab-<pid>-<counter>-<role>` ([`NAME_PREFIX`]), and removed by `Drop` guards even
//!   when a test panics (`cargo xtask lab down` removes leftovers of a killed process);
//! - nothing is ever added to the root namespace: veths are created by running `ip`
//!   inside a lab namespace (`ip -n NS link add ... peer ... netns OTHER`);
//! - addresses come from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 only, and no
//!   namespace has a default route or a link to the root namespace;
//! - every wait is bounded in count and time.
//!
//! Topology built by [`Lab::new`]:
//!
//! ```text
//!   cp (eth0 198.51.100.2)  ──┐
//!                             ├── br0 198.51.100.254 ── router ── vout 203.0.113.254 ── outside (eth0 203.0.113.2)
//!   node (eth0 198.51.100.1) ─┘     2001:db8:1::fe                 2001:db8:2::fe          2001:db8:2::2
//! ```
//!
//! ```no_run
//! use xtask::lab::{Lab, addr};
//! let lab = Lab::new()?;
//! let out = lab.outside.exec("ping", &["-c1", "-W1", &addr::NODE_V4.to_string()])?;
//! assert!(out.status.success());
//! // std sockets inside a namespace:
//! let listener = lab.node.run(|| std::net::TcpListener::bind((addr::NODE_V4, 10250)))??;
//! # anyhow::Ok(())
//! ```

use std::{
    fmt::Write as _,
    fs::File,
    io::{ErrorKind, Read},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use nix::{
    sched::CloneFlags,
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Every namespace and bpffs directory made here starts with this prefix.
pub const NAME_PREFIX: &str = "nmlab-";
/// The interface name of the node (and of cp and outside) inside its namespace.
pub const NODE_IFACE: &str = "eth0";
/// Default timeout of [`Netns::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Where bpffs is mounted (shared by every network namespace).
pub const BPFFS: &str = "/sys/fs/bpf";

/// Lab addresses. Only documentation ranges: 198.51.100.0/24 (node LAN),
/// 203.0.113.0/24 (outside), 2001:db8:1::/64 (node LAN), 2001:db8:2::/64 (outside).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The node (`node` namespace, `eth0`).
    pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The node's IPv6 address.
    pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    /// The control-plane peer (`cp` namespace), on the node LAN.
    pub const CP_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// The control-plane peer's IPv6 address.
    pub const CP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
    /// The router on the node LAN (`br0`).
    pub const ROUTER_LAN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
    /// The router's IPv6 address on the node LAN.
    pub const ROUTER_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);
    /// A host outside the node LAN (`outside` namespace).
    pub const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    /// The outside host's IPv6 address.
    pub const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
    /// The router on the outside link.
    pub const ROUTER_OUT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
    /// The router's IPv6 address on the outside link.
    pub const ROUTER_OUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe);
    /// The node LAN (node, cp, router's br0).
    pub const NODE_SUBNET_V4: &str = "198.51.100.0/24";
    /// The node LAN, IPv6.
    pub const NODE_SUBNET_V6: &str = "2001:db8:1::/64";
    /// The outside link.
    pub const OUTSIDE_SUBNET_V4: &str = "203.0.113.0/24";
    /// The outside link, IPv6.
    pub const OUTSIDE_SUBNET_V6: &str = "2001:db8:2::/64";
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name `nmlab-<pid>-<counter>-<role>`.
fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{n}-{role}", std::process::id())
}

/// `program args...` as one line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let _ = write!(s, " {}", a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with no stdin, capturing stdout and stderr; kills it and
/// fails if it takes longer than `timeout`. The exit status is not checked.
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{desc}`"))?;
    let (tx, rx) = mpsc::channel();
    for (idx, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send((idx, buf));
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("wait for `{desc}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{desc}` timed out after {timeout:?} and was killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    // A grandchild that outlives the command may keep a pipe open: wait a bounded time.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match rx.recv_timeout(left) {
            Ok((0, b)) => stdout = b,
            Ok((_, b)) => stderr = b,
            Err(_) => break,
        }
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` with a timeout and fails, with its stderr, unless it exits 0. Returns stdout.
pub fn run_ok(cmd: Command, timeout: Duration) -> anyhow::Result<String> {
    let desc = describe(&cmd);
    let out = output_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

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
fn destroy_netns(name: &str) {
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

/// The lab: a router, the node, a control-plane peer and an outside host, each in its own
/// namespace (see the module doc for the topology). Dropping it removes all four.
#[derive(Debug)]
pub struct Lab {
    /// `br0` (node LAN) and the leg to `outside`; forwards IPv4 and IPv6.
    pub router: Netns,
    /// The monitored node: `eth0` with [`addr::NODE_V4`], [`addr::NODE_V6`].
    pub node: Netns,
    /// A control-plane peer on the node LAN: [`addr::CP_V4`], [`addr::CP_V6`].
    pub cp: Netns,
    /// A host beyond the router: [`addr::OUTSIDE_V4`], [`addr::OUTSIDE_V6`].
    pub outside: Netns,
}

impl Lab {
    /// Builds the topology and checks with pings (IPv4, IPv6) that cp and outside reach
    /// the node. Needs root, iproute2, procps (sysctl) and iputils-ping.
    pub fn new() -> anyhow::Result<Lab> {
        let router = Netns::new("router")?;
        let node = Netns::new("node")?;
        let cp = Netns::new("cp")?;
        let outside = Netns::new("outside")?;
        let lab = Lab {
            router,
            node,
            cp,
            outside,
        };
        lab.wire().context("build the lab topology")?;
        lab.check_connectivity()?;
        Ok(lab)
    }

    fn wire(&self) -> anyhow::Result<()> {
        use addr::*;
        let r = &self.router;
        r.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.forwarding=1",
        ])?;
        r.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        r.ip(&["addr", "add", &format!("{ROUTER_LAN_V4}/24"), "dev", "br0"])?;
        r.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_LAN_V6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        r.ip(&["link", "set", "br0", "up"])?;
        // Each veth is created inside the router namespace, its peer sent straight into
        // the other lab namespace: no end ever exists in the root namespace.
        for (leg, ns) in [
            ("vnode", &self.node),
            ("vcp", &self.cp),
            ("vout", &self.outside),
        ] {
            r.ip(&[
                "link", "add", leg, "type", "veth", "peer", "name", NODE_IFACE, "netns", &ns.name,
            ])?;
        }
        r.ip(&["link", "set", "vnode", "master", "br0", "up"])?;
        r.ip(&["link", "set", "vcp", "master", "br0", "up"])?;
        r.ip(&["addr", "add", &format!("{ROUTER_OUT_V4}/24"), "dev", "vout"])?;
        r.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_OUT_V6}/64"),
            "dev",
            "vout",
            "nodad",
        ])?;
        r.ip(&["link", "set", "vout", "up"])?;

        let lan_routes = [
            (OUTSIDE_SUBNET_V4, ROUTER_LAN_V4.to_string()),
            (OUTSIDE_SUBNET_V6, ROUTER_LAN_V6.to_string()),
        ];
        let out_routes = [
            (NODE_SUBNET_V4, ROUTER_OUT_V4.to_string()),
            (NODE_SUBNET_V6, ROUTER_OUT_V6.to_string()),
        ];
        for (ns, v4, v6, routes) in [
            (
                &self.node,
                NODE_V4.to_string(),
                NODE_V6.to_string(),
                &lan_routes,
            ),
            (&self.cp, CP_V4.to_string(), CP_V6.to_string(), &lan_routes),
            (
                &self.outside,
                OUTSIDE_V4.to_string(),
                OUTSIDE_V6.to_string(),
                &out_routes,
            ),
        ] {
            ns.sysctl(&[
                "net.ipv6.conf.eth0.accept_dad=0",
                "net.ipv6.conf.eth0.accept_ra=0",
            ])?;
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", NODE_IFACE])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                NODE_IFACE,
                "nodad",
            ])?;
            ns.ip(&["link", "set", NODE_IFACE, "up"])?;
            for (subnet, via) in routes {
                ns.ip(&["route", "add", subnet, "via", via])?;
            }
        }
        Ok(())
    }

    /// Pings the node from cp and from outside, IPv4 and IPv6 (at most 5 tries of 1 s each).
    pub fn check_connectivity(&self) -> anyhow::Result<()> {
        let node_v4 = addr::NODE_V4.to_string();
        let node_v6 = addr::NODE_V6.to_string();
        for (from, to) in [
            (&self.cp, &node_v4),
            (&self.cp, &node_v6),
            (&self.outside, &node_v4),
            (&self.outside, &node_v6),
        ] {
            let mut last = String::new();
            let ok = (0..5).any(|_| {
                match from.exec_timeout(Duration::from_secs(5), "ping", &["-n", "-c1", "-W1", to]) {
                    Ok(o) if o.status.success() => true,
                    Ok(o) => {
                        last = format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        );
                        false
                    }
                    Err(e) => {
                        last = format!("{e:#}");
                        false
                    }
                }
            });
            if !ok {
                bail!(
                    "lab connectivity check failed: {} cannot ping {to} ({}). Is iputils-ping installed (`cargo xtask setup`)?",
                    from.name,
                    last.trim()
                );
            }
        }
        Ok(())
    }

    /// The four namespaces, router first.
    pub fn namespaces(&self) -> [&Netns; 4] {
        [&self.router, &self.node, &self.cp, &self.outside]
    }

    /// Leaves the lab in place after this value is gone; returns the namespace names
    /// (router, node, cp, outside). Remove it with [`remove_all`].
    pub fn keep(self) -> [String; 4] {
        let Lab {
            router,
            node,
            cp,
            outside,
        } = self;
        [router.keep(), node.keep(), cp.keep(), outside.keep()]
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

/// Removes every lab namespace (ending its processes) and every `nmlab-*` directory in
/// bpffs, whoever made them. Returns what it removed.
pub fn remove_all() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        destroy_netns(&name);
        removed.push(format!("netns {name}"));
    }
    if let Ok(entries) = std::fs::read_dir(BPFFS) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(NAME_PREFIX) {
                let path = e.path();
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("remove {}", path.display()))?;
                removed.push(path.display().to_string());
            }
        }
    }
    Ok(removed)
}

/// Whether bpffs is mounted at [`BPFFS`].
pub fn bpffs_mounted() -> anyhow::Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    Ok(mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&BPFFS) && f.get(2) == Some(&"bpf")
    }))
}

/// Mounts bpffs at [`BPFFS`] unless it is there. Returns whether it mounted it.
pub fn ensure_bpffs() -> anyhow::Result<bool> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if bpffs_mounted()? {
        return Ok(false);
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mount -t bpf bpf {BPFFS} (root needed)"))?;
    Ok(true)
}

/// A unique directory `/sys/fs/bpf/nmlab-<pid>-<counter>-<tag>` for one daemon's pins
/// (bpffs is shared by all network namespaces); removed with everything in it on drop.
#[derive(Debug)]
pub struct BpfPinDir {
    /// The directory (created empty).
    pub path: PathBuf,
}

impl BpfPinDir {
    /// Mounts bpffs if needed and creates the directory.
    pub fn new(tag: &str) -> anyhow::Result<BpfPinDir> {
        ensure_bpffs()?;
        let path = Path::new(BPFFS).join(unique_name(tag));
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(BpfPinDir { path })
    }

    /// Names of the entries in the directory (pins and subdirectories).
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for BpfPinDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!("lab: could not remove {}: {e}", self.path.display()),
        }
    }
}

/// A spawned process that is ended on drop: SIGTERM, then SIGKILL if it has not exited
/// within a bounded grace period.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    desc: String,
    status: Option<ExitStatus>,
}

impl Child {
    /// Default grace period between SIGTERM and SIGKILL.
    pub const GRACE: Duration = Duration::from_secs(3);

    /// Spawns `cmd` (stdin closed unless the caller set it).
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
        let desc = describe(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{desc}`"))?;
        Ok(Child {
            child,
            desc,
            status: None,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn describe(&self) -> &str {
        &self.desc
    }

    /// The process's stdout if it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The process's stderr if it was piped (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("wait for `{}`", self.desc))?;
        }
        Ok(self.status)
    }

    /// Sends SIGTERM, waits up to `grace` for it to exit, then SIGKILLs it.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "lab: `{}` ignored SIGTERM for {grace:?}; killing it",
            self.desc
        );
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .with_context(|| format!("wait for `{}`", self.desc))?;
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.stop(Self::GRACE);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn exists(name: &str) -> bool {
        Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let a = unique_name("node");
        let b = unique_name("node");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{NAME_PREFIX}{}-", std::process::id())));
        assert!(a.ends_with("-node"));
    }

    #[test]
    fn timeout_kills_a_slow_command() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let t = Instant::now();
        let err = output_with_timeout(cmd, Duration::from_millis(200)).unwrap_err();
        assert!(format!("{err}").contains("timed out"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn lab_connects_both_families_and_is_removed() {
        let lab = Lab::new().unwrap();
        let names: Vec<String> = lab.namespaces().iter().map(|n| n.name.clone()).collect();
        assert!(names.iter().all(|n| exists(n)));
        let listed = list_namespaces().unwrap();
        assert!(names.iter().all(|n| listed.contains(n)));
        // No default route anywhere.
        for ns in lab.namespaces() {
            for fam in ["-4", "-6"] {
                let routes = ns.ip(&[fam, "route", "show", "default"]).unwrap();
                assert!(routes.trim().is_empty(), "{}: {routes}", ns.name);
            }
        }
        // TCP over both families, cp -> node and outside -> node, with std sockets.
        let l4 = lab
            .node
            .run(|| TcpListener::bind((addr::NODE_V4, 10250)))
            .unwrap()
            .unwrap();
        let l6 = lab
            .node
            .run(|| TcpListener::bind((addr::NODE_V6, 10250)))
            .unwrap()
            .unwrap();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for l in [&l4, &l6, &l4, &l6] {
                let (mut s, peer) = l.accept().unwrap();
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                seen.push(peer.ip());
            }
            seen
        });
        for ns in [&lab.cp, &lab.outside] {
            for dst in [
                std::net::IpAddr::V4(addr::NODE_V4),
                std::net::IpAddr::V6(addr::NODE_V6),
            ] {
                ns.run(move || {
                    let mut s =
                        TcpStream::connect_timeout(&(dst, 10250).into(), Duration::from_secs(2))
                            .unwrap();
                    s.write_all(b"hi").unwrap();
                })
                .unwrap();
            }
        }
        let seen = server.join().unwrap();
        let want: Vec<std::net::IpAddr> = vec![
            addr::CP_V4.into(),
            addr::CP_V6.into(),
            addr::OUTSIDE_V4.into(),
            addr::OUTSIDE_V6.into(),
        ];
        assert_eq!(seen, want);
        // A process in a namespace is ended when the lab drops.
        let mut sleeper = lab.node.command("sleep");
        sleeper.arg("30");
        let sleeper = sleeper.spawn().unwrap();
        drop(lab);
        assert!(
            names.iter().all(|n| !exists(n)),
            "namespaces left: {names:?}"
        );
        let mut sleeper = sleeper;
        let st = sleeper.wait().unwrap();
        assert!(!st.success());
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

    #[test]
    fn child_guard_terminates() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut c = Child::spawn(&mut cmd).unwrap();
        let t = Instant::now();
        let st = c.stop(Duration::from_secs(2)).unwrap();
        assert!(!st.success());
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn pin_dir_is_removed() {
        let d = BpfPinDir::new("unit").unwrap();
        assert!(d.path.is_dir());
        assert!(d.entries().is_empty());
        let p = d.path.clone();
        drop(d);
        assert!(!p.exists());
    }
}
