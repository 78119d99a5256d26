//! Per-port source ranges (NodePorts whose Service sets `loadBalancerSourceRanges`): on a
//! marked port a source is allowed only when its group allows it and the port's ranges (or
//! the ranges every marked port accepts) do; unmarked ports of the same group are unaffected;
//! the verdict cache, which caches per group, never carries one port's verdict to another.
//! The ranges hold on every path that decides a source's verdict for a port: the main
//! ingress path, first fragments (IPv4 ones cut inside the transport header take a path of
//! their own) and egress's acceptances nobody saw asked for (NM-1030).

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use node_monitor::{config::Protocol, datapath::PortRanges};
use node_monitor_common::{
    ACTION_DROPPED, ACTION_WOULD_DROP, Addr, EVENT_UNSEEN, PORT_RANGES_MARK, reason,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    evasion::{first_fragment, fragment_event},
    expect::*,
};

matrix!(
    marked_port_flags_a_source_outside_its_ranges,
    unmarked_port_of_the_same_group_is_unaffected,
    the_ranges_every_marked_port_accepts,
    a_port_range_never_widens_the_group,
    verdict_cache_keeps_ports_apart,
    ranges_that_change_are_followed,
    drop_group_drops_outside_the_ranges,
    udp_node_ports_have_ranges_too,
);

progs!(
    shared_sources_that_do_not_fit_fail_open,
    first_fragment_outside_the_ranges_is_flagged,
    ipv6_first_fragment_outside_the_ranges_is_flagged,
);

/// Egress only: once per family.
mod unseen_acceptance_outside_the_ranges {
    use super::*;
    #[test]
    fn v4() {
        super::unseen_acceptance_outside_the_ranges(Fam::V4);
    }
    #[test]
    fn v6() {
        super::unseen_acceptance_outside_the_ranges(Fam::V6);
    }
}

/// Marked by the tests.
const MARKED: u16 = 30_001;
/// Same group, no ranges of its own.
const PLAIN: u16 = 30_002;

/// One NodePort group whose allowlist holds both the ALLOWED_* and the DENIED_* networks:
/// only the per-port ranges tell the two sources apart.
fn nodeport_harness(action: &str) -> Harness {
    Harness::yaml(&format!(
        "groups:\n  nodeport:\n    protocols: [tcp, udp]\n    ports: [\"30000-30010\"]\n    \
         allow: [\"203.0.113.0/24\", \"2001:db8:0:113::/64\", \"198.51.100.0/24\", \"2001:db8:0:100::/64\"]\n    \
         action: {action}\nsampling: {{ allowed_flows_one_in: 0 }}\n\
         limits: {{ flows: 4096, sources: 256, allow_entries: 64 }}\n"
    ))
}

fn host(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// `port`'s ranges: exactly `nets`; `any` for every marked port.
fn ranges(proto: Protocol, port: u16, nets: &[IpNet], any: &[IpNet]) -> PortRanges {
    PortRanges {
        ports: BTreeMap::from([((proto, port), nets.to_vec())]),
        any: any.to_vec(),
    }
}

fn apply(h: &mut Harness, want: &PortRanges) {
    h.dp.apply_port_ranges(want)
        .unwrap_or_else(|e| panic!("apply_port_ranges: {e}"))
        .expect("something to write");
}

/// Denied new connections of the `nodeport` group over `proto`.
fn flagged(h: &Harness, proto: Protocol) -> u64 {
    h.stat("nodeport", proto, D).new_conns
}

fn allowed(h: &Harness, proto: Protocol) -> u64 {
    h.stat("nodeport", proto, A).new_conns
}

fn marked_port_flags_a_source_outside_its_ranges(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    let marks = h.dp.marked_ports();
    assert!(
        marks[0].contains(&MARKED) && marks[1].is_empty(),
        "{marks:?}"
    );
    let inside = tcp(fam.allowed(), fam.node(), 40000, MARKED, SYN);
    let outside = tcp(fam.denied(), fam.node(), 40001, MARKED, SYN);
    run_expect(&h, prog, &inside, prog.pass(), "inside the ranges");
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 0), "inside");
    run_expect(&h, prog, &outside, prog.pass(), "outside, monitor");
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 1), "outside");
    let s = h.stat("nodeport", TCP, D);
    assert_eq!((s.would_drop, s.events), (1, 1), "flagged and sent: {s:?}");
    // (A multi-port group watches for sweeps, so allowed connections are events too.)
    let ev: Vec<_> = h.events().into_iter().filter(|e| e.verdict == D).collect();
    assert_eq!(ev.len(), 1, "one flagged event: {ev:?}");
    assert_eq!(
        (ev[0].dst_port, ev[0].action, ev[0].group),
        (MARKED, ACTION_WOULD_DROP, h.gid("nodeport"))
    );
    assert_all_invariants("marked port", &h);
}

