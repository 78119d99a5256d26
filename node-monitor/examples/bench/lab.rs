//! The lab that the live-traffic sections (flood, live) share: two namespaces joined by a
//! veth, the trafgen packets that cross it and the run of trafgen, the node's received-packet
//! count and firewall, CPU time, and the machine facts the reports give (CPUs, load, missing
//! tools).
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{Child, Netns, NsThread, output_with_timeout};
use serde_json::Value;

/// The node's and the generator's addresses on the flood link; random sources come from
/// [`RANDOM_PREFIX`], routed back to the generator (the node's RSTs go there and die).
pub(crate) const NODE: &str = "2001:db8:1::1";
pub(crate) const GEN: &str = "2001:db8:1::2";
/// The low 64 bits of [`GEN`].
const GEN_LOW: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 2];
pub(crate) const RANDOM_PREFIX: &str = "2001:db8:2::/64";
/// The one source of the single-source flood (in [`RANDOM_PREFIX`]).
pub(crate) const ONE_SOURCE: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 2];
/// The same link in IPv4, for packets sent as IPv4 ([`TcpPacket::ipv4`]): the node, the
/// generator, the prefix random sources come from (routed back to the generator: 256
/// addresses, all the documentation ranges leave after the link's own) and the one source in
/// it.
pub(crate) const NODE4: &str = "198.51.100.1";
pub(crate) const GEN4: &str = "198.51.100.2";
pub(crate) const RANDOM_PREFIX4: &str = "203.0.113.0/24";
const ONE_SOURCE4: [u8; 4] = [203, 0, 113, 2];

