//! Floods (issue 9): the node-wide event budget per group on top of the per-source one, no
//! flow-table entry for a denied source past a budget, and the flood summaries the data path
//! keeps instead of events: the HyperLogLog registers of the withheld sources, the
//! space-saving tables of the top sources and ports, and the node's answers per group.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_monitor_common::{
    ACTION_PASS, ACTION_WOULD_DROP, ANSWER_ACCEPTED, Addr, COMPLETES_REPORTED, COMPLETES_WITHHELD,
    EVENT_ANSWER, EVENT_FLAGGED, EVENT_SAMPLED, EVENT_UNSEEN, Event, FloodTop, FlowState,
    HLL_REGISTERS, IPPROTO_TCP as TCP_PROTO, IPPROTO_UDP as UDP_PROTO, TOKEN_SCALE, TOP_PORTS,
    TOP_SOURCES, TopPort, TopSource, hll_add, reason, source_hash, verdict_slot,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    group_budget_withholds_and_inserts_no_flow,
    source_budget_first_then_group_budget,
    a_spent_group_budget_is_asked_first,
    summary_registers_and_top_tables,
    allowed_sweep_traffic_spends_no_flagged_group_budget,
    handshake_completed_past_the_budgets,
    handshake_of_a_reported_acceptance,
    handshake_in_a_drop_group_never_completes,
    a_spent_budget_skips_the_flow_lookup,
    the_full_path_while_a_config_revokes,
    a_flood_leaves_the_verdict_cache_alone,
);

/// Egress only: once per family.
mod answers_counted_per_group {
    use super::*;
    #[test]
    fn v4() {
        super::answers_counted_per_group(Fam::V4);
    }
    #[test]
    fn v6() {
        super::answers_counted_per_group(Fam::V6);
    }
}

/// The `i`-th denied source of the kubelet group (outside its allowlist), per family.
fn denied_n(fam: Fam, i: u16) -> IpAddr {
    match fam {
        Fam::V4 => Ipv4Addr::new(198, 51, 100, 100 + i as u8).into(),
        Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 1, i).into(),
    }
}

fn syn(fam: Fam, src: IpAddr, sport: u16) -> Frame {
    tcp(src, fam.node(), sport, KUBELET, SYN)
}

fn knobs(events_per_sec: u32, events_per_group: u32) -> Knobs {
    Knobs {
        events_per_sec,
        events_per_group,
        ..Knobs::default()
    }
}

/// The registers a sketch holds after these sources (the data path's hash, in userspace).
fn registers_of(srcs: &[IpAddr]) -> Box<[u8; HLL_REGISTERS]> {
    let mut regs = Box::new([0u8; HLL_REGISTERS]);
    for s in srcs {
        hll_add(&mut regs, source_hash(&Addr::from_ip(*s)));
    }
    regs
}

