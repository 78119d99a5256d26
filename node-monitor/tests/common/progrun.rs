//! Helpers for the BPF_PROG_TEST_RUN tier (tests/datapath/): load a fresh, unpinned
//! data path, run crafted frames through one of its programs, and read back exact map
//! contents and ring-buffer events.
//!
//! Every helper panics with context on failure: these are test helpers.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use ipnet::IpNet;
use node_monitor::{
    config::{Config, Protocol},
    datapath::{Datapath, LoadOptions},
};
use node_monitor_common::{
    Addr, Event, FAMILY_V4, FAMILY_V6, FlowKey, FlowState, GroupStats, HOOK_TC_EGRESS,
    HOOK_TC_INGRESS, HOOK_XDP, reason,
};

use super::packets::{
    ALLOWED_V4, ALLOWED_V6, ALLOWED2_V4, ALLOWED2_V6, DENIED_V4, DENIED_V6, ETH_HLEN, NODE_V4,
    NODE_V6,
};

/// XDP return codes.
pub(crate) const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;
/// tc return codes.
pub(crate) const TC_ACT_OK: u32 = 0;
pub(crate) const TC_ACT_SHOT: u32 = 2;

/// A second denied source (its own token bucket), per family.
pub(crate) const DENIED2_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 78);
pub(crate) const DENIED2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 0x78);

/// Address family, to write each case once for IPv4 and IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fam {
    V4,
    V6,
}

impl Fam {
    pub(crate) const ALL: [Fam; 2] = [Fam::V4, Fam::V6];

    pub(crate) fn allowed(self) -> IpAddr {
        match self {
            Fam::V4 => ALLOWED_V4.into(),
            Fam::V6 => ALLOWED_V6.into(),
        }
    }
    pub(crate) fn allowed2(self) -> IpAddr {
        match self {
            Fam::V4 => ALLOWED2_V4.into(),
            Fam::V6 => ALLOWED2_V6.into(),
        }
    }
    pub(crate) fn denied(self) -> IpAddr {
        match self {
            Fam::V4 => DENIED_V4.into(),
            Fam::V6 => DENIED_V6.into(),
        }
    }
    pub(crate) fn denied2(self) -> IpAddr {
        match self {
            Fam::V4 => DENIED2_V4.into(),
            Fam::V6 => DENIED2_V6.into(),
        }
    }
    pub(crate) fn node(self) -> IpAddr {
        match self {
            Fam::V4 => NODE_V4.into(),
            Fam::V6 => NODE_V6.into(),
        }
    }
    /// `FAMILY_V4` / `FAMILY_V6`.
    pub(crate) fn code(self) -> u8 {
        match self {
            Fam::V4 => FAMILY_V4,
            Fam::V6 => FAMILY_V6,
        }
    }
}

/// Which program a frame goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prog {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Prog {
    /// The two ingress programs, which must behave the same.
    pub(crate) const INGRESS: [Prog; 2] = [Prog::Xdp, Prog::TcIngress];

    pub(crate) fn pass(self) -> u32 {
        match self {
            Prog::Xdp => XDP_PASS,
            Prog::TcIngress | Prog::TcEgress => TC_ACT_OK,
        }
    }
    pub(crate) fn drop(self) -> u32 {
        match self {
            Prog::Xdp => XDP_DROP,
            Prog::TcIngress | Prog::TcEgress => TC_ACT_SHOT,
        }
    }
    /// `HOOK_*` as carried in events.
    pub(crate) fn hook(self) -> u8 {
        match self {
            Prog::Xdp => HOOK_XDP,
            Prog::TcIngress => HOOK_TC_INGRESS,
            Prog::TcEgress => HOOK_TC_EGRESS,
        }
    }
}

/// A flow key in ingress orientation.
pub(crate) fn flow_key(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src_addr: Addr::from_ip(src),
        dst_addr: Addr::from_ip(dst),
        src_port: sport,
        dst_port: dport,
        proto,
        family: if src.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 },
        _pad: 0,
    }
}

/// Fails loudly (never passes silently) when the tests cannot load BPF programs.
pub(crate) fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root/CAP_BPF (BPF_PROG_TEST_RUN on loaded programs); run them as root"
    );
}

