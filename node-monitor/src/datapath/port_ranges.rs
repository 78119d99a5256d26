//! Per-port source ranges (issue 8): the NodePorts whose Service sets
//! `loadBalancerSourceRanges`. Traffic sent to a NodePort directly bypasses the load
//! balancer's source filter, so a connection from outside those ranges is flagged.
//!
//! Each such port is marked in its port table entry (`PORT_RANGES_MARK`, beside the group id)
//! and its ranges go into `PORT_ALLOW_V4`/`_V6` under (protocol, port); the sources every
//! marked port accepts (`cluster.node_port_also_allow`: localhost, the nodes, the pod CIDRs by
//! default) go in once, under protocol 0, port 0. For a marked port the data path allows a
//! source only when its group allows it and one of those entries does.
//!
//! A rewrite goes in the order that never flags an allowed source: new entries in, then the
//! marks (set and cleared), then stale entries out; when old and new entries do not fit in a
//! trie at once, the stale ones leave first (as the allowlists do). Ports whose ranges do not
//! fit beside the others are left unmarked (they fail open), counted and logged. When the
//! sources every marked port accepts do not fit on their own, no port is marked: a marked
//! port without them would flag the cluster's own traffic (the nodes, the pods), and the
//! ranges applied before them are stale (a Service may have widened its ranges, or given its
//! NodePort up to another). So every port fails open, counted as not enforced, and the tables
//! are emptied, until they fit.
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use node_monitor_common::{
    IPPROTO_TCP, IPPROTO_UDP, PORT_ALLOW_ENTRIES, PORT_GROUP_MASK, PORT_KEY_BITS, PORT_RANGES_ANY,
    PORT_RANGES_MARK, PortAllowKeyV4, PortAllowKeyV6, map_name, port_key_v4, port_key_v6,
};

use super::{
    Datapath, Result,
    tables::{TrieEntries, add_entries, remove_entries, restore_trie, trie_entries},
};
use crate::config::Protocol;

/// What the per-port tries and marks are to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges {
    /// (protocol, NodePort) → its Service's `loadBalancerSourceRanges` (ports without ranges
    /// are not listed).
    pub ports: BTreeMap<(Protocol, u16), Vec<IpNet>>,
    /// Sources every marked port accepts beside its own ranges.
    pub any: Vec<IpNet>,
}

/// What [`Datapath::apply_port_ranges`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRangesApplied {
    /// Ports with their own ranges, marked in the port tables (a port no group watches is
    /// counted but its mark waits until a group watches it).
    pub ports: usize,
    /// Entries in each trie.
    pub entries_v4: usize,
    pub entries_v6: usize,
    /// Ports whose ranges did not fit in the tries beside the others (or all of them, when
    /// the shared sources alone do not fit): left unmarked, so their ranges are not enforced.
    pub not_enforced: usize,
    /// Entries all the ranges want in each trie: the shared sources and every port's.
    pub wanted_v4: usize,
    pub wanted_v6: usize,
    /// The shared sources (`cluster.node_port_also_allow`) alone did not fit in a trie: no
    /// port is marked.
    pub shared_full: bool,
}

/// Entries and marks computed from a [`PortRanges`], checked to fit.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PortPlan {
    pub(super) v4: TrieEntries<PortAllowKeyV4>,
    pub(super) v6: TrieEntries<PortAllowKeyV6>,
    /// Marked ports per protocol (0 TCP, 1 UDP).
    pub(super) marks: [BTreeSet<u16>; 2],
    pub(super) applied: PortRangesApplied,
}

fn proto_byte(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    }
}

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

/// The entries of `nets` under (`proto`, `port`), split by family.
fn entries(
    proto: u8,
    port: u16,
    nets: &[IpNet],
) -> (TrieEntries<PortAllowKeyV4>, TrieEntries<PortAllowKeyV6>) {
    let (mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new());
    for net in nets {
        match net.trunc() {
            IpNet::V4(n) => {
                v4.insert((
                    PORT_KEY_BITS + u32::from(n.prefix_len()),
                    port_key_v4(proto, port, n.network().octets()),
                ));
            }
            IpNet::V6(n) => {
                v6.insert((
                    PORT_KEY_BITS + u32::from(n.prefix_len()),
                    port_key_v6(proto, port, &n.network().octets()),
                ));
            }
        }
    }
    (v4, v6)
}