/// Spawns `cmd` (whose output goes to `log`) and waits, at most `timeout`, until `log` holds
/// `needle`; fails with the log if the process exits first or the time runs out.
pub(crate) fn spawn_until(
    cmd: &mut Command,
    log: &Path,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<Child> {
    let mut child = Child::spawn(cmd)?;
    let deadline = Instant::now() + timeout;
    while !std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
        let exited = child.try_wait()?;
        if exited.is_some() || Instant::now() >= deadline {
            bail!(
                "`{}` {} before it printed {needle:?}:\n{}",
                child.describe(),
                exited.map_or_else(
                    || format!("did not get there within {timeout:?}"),
                    |st| format!("exited ({st})")
                ),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// Sets a flag on SIGINT and SIGTERM while held, so that a section stops between runs and its
/// guards remove what it made (the processes it started get the terminal's SIGINT
/// themselves); the default handling comes back on drop.
pub(crate) struct InterruptGuard;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

impl InterruptGuard {
    pub(crate) fn install() -> InterruptGuard {
        INTERRUPTED.store(false, Ordering::SeqCst);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
        InterruptGuard
    }

    /// Fails once SIGINT or SIGTERM has come.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: restores the default disposition.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// A temp directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two namespaces and their veth.
pub(crate) struct Bed {
    pub(crate) generator: Netns,
    pub(crate) node: Netns,
    pub(crate) node_mac: String,
    pub(crate) gen_mac: String,
}

pub(crate) fn mac_of(ns: &Netns) -> anyhow::Result<String> {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "eth0"])?)?;
    j[0]["address"]
        .as_str()
        .map(str::to_owned)
        .context("no MAC address on eth0")
}

impl Bed {
    /// `tag` starts the namespaces' roles (`<tag>gen`, `<tag>node`).
    pub(crate) fn new(tag: &str) -> anyhow::Result<Bed> {
        let generator = Netns::new(&format!("{tag}gen"))?;
        let node = Netns::new(&format!("{tag}node"))?;
        // The veth is made inside the generator's namespace, its peer sent straight into
        // the node's: no end ever exists in the root namespace.
        generator.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &node.name,
        ])?;
        generator.ip(&["addr", "add", &format!("{GEN}/64"), "dev", "eth0", "nodad"])?;
        node.ip(&["addr", "add", &format!("{NODE}/64"), "dev", "eth0", "nodad"])?;
        generator.ip(&["addr", "add", &format!("{GEN4}/24"), "dev", "eth0"])?;
        node.ip(&["addr", "add", &format!("{NODE4}/24"), "dev", "eth0"])?;
        generator.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["route", "add", RANDOM_PREFIX, "via", GEN])?;
        node.ip(&["route", "add", RANDOM_PREFIX4, "via", GEN4])?;
        for (family, to) in [("-6", NODE), ("-4", NODE4)] {
            let ping = generator.exec("ping", &[family, "-c1", "-W2", to])?;
            if !ping.status.success() {
                bail!("the lab link does not work: ping {to} failed");
            }
        }
        Ok(Bed {
            node_mac: mac_of(&node)?,
            gen_mac: mac_of(&generator)?,
            generator,
            node,
        })
    }

    pub(crate) fn rx_packets(&self) -> anyhow::Result<u64> {
        let j: Value = serde_json::from_str(&self.node.ip(&["-j", "-s", "link", "show", "eth0"])?)?;
        j[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("no rx packet count on eth0")
    }

    /// Starts watching the node's eth0 receive counter from a thread inside its namespace
    /// (`/proc/thread-self/net/dev`, every 2 ms), until [`RxWatch::rate`].
    pub(crate) fn watch_rx(&self) -> anyhow::Result<RxWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = self.node.spawn(move || {
            let t0 = Instant::now();
            let mut last = thread_rx_packets();
            let mut first: Option<(Instant, u64)> = None;
            let mut latest: Option<(Instant, u64)> = None;
            // Bounded: stopped by the caller, or after 180 s whatever happens.
            while !flag.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(180) {
                std::thread::sleep(Duration::from_millis(2));
                let c = thread_rx_packets();
                if c != last {
                    let now = Instant::now();
                    first.get_or_insert((now, c));
                    latest = Some((now, c));
                    last = c;
                }
            }
            match (first, latest) {
                (Some((t1, c1)), Some((t2, c2))) if t2 > t1 => {
                    Some(c2.saturating_sub(c1) as f64 / (t2 - t1).as_secs_f64())
                }
                _ => None,
            }
        })?;
        Ok(RxWatch { stop, thread })
    }

    /// trafgen's config for `packet`: Ethernet, IPv6 or IPv4, TCP (checksummed by trafgen).
    pub(crate) fn trafgen_config(&self, packet: TcpPacket) -> String {
        if packet.ipv4 {
            return self.trafgen_config4(packet);
        }
        let bytes = |b: &[u8]| {
            b.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        // 2001:db8:1::/64 (the link: the generator's own address) or 2001:db8:2::/64.
        let (src_net, src_low) = match packet.source {
            Source::Generator => ("0, 0x01", bytes(&GEN_LOW)),
            Source::One => ("0, 0x02", bytes(&ONE_SOURCE)),
            Source::Random => ("0, 0x02", "drnd(8)".to_owned()),
        };
        let (src_port, ack, flags) = packet.tcp_fields();
        format!(
            "{{\n  {dst}, {src}, c16(0x86dd),\n  \
             0x60, 0, 0, 0, c16(20), 6, 64,\n  \
             0x20, 0x01, 0x0d, 0xb8, {src_net}, 0, 0, {src_low},\n  \
             0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,\n  \
             {src_port}, c16({dport}), drnd(4), {ack}, 0x50, {flags}, c16(64240), csumtcp6(14, 54), c16(0)\n}}\n",
            dst = mac_hex(&self.node_mac),
            src = mac_hex(&self.gen_mac),
            dport = packet.dest_port,
        )
    }

    /// [`Bed::trafgen_config`] for IPv4: a 20-byte IPv4 header (DF, TTL 64, checksummed)
    /// instead of the IPv6 one, the same TCP header.
    fn trafgen_config4(&self, packet: TcpPacket) -> String {
        let src = match packet.source {
            Source::Generator => GEN4.replace('.', ", "),
            Source::One => ONE_SOURCE4.map(|b| b.to_string()).join(", "),
            Source::Random => "203, 0, 113, drnd(1)".to_owned(),
        };
        let (src_port, ack, flags) = packet.tcp_fields();
        format!(
            "{{\n  {dst}, {gen}, c16(0x0800),\n  \
             0x45, 0, c16(40), c16(0), 0x40, 0, 64, 6, csumip(14, 33),\n  \
             {src}, {node},\n  \
             {src_port}, c16({dport}), drnd(4), {ack}, 0x50, {flags}, c16(64240), csumtcp(14, 34), c16(0)\n}}\n",
            dst = mac_hex(&self.node_mac),
            gen = mac_hex(&self.gen_mac),
            node = NODE4.replace('.', ", "),
            dport = packet.dest_port,
        )
    }

    /// Sends `packets` copies of the packet in `conf` (a trafgen config file) from the
    /// generator, as fast as trafgen can on one CPU (bounded: 120 s); the send time.
    ///
    /// trafgen's TX ring builds each skb with only the Ethernet header in its linear part and
    /// the rest in page fragments, and the veth hands that skb on as it is; with `sendto`
    /// (`-t 0`: one sendto(2) per packet, slower) a small packet's skb is all linear, as the
    /// headers of a NIC's received packets mostly are.
    pub(crate) fn send(&self, conf: &Path, packets: u64, sendto: bool) -> anyhow::Result<f64> {
        let mut trafgen = self.generator.command("trafgen");
        if sendto {
            trafgen.args(["-t", "0"]);
        }
        trafgen.args([
            "--dev",
            "eth0",
            "--conf",
            &conf.to_string_lossy(),
            "-n",
            &packets.to_string(),
            "-P",
            "1",
            "-C",
            "-Q",
            "--no-sock-mem",
        ]);
        let t0 = Instant::now();
        let out: Output = output_with_timeout(trafgen, Duration::from_secs(120))?;
        let send_s = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "trafgen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(send_s)
    }
}