/// A spoofed flood in miniature: 10 SYNs from 10 new sources, a group budget of 3 and no
/// per-source limit (every source is new, so per-source buckets would let all through). The
/// first 3 are reported; 7 are counted as `lost_group_budget` and get no flow-table entry.
/// An allowed connection after them is not under the flagged budget: reported, with its
/// entry.
fn group_budget_withholds_and_inserts_no_flow(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(0, 3));
    let mut want = Vec::new();
    let mut bytes = 0;
    for i in 0..10u16 {
        let f = syn(fam, denied_n(fam, i), 40000 + i);
        run_expect(&h, prog, &f, prog.pass(), "flood SYN");
        bytes += len(&f);
        if i < 3 {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let a = syn(fam, fam.allowed(), 41000);
    run_expect(&h, prog, &a, prog.pass(), "allowed SYN");
    want.push(sampled(&h, prog, &a, "kubelet"));
    let denied = S {
        packets: 10,
        bytes,
        new_conns: 10,
        would_drop: 10,
        events: 3,
        lost_group_budget: 7,
        ..S::default()
    };
    let allowed = S {
        packets: 1,
        bytes: len(&a),
        new_conns: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats(
        "group budget",
        &[("kubelet", TCP, D, denied), ("kubelet", TCP, A, allowed)],
    );
    assert_events("group budget", &h.events(), &want);
    for i in 0..10u16 {
        let key = flow_key(denied_n(fam, i), fam.node(), 40000 + i, KUBELET, TCP_PROTO);
        assert_eq!(
            h.flow(&key).is_some(),
            i < 3,
            "source {i}: only reported attempts get a flow entry"
        );
    }
    // Only the recorded flagged flows leave their tag for egress: the node's refusals of the
    // withheld attempts are never looked up in the flow table.
    for i in 0..10u16 {
        let key = flow_key(denied_n(fam, i), fam.node(), 40000 + i, KUBELET, TCP_PROTO);
        let (slot, tag) = h.dp.refusal_tag(&key).expect("REFUSAL_TAGS");
        assert_eq!(
            slot == tag,
            i < 3,
            "source {i}: slot {slot:#x}, tag {tag:#x}"
        );
    }
    let key = flow_key(fam.allowed(), fam.node(), 41000, KUBELET, TCP_PROTO);
    assert!(h.flow(&key).is_some(), "the allowed flow has its entry");
    let (slot, tag) = h.dp.refusal_tag(&key).expect("REFUSAL_TAGS");
    assert_ne!(slot, tag, "an allowed flow leaves no tag");
    // A withheld attempt has no entry: its SYN retransmit is a new connection again,
    // withheld again (no entry either).
    let again = syn(fam, denied_n(fam, 9), 40009);
    run_expect(&h, prog, &again, prog.pass(), "retransmit");
    let s = h.stat("kubelet", TCP, D);
    assert_eq!((s.new_conns, s.lost_group_budget), (11, 8), "{s:?}");
    assert!(
        h.flow(&flow_key(
            denied_n(fam, 9),
            fam.node(),
            40009,
            KUBELET,
            TCP_PROTO
        ))
        .is_none()
    );
    assert_all_invariants("group budget", &h);
}

/// The source's budget is taken first: what it withholds (`lost_rate_limited`) spends no
/// group token. Per source 2, per group 3: A sends 5 (2 reported, 3 rate limited), B's one
/// takes the group's third token, C's one finds the group budget spent.
fn source_budget_first_then_group_budget(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(2, 3));
    let (a, b, c) = (denied_n(fam, 1), denied_n(fam, 2), denied_n(fam, 3));
    let mut want = Vec::new();
    let mut bytes = 0;
    for (i, src) in [a, a, a, a, a, b, c].into_iter().enumerate() {
        let f = syn(fam, src, 42000 + i as u16);
        run_expect(&h, prog, &f, prog.pass(), "SYN");
        bytes += len(&f);
        if i < 2 || i == 5 {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let s = S {
        packets: 7,
        bytes,
        new_conns: 7,
        would_drop: 7,
        events: 3,
        lost_rate_limited: 3,
        lost_group_budget: 1,
        ..S::default()
    };
    h.assert_stats("source then group", &[("kubelet", TCP, D, s)]);
    assert_events("source then group", &h.events(), &want);
    // Rate-limited attempts insert no entry either.
    for (i, src) in [a, a, a, a, a, b, c].into_iter().enumerate() {
        let key = flow_key(src, fam.node(), 42000 + i as u16, KUBELET, TCP_PROTO);
        assert_eq!(h.flow(&key).is_some(), i < 2 || i == 5, "attempt {i}");
    }
    // The summary attributes the withheld attempts to their sources.
    let sketch = h.dp.flood_sketch(h.gid("kubelet")).unwrap();
    assert_eq!(sketch.top_sources.len(), 2, "{sketch:?}");
    assert_eq!(
        (
            sketch.top_sources[0].ip,
            sketch.top_sources[0].withheld,
            sketch.top_sources[0].rate_limited
        ),
        (a, 3, 3)
    );
    assert_eq!(
        (
            sketch.top_sources[1].ip,
            sketch.top_sources[1].withheld,
            sketch.top_sources[1].rate_limited
        ),
        (c, 1, 0)
    );
    assert_eq!(sketch.top_ports.len(), 1);
    assert_eq!(
        (sketch.top_ports[0].port, sketch.top_ports[0].withheld),
        (KUBELET, 4)
    );
    assert_eq!(sketch.distinct_sources, 2);
    assert_all_invariants("source then group", &h);
}

/// While the group's budget is spent, the source's is not asked: an attempt is withheld by
/// the group's budget even from a source whose own budget is spent too. Per source 2, per
/// group 3: A's two are reported, B's one takes the group's last token; then A's third (past
/// its own budget as well) and C's first are both counted under the group's budget.
fn a_spent_group_budget_is_asked_first(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(2, 3));
    let (a, b, c) = (denied_n(fam, 1), denied_n(fam, 2), denied_n(fam, 3));
    let mut want = Vec::new();
    for (i, src) in [a, a, b, a, c].into_iter().enumerate() {
        let f = syn(fam, src, 43000 + i as u16);
        run_expect(&h, prog, &f, prog.pass(), "SYN");
        if i < 3 {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let s = h.stat("kubelet", TCP, D);
    assert_eq!(
        (
            s.new_conns,
            s.events,
            s.lost_rate_limited,
            s.lost_group_budget
        ),
        (5, 3, 0, 2),
        "{s:?}"
    );
    assert_events("group first", &h.events(), &want);
    assert_all_invariants("group first", &h);
}

/// Keeps the calling thread on the CPU it runs on now, so that every test run lands in the
/// same per-CPU slot (restored on drop).
struct PinCpu(libc::cpu_set_t);

impl PinCpu {
    fn here() -> PinCpu {
        // SAFETY: plain libc calls on this thread with valid, zeroed cpu sets.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut old),
                0
            );
            let cpu = libc::sched_getcpu();
            assert!(cpu >= 0);
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            assert_eq!(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const one),
                0
            );
            PinCpu(old)
        }
    }
}

impl Drop for PinCpu {
    fn drop(&mut self) {
        // SAFETY: restores the set read in `here`.
        unsafe {
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const self.0);
        }
    }
}