fn unmarked_port_of_the_same_group_is_unaffected(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    for (i, src) in [fam.allowed(), fam.denied()].into_iter().enumerate() {
        let f = tcp(src, fam.node(), 40000 + i as u16, PLAIN, SYN);
        run_expect(&h, prog, &f, prog.pass(), "unmarked port");
    }
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (2, 0));
    // The mark is only on the marked port's entry: the port's group id stays what it was.
    let gid = h.gid("nodeport");
    let marks = h.dp.marked_ports();
    assert_eq!(marks[0].iter().copied().collect::<Vec<_>>(), [MARKED]);
    assert!(gid & PORT_RANGES_MARK == 0);
}

fn the_ranges_every_marked_port_accepts(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    // The denied source is in no port's ranges, but in those every marked port accepts.
    apply(
        &mut h,
        &ranges(TCP, MARKED, &[host(fam.allowed())], &[host(fam.denied())]),
    );
    let f = tcp(fam.denied(), fam.node(), 40000, MARKED, SYN);
    run_expect(&h, prog, &f, prog.pass(), "shared ranges");
    let g = tcp(fam.denied2(), fam.node(), 40001, MARKED, SYN);
    run_expect(&h, prog, &g, prog.pass(), "in neither");
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 1));
}

fn a_port_range_never_widens_the_group(fam: Fam, prog: Prog) {
    // A group that allows only ALLOWED_*; the port's ranges name a source outside it.
    let mut h = Harness::yaml(
        "groups:\n  nodeport: { protocols: [tcp], ports: [\"30000-30010\"], allow: [\"203.0.113.0/24\", \"2001:db8:0:113::/64\"] }\n\
         sampling: { allowed_flows_one_in: 0 }\n",
    );
    let other = match fam {
        Fam::V4 => "198.51.100.0/24".parse::<IpNet>().expect("net"),
        Fam::V6 => "2001:db8:0:100::/64".parse::<IpNet>().expect("net"),
    };
    apply(&mut h, &ranges(TCP, MARKED, &[other], &[]));
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40000, MARKED, SYN),
        prog.pass(),
        "group denies",
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.allowed(), fam.node(), 40001, MARKED, SYN),
        prog.pass(),
        "port denies",
    );
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (0, 2));
}

fn verdict_cache_keeps_ports_apart(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    // The group's verdict for the denied source is cached as "allowed" by its packets to the
    // plain port, on this CPU; the marked port must still flag it, and the plain port must
    // still allow it after.
    for round in 0..3u16 {
        run_expect(
            &h,
            prog,
            &tcp(fam.denied(), fam.node(), 41000 + round, PLAIN, SYN),
            prog.pass(),
            "plain",
        );
        run_expect(
            &h,
            prog,
            &tcp(fam.denied(), fam.node(), 42000 + round, MARKED, SYN),
            prog.pass(),
            "marked",
        );
    }
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (3, 3));
}