/// The plan for `want` in tries of `max` entries each: the shared entries first, then each
/// port in (protocol, port) order while its entries fit; a port that does not fit is left out
/// whole and counted. When the shared entries alone do not fit, nothing: every port is left
/// out (see the module doc).
pub(super) fn plan(want: &PortRanges, max: u32) -> PortPlan {
    let max = max as usize;
    let (mut v4, mut v6) = entries(PORT_RANGES_ANY, 0, &want.any);
    let ports: Vec<_> = want
        .ports
        .iter()
        .filter(|(_, nets)| !nets.is_empty())
        .map(|((proto, port), nets)| (*proto, *port, entries(proto_byte(*proto), *port, nets)))
        .collect();
    let mut applied = PortRangesApplied {
        wanted_v4: v4.len() + ports.iter().map(|(_, _, (p4, _))| p4.len()).sum::<usize>(),
        wanted_v6: v6.len() + ports.iter().map(|(_, _, (_, p6))| p6.len()).sum::<usize>(),
        ..PortRangesApplied::default()
    };
    let mut marks: [BTreeSet<u16>; 2] = Default::default();
    if v4.len() > max || v6.len() > max {
        applied.shared_full = true;
        applied.not_enforced = ports.len();
        return PortPlan {
            v4: BTreeSet::new(),
            v6: BTreeSet::new(),
            marks,
            applied,
        };
    }
    for (proto, port, (p4, p6)) in ports {
        if v4.len() + p4.len() > max || v6.len() + p6.len() > max {
            applied.not_enforced += 1;
            continue;
        }
        v4.extend(p4);
        v6.extend(p6);
        marks[proto_index(proto)].insert(port);
        applied.ports += 1;
    }
    applied.entries_v4 = v4.len();
    applied.entries_v6 = v6.len();
    PortPlan {
        v4,
        v6,
        marks,
        applied,
    }
}

/// `table` (port → raw entry) with the marks of `marks` on the ports a group watches, and no
/// other mark.
pub(super) fn with_marks(table: &[u8], marks: &BTreeSet<u16>) -> Vec<u8> {
    let mut out: Vec<u8> = table.iter().map(|g| g & PORT_GROUP_MASK).collect();
    for &port in marks {
        if let Some(g) = out.get_mut(usize::from(port))
            && *g != 0
        {
            *g |= PORT_RANGES_MARK;
        }
    }
    out
}

impl Datapath {
    /// Writes the per-port source ranges and marks for `want`, in place and without a
    /// moment where a source allowed before and after is flagged (see the module doc).
    /// Nothing is written (`None`) when `want` is what was applied last. Ports that do not fit
    /// are left unmarked and counted in [`PortRangesApplied::not_enforced`]; all of them when
    /// the shared sources alone do not fit ([`PortRangesApplied::shared_full`]).
    ///
    /// # Errors
    ///
    /// A map write failed (counted in [`Datapath::port_ranges_failures`]). The previous ranges
    /// are put back, best effort: put back in full, they stay what
    /// [`Datapath::port_ranges_applied`] reports; otherwise it reports nothing until a write
    /// succeeds.
    pub fn apply_port_ranges(&mut self, want: &PortRanges) -> Result<Option<PortRangesApplied>> {
        if let Some((last, _)) = &self.port_ranges
            && last == want
        {
            return Ok(None);
        }
        let plan = plan(want, PORT_ALLOW_ENTRIES);
        let have_v4 = trie_entries(&self.port_allow_v4);
        let have_v6 = trie_entries(&self.port_allow_v6);
        let old_tables = [self.port_table(0)?, self.port_table(1)?];
        let old_marks = self.port_marks.clone();
        if let Err(e) = self.write_port_plan(&plan, &have_v4, &have_v6, &old_tables) {
            self.port_ranges_failures += 1;
            self.port_marks = old_marks;
            let undo = [
                self.set_port_table(0, &old_tables[0]),
                self.set_port_table(1, &old_tables[1]),
                restore_trie(&mut self.port_allow_v4, &have_v4, map_name::PORT_ALLOW_V4),
                restore_trie(&mut self.port_allow_v6, &have_v6, map_name::PORT_ALLOW_V6),
            ];
            let mut undone = true;
            for u in undo.into_iter().filter_map(Result::err) {
                undone = false;
                tracing::error!(error = %u, "undoing per-port source ranges that could not be written in full");
            }
            // Put back in full, the maps hold what was applied before, and say so; otherwise
            // what they hold is not known (no figures), and the next call writes it all.
            if !undone {
                self.port_ranges = None;
            }
            return Err(e);
        }
        self.port_ranges = Some((want.clone(), plan.applied));
        Ok(Some(plan.applied))
    }