/// Group budget 1: S0's attempt is reported, then S1 three times and S2..S9 once each are
/// withheld (11). The sketch's registers are exactly those of S1..S9 under the data path's
/// hash; the space-saving table of this CPU holds S1 (3), then S2..S8 (1 each) in the order
/// they came, until S9 takes over the first entry with the smallest count (S2's: count 2,
/// error 1); the port table holds the kubelet port with 11.
fn summary_registers_and_top_tables(fam: Fam, prog: Prog) {
    let h = harness_with(knobs(0, 1));
    let gid = h.gid("kubelet");
    let _pin = PinCpu::here();
    let mut order = vec![0u16, 1, 1, 1];
    order.extend(2..=9);
    for (i, s) in order.iter().enumerate() {
        let f = syn(fam, denied_n(fam, *s), 43000 + i as u16);
        run_expect(&h, prog, &f, prog.pass(), "SYN");
    }
    let s = h.stat("kubelet", TCP, D);
    assert_eq!((s.events, s.lost_group_budget), (1, 11), "{s:?}");

    let withheld: Vec<IpAddr> = (1..=9).map(|i| denied_n(fam, i)).collect();
    let have = h.dp.flood_registers(gid).unwrap();
    let want = registers_of(&withheld);
    let diff: Vec<(usize, u8, u8)> = (0..HLL_REGISTERS)
        .filter(|r| have[*r] != want[*r])
        .map(|r| (r, have[r], want[r]))
        .collect();
    assert!(diff.is_empty(), "registers (index, have, want): {diff:?}");
    assert_eq!(
        want.iter().filter(|r| **r != 0).count(),
        9,
        "9 sources, 9 registers (no collision among these)"
    );
    // The reported source is not in the sketch.
    assert_ne!(*have, *registers_of(&[denied_n(fam, 0)]));

    let tables: Vec<FloodTop> =
        h.dp.flood_tables(gid)
            .unwrap()
            .into_iter()
            .filter(|t| *t != FloodTop::default())
            .collect();
    assert_eq!(
        tables.len(),
        1,
        "one CPU's table holds everything: {tables:?}"
    );
    let src = |i: u16, count: u64, error: u64| TopSource {
        addr: Addr::from_ip(denied_n(fam, i)),
        count,
        error,
        rate_limited: 0,
        family: fam.code(),
        ..TopSource::default()
    };
    let mut want_src = vec![src(1, 3, 0), src(9, 2, 1)];
    want_src.extend((3..=8).map(|i| src(i, 1, 0)));
    assert_eq!(want_src.len(), TOP_SOURCES);
    assert_eq!(tables[0].sources.to_vec(), want_src);
    let mut want_ports = [TopPort::default(); TOP_PORTS];
    want_ports[0] = TopPort {
        port: KUBELET,
        count: 11,
        ..TopPort::default()
    };
    assert_eq!(tables[0].ports, want_ports);

    // The merged summary, as the flood alert reads it; then a reset empties it.
    let mut h = h;
    let sketch = h.dp.take_flood_sketch("kubelet").unwrap().unwrap();
    assert_eq!(sketch.distinct_sources, 9);
    // S9's entry holds 1 of its own and 1 inherited: it says nothing and is left out; the
    // others are exact.
    let listed: Vec<(IpAddr, u64, u64)> = sketch
        .top_sources
        .iter()
        .map(|t| (t.ip, t.withheld, t.error))
        .collect();
    let mut want_listed = vec![(denied_n(fam, 1), 3, 0)];
    let mut ones: Vec<(IpAddr, u64, u64)> = (3..=8).map(|i| (denied_n(fam, i), 1, 0)).collect();
    ones.sort();
    want_listed.extend(ones);
    assert_eq!(listed, want_listed);
    assert_eq!(*h.dp.flood_registers(gid).unwrap(), [0u8; HLL_REGISTERS]);
    assert!(
        h.dp.flood_tables(gid)
            .unwrap()
            .iter()
            .all(|t| *t == FloodTop::default())
    );
    assert_all_invariants("summary", &h);
}

/// The egress program counts the node's SYN-ACKs and RSTs from the kubelet port per group,
/// whether or not the attempt has a flow entry (a withheld one has none); other segments
/// and unwatched ports are not counted.
fn answers_counted_per_group(fam: Fam) {
    let h = harness_with(knobs(0, 1));
    let peer = denied_n(fam, 5);
    let out = |sport: u16, dport: u16, flags: u8| tcp(fam.node(), peer, sport, dport, flags);
    for f in [
        out(KUBELET, 50000, SYN | ACK),
        out(KUBELET, 50001, SYN | ACK),
        out(KUBELET, 50002, RST | ACK),
        out(KUBELET, 50003, ACK),
        out(UNWATCHED, 50004, SYN | ACK),
        out(STRICT, 50005, RST),
    ] {
        run_expect(&h, Prog::TcEgress, &f, TC_ACT_OK, "answer");
    }
    let answers = h.dp.flood_answers().unwrap();
    let k = answers["kubelet"];
    assert_eq!((k.accepted, k.refused), (2, 1), "kubelet: {k:?}");
    let s = answers["strict"];
    assert_eq!((s.accepted, s.refused), (0, 1), "strict: {s:?}");
    assert_eq!(
        answers["enforced"].accepted + answers["udp-svc"].accepted,
        0,
        "{answers:?}"
    );
    h.assert_stats_zero("egress counts no group stats");
}