/// eth0's received packets in the namespace of the calling thread (0 if unreadable).
fn thread_rx_packets() -> u64 {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.trim_start().strip_prefix("eth0:"))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A thread watching the node's receive counter (see [`Bed::watch_rx`]).
pub(crate) struct RxWatch {
    stop: Arc<AtomicBool>,
    thread: NsThread<Option<f64>>,
}

impl RxWatch {
    /// Stops watching; the receive rate (packets/s) from the first packet it saw arrive to
    /// the last, so that neither trafgen's start nor its exit is counted. `None` if it saw
    /// too few packets to tell.
    pub(crate) fn rate(self) -> anyhow::Result<Option<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join()
    }
}

/// Where a trafgen packet comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    /// The generator's own address on the link ([`GEN`]): inside the node's subnet, which
    /// the embedded default config allows on the kubelet port (`node-subnets`).
    Generator,
    /// One address in [`RANDOM_PREFIX`] ([`ONE_SOURCE`]).
    One,
    /// A new random address in [`RANDOM_PREFIX`] per packet.
    Random,
}

/// One TCP packet that trafgen sends to the node, over and over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpPacket {
    pub(crate) source: Source,
    /// `None`: a new random source port per packet.
    pub(crate) source_port: Option<u16>,
    pub(crate) dest_port: u16,
    /// ACK (a segment of an established connection) instead of SYN.
    pub(crate) ack: bool,
    /// IPv4 ([`NODE4`], [`GEN4`], [`RANDOM_PREFIX4`]) instead of IPv6.
    pub(crate) ipv4: bool,
}

impl TcpPacket {
    /// trafgen's source port, acknowledgment number and flags for the packet.
    fn tcp_fields(&self) -> (String, &'static str, &'static str) {
        let src_port = self
            .source_port
            .map_or_else(|| "drnd(2)".to_owned(), |p| format!("c16({p})"));
        let (ack, flags) = if self.ack {
            ("c32(1)", "0x10")
        } else {
            ("c32(0)", "0x02")
        };
        (src_port, ack, flags)
    }
}