    fn write_port_plan(
        &mut self,
        plan: &PortPlan,
        have_v4: &TrieEntries<PortAllowKeyV4>,
        have_v6: &TrieEntries<PortAllowKeyV6>,
        old_tables: &[Vec<u8>; 2],
    ) -> Result<()> {
        let max = PORT_ALLOW_ENTRIES as usize;
        let beside_v4 = have_v4.union(&plan.v4).count() <= max;
        let beside_v6 = have_v6.union(&plan.v6).count() <= max;
        // 1. New entries in (stale ones out first where both do not fit).
        if !beside_v4 {
            remove_entries(
                &mut self.port_allow_v4,
                &plan.v4,
                have_v4,
                map_name::PORT_ALLOW_V4,
            )?;
        }
        if !beside_v6 {
            remove_entries(
                &mut self.port_allow_v6,
                &plan.v6,
                have_v6,
                map_name::PORT_ALLOW_V6,
            )?;
        }
        add_entries(
            &mut self.port_allow_v4,
            &plan.v4,
            have_v4,
            map_name::PORT_ALLOW_V4,
        )?;
        add_entries(
            &mut self.port_allow_v6,
            &plan.v6,
            have_v6,
            map_name::PORT_ALLOW_V6,
        )?;
        // 2. The marks: set on the new ports, cleared on the ports that lost their ranges.
        self.port_marks = plan.marks.clone();
        for (i, old) in old_tables.iter().enumerate() {
            let new = with_marks(old, &self.port_marks[i]);
            self.set_port_table(i, &new)?;
        }
        // 3. Stale entries out.
        if beside_v4 {
            remove_entries(
                &mut self.port_allow_v4,
                &plan.v4,
                have_v4,
                map_name::PORT_ALLOW_V4,
            )?;
        }
        if beside_v6 {
            remove_entries(
                &mut self.port_allow_v6,
                &plan.v6,
                have_v6,
                map_name::PORT_ALLOW_V6,
            )?;
        }
        Ok(())
    }

    /// Puts the marks of `self.port_marks` on `table` (port table `i`, 0 TCP, 1 UDP, as a
    /// config computes it): a reload keeps the ports' own ranges in force.
    pub(super) fn mark_ports(&self, table: &mut [u8], i: usize) {
        for &port in &self.port_marks[i] {
            if let Some(g) = table.get_mut(usize::from(port))
                && *g & PORT_GROUP_MASK != 0
            {
                *g |= PORT_RANGES_MARK;
            }
        }
    }

    /// Takes the marks an adopted port table carries as this run's, so that a restart keeps
    /// the ports' ranges in force until the cluster's next snapshot rewrites them.
    pub(super) fn adopt_port_marks(&mut self) -> Result<()> {
        for i in 0..2 {
            let table = self.port_table(i)?;
            self.port_marks[i] = (0u16..=u16::MAX)
                .zip(table.iter())
                .filter(|(_, g)| *g & PORT_RANGES_MARK != 0)
                .map(|(port, _)| port)
                .collect();
        }
        Ok(())
    }

    /// What the last [`Datapath::apply_port_ranges`] wrote (`None` before the first, and
    /// after a write that failed).
    pub fn port_ranges_applied(&self) -> Option<PortRangesApplied> {
        self.port_ranges.as_ref().map(|(_, applied)| *applied)
    }

    /// Calls of [`Datapath::apply_port_ranges`] that failed since the data path was loaded.
    pub fn port_ranges_failures(&self) -> u64 {
        self.port_ranges_failures
    }