/// A NodePort range open to everyone and sweep-watched, beside the kubelet, with a group
/// budget of 3 and no per-source limit.
fn nodeport_yaml() -> String {
    format!(
        r#"
groups:
  kubelet:
    protocols: [tcp]
    ports: ["{KUBELET}"]
    allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]
    action: monitor
  nodeport:
    protocols: [tcp, udp]
    ports: ["30000-32767"]
    allow: ["0.0.0.0/0", "::/0"]
    action: monitor
    detect_sweeps: true
sampling:
  allowed_flows_one_in: 0
limits:
  flows: 4096
  sources: 256
  allow_entries: 64
  events_per_source_per_second: 0
  events_per_group_per_second: 3
"#
    )
}

/// The group budget has a bucket for allowed events of its own: 10 allowed datagrams from
/// 10 sources to a sweep-watched NodePort spend the nodeport group's allowed budget (3
/// reported, 7 withheld, each still with its flow entry: allowed flows are never left out),
/// and neither that nor anything else spends a group's flagged budget: 3 kubelet attempts
/// from new sources are all reported.
fn allowed_sweep_traffic_spends_no_flagged_group_budget(fam: Fam, prog: Prog) {
    let mut h = Harness::yaml(&nodeport_yaml());
    let mut want = Vec::new();
    let mut np_bytes = 0;
    for i in 0..10u16 {
        let f = udp(denied_n(fam, i), fam.node(), 50000 + i, 30000);
        run_expect(&h, prog, &f, prog.pass(), "NodePort datagram");
        np_bytes += len(&f);
        if i < 3 {
            want.push(Event {
                group: h.gid("nodeport"),
                verdict: A,
                action: ACTION_PASS,
                ..event_for(EVENT_SAMPLED, prog, &f)
            });
        }
    }
    let mut k_bytes = 0;
    for i in 0..3u16 {
        let f = syn(fam, denied_n(fam, 20 + i), 44000 + i);
        run_expect(&h, prog, &f, prog.pass(), "kubelet SYN");
        k_bytes += len(&f);
        want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
    }
    let np = S {
        packets: 10,
        bytes: np_bytes,
        new_conns: 10,
        events: 3,
        lost_group_budget: 7,
        ..S::default()
    };
    let k = S {
        packets: 3,
        bytes: k_bytes,
        new_conns: 3,
        would_drop: 3,
        events: 3,
        ..S::default()
    };
    h.assert_stats(
        "allowed group budget apart",
        &[("nodeport", UDP, A, np), ("kubelet", TCP, D, k)],
    );
    assert_events("allowed group budget apart", &h.events(), &want);
    for i in 0..10u16 {
        let key = flow_key(denied_n(fam, i), fam.node(), 50000 + i, 30000, UDP_PROTO);
        assert!(
            h.flow(&key).is_some(),
            "allowed datagram {i} keeps its flow entry"
        );
    }
    assert_all_invariants("allowed group budget apart", &h);
}

/// A config of `n` TCP groups `g1..gn` on ports 20001.., with `last` as the name of the
/// last one, no allowlists.
fn many_groups(n: u16, last: &str) -> String {
    let mut y = String::from("groups:\n");
    for i in 1..=n {
        let name = if i == n {
            last.to_owned()
        } else {
            format!("g{i}")
        };
        y.push_str(&format!(
            "  {name}: {{ protocols: [tcp], ports: [\"{}\"], allow: [] }}\n",
            20000 + i
        ));
    }
    y.push_str("limits: { flows: 4096, sources: 256, allow_entries: 64 }\n");
    y
}

/// A group id handed out anew (every other id taken, so the id of the group a reload
/// removed) starts its answer counters from zero, like its group counters: the new group's
/// first flood alert never carries the old group's answers.
#[test]
fn a_reused_group_id_starts_its_answers_from_zero() {
    const N: u16 = 63;
    let mut h = Harness::yaml(&many_groups(N, "old"));
    let old = h.gid("old");
    for sport in [20000 + N, 20000 + N] {
        let f = tcp(Fam::V4.node(), Fam::V4.denied(), sport, 50000, SYN | ACK);
        run_expect(&h, Prog::TcEgress, &f, TC_ACT_OK, "SYN-ACK");
    }
    assert_eq!(h.dp.flood_answers().unwrap()["old"].accepted, 2);
    let cfg = node_monitor::config::Config::from_yaml(&many_groups(N, "new"), "reload")
        .expect("reload config");
    h.dp.apply_config(&cfg, &[]).expect("apply_config");
    assert_eq!(h.gid("new"), old, "the only free id is the removed group's");
    let answers = h.dp.flood_answers().unwrap();
    assert!(!answers.contains_key("old"));
    assert_eq!(answers["new"].accepted, 0, "{answers:?}");
}