fn ranges_that_change_are_followed(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    let syn = |src: IpAddr, sport: u16| tcp(src, fam.node(), sport, MARKED, SYN);
    run_expect(&h, prog, &syn(fam.denied(), 40000), prog.pass(), "before");
    assert_eq!(flagged(&h, TCP), 1);
    // The Service's ranges now hold the denied source instead.
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.denied())], &[]));
    run_expect(
        &h,
        prog,
        &syn(fam.denied(), 40001),
        prog.pass(),
        "after, now inside",
    );
    run_expect(
        &h,
        prog,
        &syn(fam.allowed(), 40002),
        prog.pass(),
        "after, now outside",
    );
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 2));
    // The NodePort moves: the old port is unmarked (and its entries gone), the new one marked.
    apply(&mut h, &ranges(TCP, PLAIN, &[host(fam.denied())], &[]));
    run_expect(
        &h,
        prog,
        &syn(fam.allowed(), 40003),
        prog.pass(),
        "old port, unmarked",
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.allowed(), fam.node(), 40004, PLAIN, SYN),
        prog.pass(),
        "new port, outside",
    );
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (2, 3));
    // The Service loses its ranges: nothing is marked, every group source is allowed.
    apply(&mut h, &PortRanges::default());
    assert!(
        h.dp.marked_ports()
            .iter()
            .all(std::collections::BTreeSet::is_empty)
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.allowed(), fam.node(), 40005, PLAIN, SYN),
        prog.pass(),
        "no ranges",
    );
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (3, 3));
    // The same ranges again write nothing.
    assert_eq!(
        h.dp.apply_port_ranges(&PortRanges::default())
            .expect("same"),
        None
    );
}

fn drop_group_drops_outside_the_ranges(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("drop");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    run_expect(
        &h,
        prog,
        &tcp(fam.allowed(), fam.node(), 40000, MARKED, SYN),
        prog.pass(),
        "inside",
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40001, MARKED, SYN),
        prog.drop(),
        "outside",
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40002, PLAIN, SYN),
        prog.pass(),
        "plain port",
    );
    let ev: Vec<_> = h.events().into_iter().filter(|e| e.verdict == D).collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].dst_port, ev[0].action), (MARKED, ACTION_DROPPED));
}

fn udp_node_ports_have_ranges_too(fam: Fam, prog: Prog) {
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(UDP, MARKED, &[host(fam.allowed())], &[]));
    run_expect(
        &h,
        prog,
        &udp(fam.allowed(), fam.node(), 40000, MARKED),
        prog.pass(),
        "udp inside",
    );
    run_expect(
        &h,
        prog,
        &udp(fam.denied(), fam.node(), 40001, MARKED),
        prog.pass(),
        "udp outside",
    );
    // The TCP port of the same number has no ranges.
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40002, MARKED, SYN),
        prog.pass(),
        "tcp same number",
    );
    assert_eq!((allowed(&h, UDP), flagged(&h, UDP)), (1, 1));
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 0));
}

/// A reload keeps the marks: the config's port tables are rewritten with them.
fn marks_survive_a_reload(prog: Prog) {
    let fam = Fam::V4;
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    let cfg = node_monitor::config::Config::from_yaml(
        "groups:\n  nodeport:\n    protocols: [tcp, udp]\n    ports: [\"30000-30020\"]\n    \
         allow: [\"203.0.113.0/24\", \"198.51.100.0/24\"]\nsampling: { allowed_flows_one_in: 0 }\n",
        "reload",
    )
    .expect("config");
    h.dp.apply_config(&cfg, &[]).expect("reload");
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40001, MARKED, SYN),
        prog.pass(),
        "after reload",
    );
    assert_eq!(flagged(&h, TCP), 1, "the marked port still flags");
}

progs!(marks_survive_a_reload);

/// A restarted daemon adopts the pinned per-port tries with the marks of the pinned port
/// tables: the ranges stay enforced across the restart, and the next rewrite starts from
/// what the pins hold (stale entries removed).
fn a_restart_adopts_the_pinned_ranges(prog: Prog) {
    use node_monitor::datapath::{Datapath, LoadOptions};
    let fam = Fam::V4;
    let pins = node_monitor_lab::BpfPinDir::new("portranges").expect("pin dir");
    let yaml = "groups:\n  nodeport: { protocols: [tcp], ports: [\"30000-30010\"], allow: [\"203.0.113.0/24\", \"198.51.100.0/24\"] }\n\
                sampling: { allowed_flows_one_in: 0 }\n";
    let cfg = node_monitor::config::Config::from_yaml(yaml, "pins").expect("config");
    let load = || {
        require_root();
        let mut dp = Datapath::load(
            &cfg,
            &[],
            &LoadOptions {
                pin_dir: Some(pins.path.clone()),
            },
        )
        .unwrap_or_else(|e| panic!("load: {e}"));
        let ring = dp.take_events().expect("ring");
        Harness { dp, ring }
    };
    let mut h = load();
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    drop(h);
    let mut h = load();
    assert_eq!(
        h.dp.marked_ports()[0].iter().copied().collect::<Vec<_>>(),
        [MARKED],
        "the mark is adopted"
    );
    let before = flagged(&h, TCP);
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40000, MARKED, SYN),
        prog.pass(),
        "after restart",
    );
    run_expect(
        &h,
        prog,
        &tcp(fam.allowed(), fam.node(), 40001, MARKED, SYN),
        prog.pass(),
        "inside",
    );
    assert_eq!(
        flagged(&h, TCP) - before,
        1,
        "still enforced after the restart"
    );
    // The first rewrite of the new run: the adopted entry goes, the new one comes.
    apply(&mut h, &ranges(TCP, PLAIN, &[host(fam.allowed())], &[]));
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40002, MARKED, SYN),
        prog.pass(),
        "unmarked now",
    );
    assert_eq!(flagged(&h, TCP) - before, 1);
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40003, PLAIN, SYN),
        prog.pass(),
        "newly marked",
    );
    assert_eq!(flagged(&h, TCP) - before, 2);
    drop(h);
    let _ = node_monitor::datapath::unpin_all(&pins.path);
}