    /// The ports marked now, per protocol (0 TCP, 1 UDP).
    pub fn marked_ports(&self) -> [BTreeSet<u16>; 2] {
        self.port_marks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    /// `n` Services, each with `k` ranges on one TCP NodePort from 30000 (and a UDP one for
    /// every tenth), as the cluster index gives them.
    fn services(n: u16, k: u8) -> PortRanges {
        let mut ports = BTreeMap::new();
        for i in 0..n {
            let ranges: Vec<IpNet> = (0..k)
                .map(|j| {
                    let [a, b] = i.to_be_bytes();
                    if j % 2 == 0 {
                        IpNet::V4(ipnet::Ipv4Net::new([203, a, b, j].into(), 32).expect("v4"))
                    } else {
                        IpNet::V6(
                            ipnet::Ipv6Net::new(
                                [
                                    0x2001,
                                    0xdb8,
                                    u16::from(a),
                                    u16::from(b),
                                    u16::from(j),
                                    0,
                                    0,
                                    0,
                                ]
                                .into(),
                                80,
                            )
                            .expect("v6"),
                        )
                    }
                })
                .collect();
            ports.insert((Protocol::Tcp, 30_000 + i), ranges.clone());
            if i % 10 == 0 {
                ports.insert((Protocol::Udp, 30_000 + i), ranges);
            }
        }
        PortRanges {
            ports,
            any: vec![net("127.0.0.0/8"), net("::1/128"), net("198.51.100.0/24")],
        }
    }

    #[test]
    fn five_hundred_services_with_sixteen_ranges_each_all_fit() {
        let want = services(500, 16);
        let p = plan(&want, PORT_ALLOW_ENTRIES);
        assert_eq!(p.applied.not_enforced, 0);
        assert!(!p.applied.shared_full);
        assert_eq!(
            (p.applied.wanted_v4, p.applied.wanted_v6),
            (p.applied.entries_v4, p.applied.entries_v6),
            "everything fits: all that is wanted is in"
        );
        assert_eq!(p.applied.ports, 550);
        // 8 IPv4 and 8 IPv6 ranges per port, plus the shared ones.
        assert_eq!(p.applied.entries_v4, 550 * 8 + 2);
        assert_eq!(p.applied.entries_v6, 550 * 8 + 1);
        assert_eq!((p.marks[0].len(), p.marks[1].len()), (500, 50));
        assert!(p.marks[0].contains(&30_499) && p.marks[1].contains(&30_490));
        // A port's entry holds protocol, port (network order) and the network, host bits off.
        let key = port_key_v4(IPPROTO_TCP, 30_001, [203, 0, 1, 2]);
        assert!(p.v4.contains(&(PORT_KEY_BITS + 32, key)));
        let any = port_key_v4(PORT_RANGES_ANY, 0, [198, 51, 100, 0]);
        assert!(p.v4.contains(&(PORT_KEY_BITS + 24, any)));
    }

    #[test]
    fn ports_past_the_table_are_left_unmarked_and_counted() {
        let want = services(500, 16);
        // Room for the shared entries and 100 ports of 8 entries per family.
        let p = plan(&want, 3 + 100 * 8);
        assert_eq!(p.applied.ports, 100);
        assert_eq!(p.applied.not_enforced, 450);
        assert!(!p.applied.shared_full);
        assert_eq!(
            (p.applied.wanted_v4, p.applied.wanted_v6),
            (550 * 8 + 2, 550 * 8 + 1),
            "what all the ranges want, whatever fits"
        );
        assert!(p.applied.entries_v4 <= 803 && p.applied.entries_v6 <= 803);
        // Every marked port has all its entries: none is half in.
        for port in &p.marks[0] {
            let n = p
                .v4
                .iter()
                .filter(|(_, k)| k[0] == IPPROTO_TCP && u16::from_be_bytes([k[1], k[2]]) == *port)
                .count();
            assert_eq!(n, 8, "port {port}");
        }
    }

    /// The shared sources alone do not fit: no port is marked and the tables are to be
    /// emptied (every port fails open, counted), rather than keeping stale ranges in force.
    #[test]
    fn shared_sources_that_do_not_fit_leave_every_port_unmarked() {
        let want = services(500, 16);
        let p = plan(&want, 1);
        assert!(p.applied.shared_full);
        assert_eq!((p.applied.ports, p.applied.not_enforced), (0, 550));
        assert_eq!(
            (p.applied.entries_v4, p.applied.entries_v6),
            (0, 0),
            "nothing in the tries"
        );
        assert!(p.v4.is_empty() && p.v6.is_empty());
        assert!(p.marks.iter().all(BTreeSet::is_empty));
        assert_eq!(
            (p.applied.wanted_v4, p.applied.wanted_v6),
            (550 * 8 + 2, 550 * 8 + 1)
        );
    }

    #[test]
    fn services_without_ranges_mark_nothing() {
        let mut want = services(3, 2);
        want.ports.insert((Protocol::Tcp, 31_000), Vec::new());
        let p = plan(&want, PORT_ALLOW_ENTRIES);
        assert!(!p.marks[0].contains(&31_000));
        assert_eq!(p.applied.ports, 4);
    }

    #[test]
    fn marks_go_only_on_watched_ports_and_leave_the_group_id() {
        let mut table = vec![0u8; 8];
        table[2] = 5;
        table[3] = 6 | PORT_RANGES_MARK;
        table[4] = 7 | PORT_RANGES_MARK;
        let marks = BTreeSet::from([1u16, 2, 4]);
        let t = with_marks(&table, &marks);
        assert_eq!(t[1], 0, "an unwatched port stays unwatched");
        assert_eq!(t[2], 5 | PORT_RANGES_MARK);
        assert_eq!(t[3], 6, "a mark no longer wanted is cleared");
        assert_eq!(t[4], 7 | PORT_RANGES_MARK);
    }
}