/// The node's SYN-ACK sequence number in these tests, and the ACK number that acknowledges it.
const SYN_ACK_SEQ: u32 = 0x5eed_0001;
const COMPLETING_ACK: u32 = SYN_ACK_SEQ + 1;

/// A group budget spent by a spoofed flood (3 events, then withheld), then a real connection
/// from another denied source: its SYN is withheld by the group budget (no flow entry), and
/// so is the node's SYN-ACK on egress (NM-1030 under the same budgets). The peer's ACK that
/// acknowledges the SYN-ACK, which spoofed sources never see, is reported from ingress as
/// NM-1030 under the group's `completed` budget, once. A spoofed ACK with nothing pending
/// raises nothing, and one on the real 5-tuple that acknowledges anything else (a blind
/// guess) is counted and leaves the acceptance waiting for the real ACK.
fn handshake_completed_past_the_budgets(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(1, 3));
    for i in 0..6u16 {
        let f = syn(fam, denied_n(fam, i), 40000 + i);
        run_expect(&h, prog, &f, prog.pass(), "flood SYN");
    }
    assert_eq!(h.events().len(), 3, "the flood spends the group budget");
    let attacker = denied_n(fam, 50);
    let s = syn(fam, attacker, 45000);
    run_expect(&h, prog, &s, prog.pass(), "the real SYN");
    let synack = tcp(fam.node(), attacker, KUBELET, 45000, SYN | ACK).tcp_seq(SYN_ACK_SEQ);
    run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "the node's SYN-ACK");
    assert_events("withheld SYN and SYN-ACK", &h.events(), &[]);
    h.assert_reasons(
        "withheld acceptance",
        &[
            (reason::UNSEEN_ACCEPTED, 1),
            (reason::UNSEEN_RATE_LIMITED, 1),
        ],
    );
    let spoofed = tcp(denied_n(fam, 2), fam.node(), 40002, KUBELET, ACK).tcp_ack(COMPLETING_ACK);
    run_expect(&h, prog, &spoofed, prog.pass(), "a spoofed ACK");
    let guess = tcp(attacker, fam.node(), 45000, KUBELET, ACK).tcp_ack(SYN_ACK_SEQ);
    run_expect(
        &h,
        prog,
        &guess,
        prog.pass(),
        "a blind ACK on the real 5-tuple",
    );
    assert_events("spoofed ACKs", &h.events(), &[]);
    let mut counted = vec![
        (reason::UNSEEN_ACCEPTED, 1),
        (reason::UNSEEN_RATE_LIMITED, 1),
        (reason::HANDSHAKE_ACK_MISMATCH, 1),
    ];
    h.assert_reasons("spoofed ACKs", &counted);
    let ack = tcp(attacker, fam.node(), 45000, KUBELET, ACK).tcp_ack(COMPLETING_ACK);
    run_expect(&h, prog, &ack, prog.pass(), "the completing ACK");
    let want = Event {
        kind: EVENT_UNSEEN,
        answer: ANSWER_ACCEPTED,
        completes: COMPLETES_WITHHELD,
        ..flagged(&h, prog, &ack, "kubelet", ACTION_WOULD_DROP)
    };
    assert_events("completed handshake", &h.events(), &[want]);
    counted.push((reason::HANDSHAKE_COMPLETED, 1));
    h.assert_reasons("completed handshake", &counted);
    // The connection's next segments: named once.
    for _ in 0..3 {
        run_expect(&h, prog, &ack, prog.pass(), "later ACKs");
    }
    assert_events("later ACKs", &h.events(), &[]);
    h.assert_reasons("later ACKs", &counted);
}