/// A MAC address as trafgen's bytes.
fn mac_hex(mac: &str) -> String {
    mac.split(':')
        .map(|b| format!("0x{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The firewall tool of the family: `iptables` for IPv4, `ip6tables` for IPv6.
pub(crate) fn xtables_tool(ipv4: bool) -> &'static str {
    if ipv4 { "iptables" } else { "ip6tables" }
}

/// `ip6tables ARGS` in the node's namespace (`iptables` if `ipv4`); fails unless it exits 0.
pub(crate) fn xtables(bed: &Bed, ipv4: bool, args: &[&str]) -> anyhow::Result<()> {
    let tool = xtables_tool(ipv4);
    let out = bed.node.exec_timeout(Duration::from_secs(10), tool, args)?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip6tables -A INPUT` (`iptables` if `ipv4`) for new TCP connections to 10250 (`-m
/// conntrack --ctstate NEW`), jumping to `target` (`LOG ...`, `NFLOG ...`): the rule the
/// benches compare against.
pub(crate) fn new_conn_rule(bed: &Bed, ipv4: bool, target: &[&str]) -> anyhow::Result<()> {
    let mut args = vec![
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "10250",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
    ];
    args.extend_from_slice(target);
    xtables(bed, ipv4, &args)
}

/// Runs `run` (one case of `label`), again at most twice when trafgen failed (its TX ring
/// flush may fail with EAGAIN under load), noting each retry in `retries` for the report.
/// `before` runs before every attempt (an interrupt check); any other error is returned with
/// `label` as context.
pub(crate) fn retry_trafgen<T>(
    label: &str,
    retries: &mut Vec<String>,
    mut before: impl FnMut() -> anyhow::Result<()>,
    mut run: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut attempt = 0;
    loop {
        before()?;
        match run() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 2 && format!("{e:#}").contains("trafgen failed") => {
                attempt += 1;
                retries.push(format!("{label}: {e:#}"));
                eprintln!("retrying: {e:#}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                // The processes we started got the terminal's SIGINT too: say that, not what
                // their going broke.
                before()?;
                return Err(e).with_context(|| label.to_owned());
            }
        }
    }
}

/// Undoes the pipeline section's pinning: this process and what it starts (trafgen, the
/// daemon) may run on every CPU, as they would on a node.
/// The CPUs online (1 to 1024). Not available_parallelism(): it counts the CPUs of the
/// current (maybe pinned) mask.
fn online_cpus() -> usize {
    // SAFETY: sysconf reads a constant of the C library.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).clamp(1, 1024)
}

pub(crate) fn unpin_all_cpus() -> anyhow::Result<usize> {
    let n = online_cpus();
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it (n is at most
    // 1024, CPU_SETSIZE); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..n {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(n)
}

/// The 1-minute load average (`/proc/loadavg`): the machine may be shared.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// The tools among `tools` that are not on the PATH.
pub(crate) fn missing_tools<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect()
}

/// `/proc/stat`'s first line (all CPUs): the time (ns) in the columns `columns` (0 = user,
/// 1 = nice, 2 = system, 3 = idle, 4 = iowait, 5 = irq, 6 = softirq, 7 = steal).
fn proc_stat_ns(columns: &[usize]) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks: u64 = columns
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    Ok(ticks as f64 * 1e9 / clock_ticks_per_s())
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is involved.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Busy time of all CPUs so far (ns, from an arbitrary origin: only differences mean
/// anything): the CPUs' time on the monotonic clock less their idle, iowait and steal time.
/// The kernel measures idle time itself, on entering and leaving idle (`/proc/stat` gives it
/// in clock ticks: 10 ms units), while user, system and softirq time are tick samples (4 ms
/// each at 250 Hz), whose sum over a second or two of traffic is off by a few percent from
/// one reading to the next. Steal is time the hypervisor gave to someone else while this
/// machine waited, which no mode spent.
pub(crate) fn cpu_busy_ns() -> anyhow::Result<f64> {
    Ok(online_cpus() as f64 * monotonic_ns() - proc_stat_ns(&[3, 4, 7])?)
}

/// CLOCK_MONOTONIC (ns): the clock the kernel's idle accounting runs on.
fn monotonic_ns() -> f64 {
    // SAFETY: clock_gettime writes within the zeroed timespec it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
        ts
    };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Interrupt and softirq time of all CPUs so far (ns): where the kernel receives a veth's
/// packets and runs XDP, tc, netfilter and the TCP stack on them, whoever else shares the
/// machine.
pub(crate) fn cpu_irq_ns() -> anyhow::Result<f64> {
    proc_stat_ns(&[5, 6])
}

/// User and system time (ns) of the children this process has waited for.
pub(crate) fn children_cpu_ns() -> f64 {
    // SAFETY: a zeroed rusage is valid; getrusage writes within it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User and system time (ns) of process `pid` so far (`/proc/PID/stat`), 0 when it is gone.
pub(crate) fn process_cpu_ns(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name (which may hold spaces) in parentheses;
            // utime and stime are the 14th and 15th of the line.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(t as f64 * 1e9 / clock_ticks_per_s())
        })
        .unwrap_or(0.0)
}

/// The empty-program example: beside this benchmark (both are examples of one build), else
/// under `examples/` beside the daemon binary.
pub(crate) fn empty_xdp(daemon: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mine = std::env::current_exe()
        .ok()
        .and_then(|b| Some(b.parent()?.join("empty_xdp")));
    let theirs = daemon
        .parent()
        .map(|d| d.join("examples").join("empty_xdp"));
    let tried: Vec<_> = [mine, theirs].into_iter().flatten().collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no empty_xdp example at {} (`cargo xtask bench` builds it)",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}