progs!(a_restart_adopts_the_pinned_ranges);

/// An IPv4 first fragment cut inside its transport header (`hping3 -f`, `--mtu 8`) takes the
/// fragment path, not the main one, and the sender chooses which: a marked port's ranges
/// must hold there too. A source the group allows but the port's ranges do not is flagged;
/// one inside the ranges is not (its fragment is left to the parser's reasons, as an allowed
/// source's always is); the group's other ports are unaffected.
fn first_fragment_outside_the_ranges_is_flagged(prog: Prog) {
    let fam = Fam::V4;
    let mut h = nodeport_harness("monitor");
    let mut want_ranges = ranges(TCP, MARKED, &[host(fam.allowed())], &[]);
    want_ranges
        .ports
        .insert((UDP, MARKED), vec![host(fam.allowed())]);
    apply(&mut h, &want_ranges);
    let mut want = Vec::new();
    // 8 bytes: the flags are not in the fragment; 16: they are.
    for (i, n) in [8usize, 16].into_iter().enumerate() {
        let i = i as u16;
        let inside = tcp(fam.allowed(), fam.node(), 40000 + i, MARKED, SYN);
        let outside = tcp(fam.denied(), fam.node(), 40010 + i, MARKED, SYN);
        let plain = tcp(fam.denied(), fam.node(), 40020 + i, PLAIN, SYN);
        for (f, ctx) in [
            (&inside, "inside"),
            (&outside, "outside"),
            (&plain, "plain"),
        ] {
            assert_eq!(
                h.run(prog, &first_fragment(f, n)),
                prog.pass(),
                "{ctx}: first fragment of {n} TCP bytes"
            );
        }
        want.push(fragment_event(
            &h,
            prog,
            &outside,
            n,
            "nodeport",
            ACTION_WOULD_DROP,
        ));
    }
    // UDP: 4 bytes, the ports and no more.
    let dg_inside = udp(fam.allowed(), fam.node(), 40030, MARKED);
    let dg_outside = udp(fam.denied(), fam.node(), 40031, MARKED);
    for f in [&dg_inside, &dg_outside] {
        assert_eq!(h.run(prog, &first_fragment(f, 4)), prog.pass(), "UDP");
    }
    want.push(fragment_event(
        &h,
        prog,
        &dg_outside,
        4,
        "nodeport",
        ACTION_WOULD_DROP,
    ));
    assert_events("first fragments", &h.events(), &want);
    assert_eq!(
        (flagged(&h, TCP), flagged(&h, UDP)),
        (2, 1),
        "only the fragments from outside the ranges are flagged"
    );
    assert_eq!((allowed(&h, TCP), allowed(&h, UDP)), (0, 0));
    let s = h.stat("nodeport", TCP, D);
    assert_eq!((s.packets, s.would_drop, s.events), (2, 2, 2), "{s:?}");
    assert_all_invariants("first fragments", &h);
}