/// A denied source's attempt reported with its acceptance (budgets with room): the node's
/// SYN-ACK is recorded too, because userspace's cap on connection alerts may still fold that
/// report into a flood alert. The ACK that acknowledges it is reported from ingress as
/// NM-1030 marked `COMPLETES_REPORTED` (userspace raises it only for a folded report), once;
/// an unanswered attempt's ACK, and an allowed source's, raise nothing.
fn handshake_of_a_reported_acceptance(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(100, 100));
    let peer = denied_n(fam, 7);
    let s = syn(fam, peer, 46000);
    run_expect(&h, prog, &s, prog.pass(), "the SYN");
    let synack = tcp(fam.node(), peer, KUBELET, 46000, SYN | ACK).tcp_seq(SYN_ACK_SEQ);
    run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "the node's SYN-ACK");
    let evs = h.events();
    assert_eq!(evs.len(), 2, "the attempt and its answer: {evs:?}");
    assert_eq!((evs[0].kind, evs[1].kind), (EVENT_FLAGGED, EVENT_ANSWER));
    // Another denied source's attempt that nobody answered: its ACK has nothing to complete.
    let other = denied_n(fam, 8);
    run_expect(
        &h,
        prog,
        &syn(fam, other, 46001),
        prog.pass(),
        "unanswered SYN",
    );
    assert_eq!(h.events().len(), 1);
    let stray = tcp(other, fam.node(), 46001, KUBELET, ACK).tcp_ack(COMPLETING_ACK);
    run_expect(
        &h,
        prog,
        &stray,
        prog.pass(),
        "an ACK with nothing accepted",
    );
    assert_events("stray ACK", &h.events(), &[]);
    let ack = tcp(peer, fam.node(), 46000, KUBELET, ACK).tcp_ack(COMPLETING_ACK);
    run_expect(&h, prog, &ack, prog.pass(), "the completing ACK");
    let want = Event {
        kind: EVENT_UNSEEN,
        answer: ANSWER_ACCEPTED,
        completes: COMPLETES_REPORTED,
        ..flagged(&h, prog, &ack, "kubelet", ACTION_WOULD_DROP)
    };
    assert_events("completed handshake", &h.events(), &[want]);
    let counted = [
        (reason::HANDSHAKE_COMPLETED, 1),
        (reason::HANDSHAKE_COMPLETED_REPORTED, 1),
    ];
    h.assert_reasons("completed handshake", &counted);
    run_expect(&h, prog, &ack, prog.pass(), "a later ACK");
    assert_events("later ACK", &h.events(), &[]);
    h.assert_reasons("later ACK", &counted);
}

/// In a drop group the withheld acceptance is dropped on egress (the connection never
/// completes), so nothing waits for an ACK and the peer's ACK raises nothing.
fn handshake_in_a_drop_group_never_completes(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(1, 1));
    let enforced_syn = |src, sport| tcp(src, fam.node(), sport, ENFORCED, SYN);
    for i in 0..3u16 {
        let f = enforced_syn(denied_n(fam, i), 40000 + i);
        run_expect(&h, prog, &f, prog.drop(), "flood SYN");
    }
    assert_eq!(h.events().len(), 1, "the flood spends the group budget");
    let attacker = denied_n(fam, 50);
    run_expect(
        &h,
        prog,
        &enforced_syn(attacker, 45000),
        prog.drop(),
        "the SYN",
    );
    let synack = tcp(fam.node(), attacker, ENFORCED, 45000, SYN | ACK);
    run_expect(
        &h,
        Prog::TcEgress,
        &synack,
        TC_ACT_SHOT,
        "the SYN-ACK, dropped",
    );
    let ack = tcp(attacker, fam.node(), 45000, ENFORCED, ACK);
    run_expect(&h, prog, &ack, prog.drop(), "an ACK");
    assert_events("drop group", &h.events(), &[]);
    h.assert_reasons(
        "drop group",
        &[
            (reason::UNSEEN_ACCEPTED, 1),
            (reason::UNSEEN_RATE_LIMITED, 1),
            (reason::UNSEEN_DROPPED, 1),
        ],
    );
}

/// How many denied SYNs the budget tests send past the source's budget.
const PAST_BUDGET: u16 = 5;

/// Two SYNs from `src` that spend its budget of 2 (reported, each with its entry), then
/// [`PAST_BUDGET`] SYNs on new source ports past it: counted as new attempts and withheld,
/// with no entry. Returns the first reported SYN's entry.
fn spend_then_flood(h: &Harness, fam: Fam, prog: Prog, src: IpAddr, ctx: &str) -> FlowState {
    for i in 0..2 {
        run_expect(h, prog, &syn(fam, src, 42000 + i), prog.pass(), ctx);
    }
    let s0 = h.stat("kubelet", TCP, D);
    assert_eq!(
        (s0.new_conns, s0.events, s0.lost_rate_limited),
        (2, 2, 0),
        "{ctx}: within the budget: {s0:?}"
    );
    let first = flow_key(src, fam.node(), 42000, KUBELET, TCP_PROTO);
    let entry = h
        .flow(&first)
        .unwrap_or_else(|| panic!("{ctx}: the reported SYN's entry"));
    for i in 0..PAST_BUDGET {
        run_expect(h, prog, &syn(fam, src, 42100 + i), prog.pass(), ctx);
    }
    let s1 = h.stat("kubelet", TCP, D);
    let n = u64::from(PAST_BUDGET);
    assert_eq!(
        (
            s1.new_conns - s0.new_conns,
            s1.lost_rate_limited - s0.lost_rate_limited,
            s1.events - s0.events,
            s1.lost_group_budget,
        ),
        (n, n, 0, 0),
        "{ctx}: every SYN past the budget is one new attempt, withheld: {s1:?}"
    );
    for i in 0..PAST_BUDGET {
        let key = flow_key(src, fam.node(), 42100 + i, KUBELET, TCP_PROTO);
        assert!(h.flow(&key).is_none(), "{ctx}: SYN {i} past the budget");
    }
    assert_all_invariants(ctx, h);
    entry
}

