//! The flood section's lab: two namespaces joined by a veth, the trafgen packet that floods
//! the node, the node's received-packet count and firewall, and the machine facts the report
//! gives (CPUs, load, missing tools).
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use node_monitor_lab::Netns;
use serde_json::Value;

use super::run::Traffic;

/// The node's and the generator's addresses on the flood link; random sources come from
/// [`RANDOM_PREFIX`], routed back to the generator (the node's RSTs go there and die).
pub(super) const NODE: &str = "2001:db8:1::1";
pub(super) const GEN: &str = "2001:db8:1::2";
pub(super) const RANDOM_PREFIX: &str = "2001:db8:2::/64";
/// The one source of the single-source flood (in [`RANDOM_PREFIX`]).
pub(super) const ONE_SOURCE: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 2];

/// A temp directory removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two namespaces and their veth.
pub(super) struct Bed {
    pub(super) generator: Netns,
    pub(super) node: Netns,
    pub(super) node_mac: String,
    pub(super) gen_mac: String,
}

pub(super) fn mac_of(ns: &Netns) -> anyhow::Result<String> {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "eth0"])?)?;
    j[0]["address"]
        .as_str()
        .map(str::to_owned)
        .context("no MAC address on eth0")
}

impl Bed {
    pub(super) fn new() -> anyhow::Result<Bed> {
        let generator = Netns::new("fgen")?;
        let node = Netns::new("fnode")?;
        // The veth is made inside the generator's namespace, its peer sent straight into
        // the node's: no end ever exists in the root namespace.
        generator.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &node.name,
        ])?;
        generator.ip(&["addr", "add", &format!("{GEN}/64"), "dev", "eth0", "nodad"])?;
        node.ip(&["addr", "add", &format!("{NODE}/64"), "dev", "eth0", "nodad"])?;
        generator.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["route", "add", RANDOM_PREFIX, "via", GEN])?;
        let ping = generator.exec("ping", &["-6", "-c1", "-W2", NODE])?;
        if !ping.status.success() {
            bail!("the flood link does not work: ping {NODE} failed");
        }
        Ok(Bed {
            node_mac: mac_of(&node)?,
            gen_mac: mac_of(&generator)?,
            generator,
            node,
        })
    }

    pub(super) fn rx_packets(&self) -> anyhow::Result<u64> {
        let j: Value = serde_json::from_str(&self.node.ip(&["-j", "-s", "link", "show", "eth0"])?)?;
        j[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("no rx packet count on eth0")
    }

    /// trafgen's packet: Ethernet, IPv6, a TCP SYN to 10250 (checksummed by trafgen).
    pub(super) fn trafgen_config(&self, traffic: Traffic) -> String {
        let hex = |mac: &str| {
            mac.split(':')
                .map(|b| format!("0x{b}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (src_low, src_port) = match traffic {
            Traffic::RandomSources => ("drnd(8)".to_owned(), "drnd(2)"),
            Traffic::OneSource => (
                ONE_SOURCE
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                "drnd(2)",
            ),
        };
        format!(
            "{{\n  {dst}, {src}, c16(0x86dd),\n  \
             0x60, 0, 0, 0, c16(20), 6, 64,\n  \
             0x20, 0x01, 0x0d, 0xb8, 0, 0x02, 0, 0, {src_low},\n  \
             0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,\n  \
             {src_port}, c16(10250), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp6(14, 54), c16(0)\n}}\n",
            dst = hex(&self.node_mac),
            src = hex(&self.gen_mac),
        )
    }
}

/// `ip6tables ARGS` in the node's namespace; fails unless it exits 0.
pub(super) fn ip6tables(bed: &Bed, args: &[&str]) -> anyhow::Result<()> {
    let out = bed
        .node
        .exec_timeout(Duration::from_secs(10), "ip6tables", args)?;
    if !out.status.success() {
        bail!(
            "ip6tables {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Undoes the pipeline section's pinning: this process and what it starts (trafgen, the
/// daemon) may run on every CPU, as they would on a node.
pub(super) fn unpin_all_cpus() -> anyhow::Result<usize> {
    // Not available_parallelism(): it counts the CPUs of the current (pinned) mask.
    // SAFETY: sysconf reads a constant of the C library.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let n = usize::try_from(online).unwrap_or(1).clamp(1, 1024);
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
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

pub(super) fn missing_tools() -> Vec<&'static str> {
    ["trafgen", "ip6tables", "nsenter"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect()
}