/// An IPv6 first fragment carries the whole transport header (the kernel drops one that cuts
/// it, RFC 7112), so the main path reads it behind its Fragment header: the ranges apply.
fn ipv6_first_fragment_outside_the_ranges_is_flagged(prog: Prog) {
    let fam = Fam::V6;
    let mut h = nodeport_harness("monitor");
    apply(&mut h, &ranges(TCP, MARKED, &[host(fam.allowed())], &[]));
    let frag = ExtHeader::Fragment {
        offset_units: 0,
        more: true,
    };
    let inside = tcp(fam.allowed(), fam.node(), 40000, MARKED, SYN).ipv6_ext(&[frag]);
    let outside = tcp(fam.denied(), fam.node(), 40001, MARKED, SYN).ipv6_ext(&[frag]);
    run_expect(&h, prog, &inside, prog.pass(), "inside");
    run_expect(&h, prog, &outside, prog.pass(), "outside");
    assert_eq!((allowed(&h, TCP), flagged(&h, TCP)), (1, 1));
    let ev: Vec<_> = h.events().into_iter().filter(|e| e.verdict == D).collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].src_addr, ev[0].dst_port),
        (Addr::from_ip(fam.denied()), MARKED)
    );
    assert_all_invariants("IPv6 first fragments", &h);
}

/// Egress's last line of defence (NM-1030): the node's acceptance (SYN-ACK, UDP reply) from a
/// marked port to a peer that ingress never saw ask is judged by the port's ranges too. A
/// peer the group allows but the ranges do not is reported (and the answer dropped in a drop
/// group); a peer inside the ranges, or on an unmarked port of the group, is not.
fn unseen_acceptance_outside_the_ranges(fam: Fam) {
    for action in ["monitor", "drop"] {
        let mut h = nodeport_harness(action);
        let mut want_ranges = ranges(TCP, MARKED, &[host(fam.allowed())], &[]);
        want_ranges
            .ports
            .insert((UDP, MARKED), vec![host(fam.allowed())]);
        apply(&mut h, &want_ranges);
        let outside_verdict = if action == "drop" {
            TC_ACT_SHOT
        } else {
            TC_ACT_OK
        };
        let synack =
            |peer: IpAddr, pport: u16, port: u16| tcp(fam.node(), peer, port, pport, SYN | ACK);
        let cases = [
            (synack(fam.allowed(), 40000, MARKED), TC_ACT_OK, "inside"),
            (
                synack(fam.denied(), 40001, MARKED),
                outside_verdict,
                "outside",
            ),
            (synack(fam.denied(), 40002, PLAIN), TC_ACT_OK, "plain port"),
            (
                udp(fam.node(), fam.allowed(), MARKED, 40003),
                TC_ACT_OK,
                "UDP inside",
            ),
            (
                udp(fam.node(), fam.denied(), MARKED, 40004),
                outside_verdict,
                "UDP outside",
            ),
        ];
        for (f, verdict, ctx) in &cases {
            run_expect(&h, Prog::TcEgress, f, *verdict, &format!("{action}: {ctx}"));
        }
        let evs = h.events();
        let got: Vec<_> = evs
            .iter()
            .map(|e| (e.kind, e.src_addr, e.src_port, e.dst_port, e.verdict))
            .collect();
        let denied = Addr::from_ip(fam.denied());
        assert_eq!(
            got,
            [
                (EVENT_UNSEEN, denied, 40001, MARKED, D),
                (EVENT_UNSEEN, denied, 40004, MARKED, D),
            ],
            "{action}: {evs:#?}"
        );
        let mut want_reasons = vec![(reason::UNSEEN_ACCEPTED, 2)];
        if action == "drop" {
            want_reasons.push((reason::UNSEEN_DROPPED, 2));
        }
        h.assert_reasons(action, &want_reasons);
    }
}