/// ingress.rs (`withheld_syn`): a denied pure SYN whose source has spent its budget is not
/// looked up in FLOWS. Past the budget, SYNs on new source ports are counted (`new_conns`,
/// `lost_rate_limited`, one each) and insert nothing. What tells that the lookup was skipped:
/// a retransmit of the reported SYN (same sequence number), which the lookup would find and
/// count as nothing, is one more withheld attempt, and its entry is left untouched.
fn a_spent_budget_skips_the_flow_lookup(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(2, 0));
    let src = denied_n(fam, 1);
    let entry = spend_then_flood(&h, fam, prog, src, "spent budget");
    let s1 = h.stat("kubelet", TCP, D);
    run_expect(&h, prog, &syn(fam, src, 42000), prog.pass(), "retransmit");
    let s2 = h.stat("kubelet", TCP, D);
    assert_eq!(
        (
            s2.new_conns - s1.new_conns,
            s2.lost_rate_limited - s1.lost_rate_limited,
        ),
        (1, 1),
        "a retransmit past the budget is one more withheld attempt: {s2:?}"
    );
    let key = flow_key(src, fam.node(), 42000, KUBELET, TCP_PROTO);
    assert_eq!(
        h.flow(&key),
        Some(entry),
        "the entry is not looked up (its last_ns unchanged)"
    );
    assert_eq!(h.events().len(), 2, "the two SYNs within the budget");
    assert_all_invariants("spent budget", &h);
}

/// The same flood while a config has revoked something: a source in a suspect range (the
/// reload took its range out of the allowlist), or any source once a reload revoked
/// everything (a port moved out of its group). Then the lookup is never skipped, since an
/// entry may hold a flow opened while the source was allowed: past the budget, SYNs on new
/// ports still insert nothing (the budget withholds them), but the retransmit of the
/// reported SYN finds its entry (its last_ns moves) and counts nothing.
fn the_full_path_while_a_config_revokes(fam: Fam, prog: Prog) {
    let after = yaml(knobs(2, 0));
    let kubelet_allow = r#"allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]"#;
    for variant in ["suspect range", "revokes everything"] {
        let before = if variant == "suspect range" {
            // The denied sources' range is allowed before the reload.
            after.replacen(
                kubelet_allow,
                r#"allow: ["203.0.113.0/24", "2001:db8:0:113::/64", "198.51.100.0/24", "2001:db8:0:100::/64"]"#,
                1,
            )
        } else {
            // A group whose port the reload leaves unwatched.
            after.replacen(
                "groups:\n",
                "groups:\n  extra:\n    protocols: [tcp]\n    ports: [\"9999\"]\n    allow: [\"203.0.113.0/24\"]\n",
                1,
            )
        };
        let mut h = Harness::yaml(&before);
        let cfg = node_monitor::config::Config::from_yaml(&after, "reload").expect("config");
        h.dp.apply_config(&cfg, &[]).expect("reload");
        let settings = h.dp.settings().expect("settings");
        if variant == "suspect range" {
            assert_eq!(
                (settings.suspect_ranges, settings.revoked_generation),
                (2, 0),
                "{variant}: one suspect range per family: {settings:?}"
            );
        } else {
            assert_eq!(
                settings.revoked_generation, settings.generation,
                "{variant}: {settings:?}"
            );
        }
        let src = denied_n(fam, 1);
        let entry = spend_then_flood(&h, fam, prog, src, variant);
        let s1 = h.stat("kubelet", TCP, D);
        run_expect(&h, prog, &syn(fam, src, 42000), prog.pass(), "retransmit");
        let s2 = h.stat("kubelet", TCP, D);
        assert_eq!(
            (s2.new_conns, s2.lost_rate_limited),
            (s1.new_conns, s1.lost_rate_limited),
            "{variant}: the retransmit finds its entry and counts nothing: {s2:?}"
        );
        let key = flow_key(src, fam.node(), 42000, KUBELET, TCP_PROTO);
        let now = h.flow(&key).expect("the entry stays");
        assert!(
            now.last_ns > entry.last_ns && now.first_ns == entry.first_ns,
            "{variant}: looked up: {entry:?} then {now:?}"
        );
        assert_eq!(
            h.events().len(),
            2,
            "{variant}: the two SYNs within the budget"
        );
        assert_all_invariants(variant, &h);
    }
}

/// Does some CPU's verdict cache slot hold `src` (of the current config generation)?
fn cached(h: &Harness, src: IpAddr) -> bool {
    let addr = Addr::from_ip(src);
    let generation = h.dp.settings().expect("settings").generation;
    h.dp.verdict_slots(&addr)
        .expect("verdict slots")
        .iter()
        .any(|s| s.addr == addr && s.generation == generation)
}