/// The ifindex the kernel reports in test runs: the current netns' loopback device.
pub(crate) fn test_run_ifindex() -> u32 {
    // SAFETY: a valid NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert_ne!(idx, 0, "no loopback device in this network namespace");
    idx
}

/// A loaded, unpinned data path with its ring buffer.
pub(crate) struct Harness {
    pub(crate) dp: Datapath,
    pub(crate) ring: RingBuf<MapData>,
}

impl Harness {
    /// Loads `yaml` with no node subnets.
    pub(crate) fn yaml(yaml: &str) -> Harness {
        let cfg = Config::from_yaml(yaml, "test").unwrap_or_else(|e| panic!("test config: {e}"));
        Harness::load(&cfg, &[])
    }

    pub(crate) fn load(cfg: &Config, node_subnets: &[IpNet]) -> Harness {
        require_root();
        let mut dp = Datapath::load(cfg, node_subnets, &LoadOptions { pin_dir: None })
            .unwrap_or_else(|e| panic!("Datapath::load: {e} ({e:?})"));
        let ring = dp.take_events().expect("ring buffer already taken");
        Harness { dp, ring }
    }

    /// Runs `frame` once through `prog`; returns the program's return value.
    pub(crate) fn run(&self, prog: Prog, frame: &[u8]) -> u32 {
        self.try_run(prog, frame).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN {prog:?} on {} bytes: {e} ({e:?})",
                frame.len()
            )
        })
    }

    pub(crate) fn try_run(
        &self,
        prog: Prog,
        frame: &[u8],
    ) -> Result<u32, aya::programs::ProgramError> {
        // XDP wants data_out at least the frame size; tc may grow nothing here either.
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let r = match prog {
            Prog::Xdp => self.dp.xdp_program().expect("xdp program").test_run(opts)?,
            Prog::TcIngress => self
                .dp
                .tc_ingress_program()
                .expect("tc ingress program")
                .test_run(opts)?,
            Prog::TcEgress => self
                .dp
                .tc_egress_program()
                .expect("tc egress program")
                .test_run(opts)?,
        };
        Ok(r.return_value)
    }

    /// The shortest frame BPF_PROG_TEST_RUN accepts for `prog` on this kernel, probed with
    /// all-zero frames (EtherType 0: counted as not_ip when accepted). skb programs need at
    /// least an Ethernet header; current kernels refuse shorter XDP input too.
    pub(crate) fn min_test_run_len(&self, prog: Prog) -> usize {
        (0..=ETH_HLEN + 64)
            .find(|n| self.try_run(prog, &vec![0u8; *n]).is_ok())
            .unwrap_or_else(|| panic!("BPF_PROG_TEST_RUN refuses every frame for {prog:?}"))
    }

    /// Every event in the ring buffer now, in order.
    pub(crate) fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            let ev = node_monitor::record::decode(&item)
                .unwrap_or_else(|e| panic!("undecodable ring-buffer record: {e}"));
            out.push(ev);
        }
        out
    }

    /// GROUP_STATS for every configured (group, proto, verdict), summed over CPUs. Every read
    /// also checks the per-entry invariants, so every test that looks at counters checks them.
    #[track_caller]
    pub(crate) fn stats(&self) -> BTreeMap<(String, &'static str, u8), GroupStats> {
        let stats: BTreeMap<_, _> = self
            .dp
            .group_counters()
            .expect("group_counters")
            .into_iter()
            .map(|c| ((c.group, c.proto.name(), c.verdict), c.stats))
            .collect();
        for ((g, p, v), s) in &stats {
            assert_invariant(&format!("GROUP_STATS[{g}/{p}/verdict {v}]"), *v, s);
        }
        stats
    }

    /// The stats of one (group, proto, verdict).
    pub(crate) fn stat(&self, group: &str, proto: Protocol, verdict: u8) -> GroupStats {
        *self
            .stats()
            .get(&(group.to_owned(), proto.name(), verdict))
            .unwrap_or_else(|| panic!("no counters for {group}/{proto}/{verdict}"))
    }

    /// Asserts that the listed entries hold exactly these counters and every other entry is
    /// all zero.
    #[track_caller]
    pub(crate) fn assert_stats(&self, ctx: &str, want: &[(&str, Protocol, u8, GroupStats)]) {
        let have = self.stats();
        for (g, p, v, _) in want {
            assert!(
                have.contains_key(&((*g).to_owned(), p.name(), *v)),
                "{ctx}: group {g}/{p} not configured"
            );
        }
        for ((g, p, v), s) in &have {
            let expected = want
                .iter()
                .find(|(wg, wp, wv, _)| wg == g && wp.name() == *p && wv == v)
                .map(|w| w.3)
                .unwrap_or_default();
            assert_eq!(*s, expected, "{ctx}: GROUP_STATS[{g}/{p}/verdict {v}]");
        }
    }

    /// Asserts that no GROUP_STATS entry moved.
    #[track_caller]
    pub(crate) fn assert_stats_zero(&self, ctx: &str) {
        self.assert_stats(ctx, &[]);
    }

    pub(crate) fn reasons(&self) -> [u64; reason::COUNT as usize] {
        self.dp.reason_counters().expect("reason_counters")
    }

    /// Asserts REASONS holds exactly `want` (index, count) and zero elsewhere.
    #[track_caller]
    pub(crate) fn assert_reasons(&self, ctx: &str, want: &[(u32, u64)]) {
        let mut expected = [0u64; reason::COUNT as usize];
        for (i, n) in want {
            expected[*i as usize] += n;
        }
        assert_reasons_eq(ctx, &self.reasons(), &expected);
    }

    pub(crate) fn flow(&self, key: &FlowKey) -> Option<FlowState> {
        self.dp.flow(key)
    }

    pub(crate) fn gid(&self, name: &str) -> u8 {
        self.dp
            .group_ids()
            .id(name)
            .unwrap_or_else(|| panic!("no group id for {name}"))
    }
}