/// When the sources every marked port accepts do not fit in a per-port table on their own, no
/// port stays marked: the ranges applied before are stale, and a marked port without the
/// shared sources would flag the cluster's own traffic. Every port fails open (its group's
/// allowlist still holds), counted as not enforced, and the tables are emptied; once the
/// shared sources fit again, the ranges are enforced again.
fn shared_sources_that_do_not_fit_fail_open(prog: Prog) {
    let fam = Fam::V4;
    let mut h = nodeport_harness("monitor");
    let fits = ranges(TCP, MARKED, &[host(fam.allowed())], &[]);
    apply(&mut h, &fits);
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40000, MARKED, SYN),
        prog.pass(),
        "enforced",
    );
    assert_eq!(flagged(&h, TCP), 1);
    // One more shared source than a table holds (IPv6 /128s: map keys only, no traffic).
    let capacity = node_monitor_common::PORT_ALLOW_ENTRIES;
    let any: Vec<IpNet> = (0..=capacity)
        .map(|i| {
            let [a, b, c, d] = i.to_be_bytes();
            let addr = std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xffff,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            );
            IpNet::from(IpAddr::from(addr))
        })
        .collect();
    let too_many = PortRanges {
        any,
        ..fits.clone()
    };
    let applied =
        h.dp.apply_port_ranges(&too_many)
            .expect("not an error: every port fails open")
            .expect("written");
    assert!(applied.shared_full, "{applied:?}");
    assert_eq!((applied.ports, applied.not_enforced), (0, 1), "{applied:?}");
    assert_eq!(
        (applied.wanted_v4, applied.wanted_v6),
        (1, capacity as usize + 1),
        "{applied:?}"
    );
    assert_eq!(h.dp.port_ranges_applied(), Some(applied));
    assert!(
        h.dp.marked_ports()
            .iter()
            .all(std::collections::BTreeSet::is_empty),
        "no port stays marked"
    );
    assert_eq!((applied.entries_v4, applied.entries_v6), (0, 0));
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40001, MARKED, SYN),
        prog.pass(),
        "fails open",
    );
    assert_eq!(
        (allowed(&h, TCP), flagged(&h, TCP)),
        (1, 1),
        "the group allows it, the port's ranges no longer apply"
    );
    // The shared sources fit again: the ranges hold again.
    let applied =
        h.dp.apply_port_ranges(&fits)
            .expect("apply")
            .expect("written");
    assert_eq!((applied.ports, applied.not_enforced), (1, 0));
    assert!(!applied.shared_full);
    run_expect(
        &h,
        prog,
        &tcp(fam.denied(), fam.node(), 40002, MARKED, SYN),
        prog.pass(),
        "enforced again",
    );
    assert_eq!(flagged(&h, TCP), 2);
}

/// A write the kernel refuses (the IPv6 table frozen): the call fails and is counted, what
/// was applied before is put back and still reported, and it still holds on the wire; each
/// later try fails and is counted again, and going back to the ranges in force writes
/// nothing.
#[test]
fn a_write_that_fails_keeps_the_ranges_before_it() {
    let (fam, prog) = (Fam::V4, Prog::Xdp);
    let mut h = nodeport_harness("monitor");
    let before = ranges(TCP, MARKED, &[host(fam.allowed())], &[]);
    apply(&mut h, &before);
    let applied = h.dp.port_ranges_applied().expect("applied");
    assert_eq!(h.dp.port_ranges_failures(), 0);
    h.dp.freeze_port_allow(true).expect("freeze the IPv6 table");
    // The same port also accepts an IPv6 range: the IPv6 write is refused.
    let with_v6 = ranges(
        TCP,
        MARKED,
        &[host(fam.allowed()), host(Fam::V6.allowed())],
        &[],
    );
    let e = h.dp.apply_port_ranges(&with_v6).expect_err("a frozen map");
    assert_eq!(h.dp.port_ranges_failures(), 1, "{e}");
    assert_eq!(
        h.dp.port_ranges_applied(),
        Some(applied),
        "the ranges put back are still reported"
    );
    assert_eq!(h.dp.marked_ports()[0], [MARKED].into());
    let syn = |src: IpAddr, sport: u16| tcp(src, fam.node(), sport, MARKED, SYN);
    run_expect(&h, prog, &syn(fam.denied(), 40000), prog.pass(), "denied");
    run_expect(&h, prog, &syn(fam.allowed(), 40001), prog.pass(), "allowed");
    assert_eq!(
        (allowed(&h, TCP), flagged(&h, TCP)),
        (1, 1),
        "the ranges before the failed write still hold"
    );
    assert!(h.dp.apply_port_ranges(&with_v6).is_err());
    assert_eq!(h.dp.port_ranges_failures(), 2);
    assert_eq!(
        h.dp.apply_port_ranges(&before).expect("nothing to write"),
        None
    );
}