/// An allowed IPv6 source of the kubelet group and a denied one that share a verdict cache
/// slot, a slot no `denied_n(V6, 0..12)` uses. (No pair of the lab's IPv4 test addresses
/// shares one: the hash of a /24's addresses differs in its top 8 bits.)
fn sharing_a_verdict_slot() -> (IpAddr, IpAddr) {
    let slot = |ip: IpAddr| verdict_slot(&Addr::from_ip(ip));
    let used: Vec<u32> = (0..12).map(|i| slot(denied_n(Fam::V6, i))).collect();
    let v6 =
        |net: u16, i: u16| -> IpAddr { Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 2, i).into() };
    let by_slot: std::collections::HashMap<u32, IpAddr> = (1..=2000u16)
        .map(|i| v6(0x113, i))
        .filter(|a| !used.contains(&slot(*a)))
        .map(|a| (slot(a), a))
        .collect();
    (1..=2000u16)
        .map(|i| v6(0x100, i))
        .find_map(|d| by_slot.get(&slot(d)).map(|a| (*a, d)))
        .expect("no allowed and denied test address share a verdict cache slot")
}

/// While a flood spends the group's flagged budget, a source that misses the verdict cache
/// does not take a slot over, and every verdict is still the allowlist's. Group budget 3, no
/// per-source limit. Three reported attempts spend the budget (their sources are cached); the
/// flood's next seven are withheld and leave no slot; another allowed source during the flood
/// is still allowed (sampled, its own bucket) and uncached. Once the group's last flagged
/// attempt is old (aged in the map, as 250 jiffies would), the next attempt is cached though
/// the bucket is still empty; it marks the group again, so the attempt after it is not. On
/// IPv6 also: an allowed source A cached before the flood keeps its slot when a flood source
/// X that maps to it comes, and X takes it over after the flood.
fn a_flood_leaves_the_verdict_cache_alone(fam: Fam, prog: Prog) {
    let mut h = harness_with(knobs(0, 3));
    let gid = h.gid("kubelet");
    let pair = (fam == Fam::V6).then(sharing_a_verdict_slot);
    if let Some((a, _)) = pair {
        run_expect(
            &h,
            prog,
            &syn(fam, a, 45000),
            prog.pass(),
            "A before the flood",
        );
        assert!(cached(&h, a), "A: cached");
    }
    for i in 0..3u16 {
        let f = syn(fam, denied_n(fam, i), 44000 + i);
        run_expect(&h, prog, &f, prog.pass(), "reported SYN");
        assert!(cached(&h, denied_n(fam, i)), "source {i} reported: cached");
    }
    for i in 3..10u16 {
        let f = syn(fam, denied_n(fam, i), 44000 + i);
        run_expect(&h, prog, &f, prog.pass(), "flood SYN");
        assert!(
            !cached(&h, denied_n(fam, i)),
            "source {i} of the flood: not cached"
        );
    }
    if let Some((a, x)) = pair {
        run_expect(
            &h,
            prog,
            &syn(fam, x, 46000),
            prog.pass(),
            "X during the flood",
        );
        assert!(!cached(&h, x), "X: not cached");
        assert!(cached(&h, a), "A keeps its slot");
    }
    let b = fam.allowed2();
    run_expect(
        &h,
        prog,
        &syn(fam, b, 45001),
        prog.pass(),
        "allowed during the flood",
    );
    assert!(
        !cached(&h, b),
        "an allowed source that misses: not cached either"
    );
    let extra = u64::from(pair.is_some());
    let s = h.stat("kubelet", TCP, D);
    assert_eq!(
        (s.new_conns, s.events, s.lost_group_budget),
        (10 + extra, 3, 7 + extra),
        "{s:?}"
    );
    let s = h.stat("kubelet", TCP, A);
    assert_eq!(
        (s.new_conns, s.events),
        (1 + extra, 1 + extra),
        "allowed ones allowed: {s:?}"
    );
    // The flood stops: its last attempt ages past the hint's window, the bucket stays empty.
    let mut budget = h.dp.group_budget(gid).expect("group budget");
    assert!(budget.flagged.tokens < TOKEN_SCALE, "spent: {budget:?}");
    budget.flagged_jiffies = 1;
    h.dp.set_group_budget(gid, budget).expect("age the flood");
    // The next attempt is classified before it marks the group: cached (X takes A's slot).
    let (next, sport) = match pair {
        Some((_, x)) => (x, 46001),
        None => (denied_n(fam, 10), 44010),
    };
    run_expect(
        &h,
        prog,
        &syn(fam, next, sport),
        prog.pass(),
        "after the flood",
    );
    assert!(cached(&h, next), "after the flood: cached");
    if let Some((a, _)) = pair {
        assert!(!cached(&h, a), "X took A's slot over");
    }
    // It marked the group, and the bucket is still empty: the flood goes on.
    let f = syn(fam, denied_n(fam, 11), 44011);
    run_expect(&h, prog, &f, prog.pass(), "a flood SYN again");
    assert!(
        !cached(&h, denied_n(fam, 11)),
        "the flood again: not cached"
    );
    let s = h.stat("kubelet", TCP, D);
    assert_eq!(
        (s.new_conns, s.lost_group_budget),
        (12 + extra, 9 + extra),
        "{s:?}"
    );
    assert_all_invariants("flood and the verdict cache", &h);
}