/// Compares reason arrays, naming the counters that differ.
#[track_caller]
pub(crate) fn assert_reasons_eq(
    ctx: &str,
    have: &[u64; reason::COUNT as usize],
    want: &[u64; reason::COUNT as usize],
) {
    if have != want {
        let diff: Vec<String> = (0..reason::COUNT as usize)
            .filter(|i| have[*i] != want[*i])
            .map(|i| format!("{}: have {} want {}", reason::NAMES[i], have[i], want[i]))
            .collect();
        panic!("{ctx}: REASONS differ: {}", diff.join(", "));
    }
}

/// GroupStats shorthand for expected counters: `S { events: 1, ..S::default() }`.
pub(crate) type S = GroupStats;

/// The two per-entry invariants of `GroupStats`.
#[track_caller]
pub(crate) fn assert_invariant(ctx: &str, verdict: u8, s: &GroupStats) {
    if verdict == node_monitor_common::VERDICT_DENIED {
        assert_eq!(
            s.sampled_out, 0,
            "{ctx}: denied entries never sample: {s:?}"
        );
        assert_eq!(
            s.new_conns,
            s.events + s.lost_rate_limited + s.lost_group_budget + s.lost_ringbuf_full,
            "{ctx}: denied invariant new_conns == events + lost_rate_limited + lost_group_budget + lost_ringbuf_full: {s:?}"
        );
    } else {
        assert_eq!(
            s.new_conns,
            s.events
                + s.sampled_out
                + s.lost_rate_limited
                + s.lost_group_budget
                + s.lost_ringbuf_full,
            "{ctx}: allowed invariant new_conns == events + sampled_out + lost_rate_limited + lost_group_budget + lost_ringbuf_full (budgets: sweep-watched groups): {s:?}"
        );
    }
}

/// Checks both invariants on every GROUP_STATS entry.
#[track_caller]
pub(crate) fn assert_all_invariants(ctx: &str, h: &Harness) {
    for ((g, p, v), s) in h.stats() {
        assert_invariant(&format!("{ctx} [{g}/{p}/{v}]"), v, &s);
    }
}

/// An event with the fields tests compare (ts_ns is checked separately: non-zero).
#[track_caller]
pub(crate) fn assert_event(ctx: &str, have: &Event, want: &Event) {
    assert_ne!(have.ts_ns, 0, "{ctx}: event ts_ns");
    let mut h = *have;
    h.ts_ns = 0;
    let mut w = *want;
    w.ts_ns = 0;
    assert_eq!(h, w, "{ctx}: event");
}
