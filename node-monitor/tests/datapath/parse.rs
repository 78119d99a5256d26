//! The parser: frames it cannot classify (non-IP, other protocols, bad headers,
//! truncation at every boundary) are passed and counted by reason; VLAN tags, IPv4 options
//! and fragments and IPv6 extension chains are walked; priority tags (VLAN id 0) are skipped
//! as the kernel skips them; and a frame the parser gives up on whose destination port is
//! still readable and watched by a drop group is dropped (fail closed), not passed.

use std::net::IpAddr;

use node_monitor_common::{ACTION_WOULD_DROP, Event, reason};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

/// Runs `frame` and asserts: passed, counted once under `why`, no GROUP_STATS change, no event.
#[track_caller]
fn assert_unclassified(h: &mut Harness, prog: Prog, frame: &[u8], why: u32, ctx: &str) {
    assert_unclassified_also(h, prog, frame, why, &[], ctx);
}

/// [`assert_unclassified`], counted once more under each of `also` (a TCP fragment at
/// offset 1 is also an overlapping fragment: evasion.rs).
#[track_caller]
fn assert_unclassified_also(
    h: &mut Harness,
    prog: Prog,
    frame: &[u8],
    why: u32,
    also: &[u32],
    ctx: &str,
) {
    let before = h.reasons();
    let stats = h.stats();
    let got = h.run(prog, frame);
    assert_eq!(got, prog.pass(), "{ctx}: {prog:?} must pass");
    let mut want = before;
    want[why as usize] += 1;
    for a in also {
        want[*a as usize] += 1;
    }
    assert_reasons_eq(
        &format!("{ctx} (want {})", reason::NAMES[why as usize]),
        &h.reasons(),
        &want,
    );
    assert_eq!(h.stats(), stats, "{ctx}: GROUP_STATS must not move");
    assert_events(ctx, &h.events(), &[]);
}

/// Runs `f` (a denied SYN to kubelet on a fresh 5-tuple) and asserts it was classified:
/// one more packet, new connection and event in kubelet/tcp/denied, no reason counted.
#[track_caller]
fn assert_classified(h: &mut Harness, prog: Prog, f: &Frame, ctx: &str) {
    let ev = flagged(h, prog, f, "kubelet", ACTION_WOULD_DROP);
    assert_classified_as(h, prog, f, ev, ctx);
}

/// [`assert_classified`] with the event it must raise given (for tags the parser skips).
#[track_caller]
fn assert_classified_as(h: &mut Harness, prog: Prog, f: &Frame, ev: Event, ctx: &str) {
    let before = h.stat("kubelet", TCP, D);
    let reasons = h.reasons();
    run_expect(h, prog, f, prog.pass(), ctx);
    let mut want = before;
    want.packets += 1;
    want.bytes += len(f);
    want.new_conns += 1;
    want.would_drop += 1;
    want.events += 1;
    assert_eq!(h.stat("kubelet", TCP, D), want, "{ctx}: kubelet/tcp/denied");
    assert_reasons_eq(ctx, &h.reasons(), &reasons);
    assert_events(ctx, &h.events(), &[ev]);
}

/// Runs `frame` and asserts: dropped (fail closed), counted once under `why` and once under
/// `dropped_unparsed`, no GROUP_STATS change, no event.
#[track_caller]
fn assert_fails_closed(h: &mut Harness, prog: Prog, frame: &[u8], why: u32, ctx: &str) {
    let before = h.reasons();
    let stats = h.stats();
    let got = h.run(prog, frame);
    assert_eq!(got, prog.drop(), "{ctx}: {prog:?} must drop (fail closed)");
    let mut want = before;
    want[why as usize] += 1;
    want[reason::DROPPED_UNPARSED as usize] += 1;
    assert_reasons_eq(
        &format!(
            "{ctx} (want {} and dropped_unparsed)",
            reason::NAMES[why as usize]
        ),
        &h.reasons(),
        &want,
    );
    assert_eq!(h.stats(), stats, "{ctx}: GROUP_STATS must not move");
    assert_events(ctx, &h.events(), &[]);
}

/// A tag with VLAN id 0 (802.1p priority tag) and priority `pcp`.
fn prio(f: Frame, pcp: u8) -> Frame {
    f.vlan_tag(VlanTag {
        vid: 0,
        pcp,
        tpid: None,
    })
}

matrix!(
    unclassified_protocols_and_bad_tcp,
    vlan_tags,
    priority_tags_are_skipped,
    drop_groups_fail_closed,
    truncation_at_every_boundary
);
progs!(ipv4_header_variants, ipv6_header_variants);

// One data path per test (loading is the slow part); the sub-cases use disjoint 5-tuples
// and assert deltas.
fn unclassified_protocols_and_bad_tcp(fam: Fam, prog: Prog) {
    let mut h = harness();
    non_ip_and_non_tcp_udp_are_counted(&mut h, fam, prog);
    bad_tcp_data_offset(&mut h, fam, prog);
}

fn ipv4_header_variants(prog: Prog) {
    let mut h = harness();
    ipv4_fragments(&mut h, prog);
    ipv4_options_are_skipped(&mut h, prog);
    bad_ipv4_header(&mut h, prog);
}

fn ipv6_header_variants(prog: Prog) {
    let mut h = harness();
    ipv6_fragments(&mut h, prog);
    ipv6_extension_header_chains(&mut h, prog);
}

fn non_ip_and_non_tcp_udp_are_counted(h: &mut Harness, fam: Fam, prog: Prog) {
    assert_unclassified(h, prog, &non_ip_frame(), reason::NOT_IP, "ARP");
    let echo = Frame::icmp_echo(fam.denied(), fam.node(), 1, 1);
    assert_unclassified(h, prog, &echo.build(), reason::OTHER_L4, "ICMP echo");
    // An ICMP port unreachable on ingress is not an answer: other_l4 too.
    let orig = udp(fam.node(), fam.denied(), UDP_SVC, 40000);
    let unreach = Frame::icmp_port_unreachable(fam.denied(), fam.node(), &orig);
    assert_unclassified(
        h,
        prog,
        &unreach.build(),
        reason::OTHER_L4,
        "ICMP unreachable",
    );
    // SCTP (132) with bytes that look like ports 40000 -> 10250.
    let mut ports = Vec::new();
    ports.extend_from_slice(&40000u16.to_be_bytes());
    ports.extend_from_slice(&KUBELET.to_be_bytes());
    ports.extend_from_slice(&[0; 8]);
    let sctp = Frame::ip_proto(fam.denied(), fam.node(), 132).payload(&ports);
    assert_unclassified(h, prog, &sctp.build(), reason::OTHER_L4, "SCTP");
}

fn bad_tcp_data_offset(h: &mut Harness, fam: Fam, prog: Prog) {
    for doff in 0..5u8 {
        let f = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN).tcp_data_offset_raw(doff);
        assert_unclassified(
            h,
            prog,
            &f.build(),
            reason::BAD_TCP,
            &format!("TCP data offset {doff}"),
        );
    }
    // 5 (and more, even if the options are not all there) is fine.
    let f = tcp(fam.denied(), fam.node(), 40005, KUBELET, SYN).tcp_data_offset_raw(5);
    assert_classified(h, prog, &f, "TCP data offset 5");
}

fn vlan_tags(fam: Fam, prog: Prog) {
    let mut h = harness();
    let one = tcp(fam.denied(), fam.node(), 40001, KUBELET, SYN).vlan(100);
    assert_classified(&mut h, prog, &one, "one 802.1Q tag");
    let two = tcp(fam.denied(), fam.node(), 40002, KUBELET, SYN)
        .vlan(100)
        .vlan(200);
    assert_eq!(
        two.build()[12..14],
        TPID_8021AD.to_be_bytes(),
        "builder: outer tag is 802.1ad"
    );
    assert_classified(&mut h, prog, &two, "802.1ad + 802.1Q");
    let max = tcp(fam.denied(), fam.node(), 40003, KUBELET, SYN)
        .vlan(4095)
        .vlan(1);
    assert_classified(&mut h, prog, &max, "VLAN ids 4095 and 1");
    let three = tcp(fam.denied(), fam.node(), 40004, KUBELET, SYN)
        .vlan(100)
        .vlan(200)
        .vlan(300);
    assert_unclassified(
        &mut h,
        prog,
        &three.build(),
        reason::VLAN_TOO_DEEP,
        "three tags",
    );
    let udp3 = udp(fam.denied(), fam.node(), 40005, UDP_SVC)
        .vlan(1)
        .vlan(2)
        .vlan(3);
    assert_unclassified(
        &mut h,
        prog,
        &udp3.build(),
        reason::VLAN_TOO_DEEP,
        "three tags, UDP",
    );
}

/// The kernel strips any number of priority tags (`__netif_receive_skb_core`: a tag with
/// VLAN id 0 is cleared and an inner tag behind it untagged again), so they neither count
/// towards the two tags nor show in the event.
fn priority_tags_are_skipped(fam: Fam, prog: Prog) {
    let mut h = harness();
    let syn = |sport| tcp(fam.denied(), fam.node(), sport, KUBELET, SYN);
    let ev = |h: &Harness, f: &Frame, outer: u16, inner: u16| Event {
        vlan_outer: outer,
        vlan_inner: inner,
        ..flagged(h, prog, f, "kubelet", ACTION_WOULD_DROP)
    };
    // A priority tag outside two real tags: three in-band tags, two of them counted.
    let f = prio(syn(40010), 5).vlan(100).vlan(200);
    let e = ev(&h, &f, 100, 200);
    assert_classified_as(&mut h, prog, &f, e, "priority tag + 2 tags");
    // Between and behind real tags.
    let f = prio(prio(syn(40011).vlan(100), 3).vlan(200), 1);
    let e = ev(&h, &f, 100, 200);
    assert_classified_as(&mut h, prog, &f, e, "tag, prio, tag, prio");
    // Priority tags only, as many as the walk's bound (4 in-band tags).
    let mut f = syn(40012);
    for pcp in 0..4 {
        f = prio(f, pcp);
    }
    let e = ev(&h, &f, 0, 0);
    assert_classified_as(&mut h, prog, &f, e, "4 priority tags");
    // Three real tags are still too deep with priority tags among them.
    let f = prio(syn(40013).vlan(1), 0).vlan(2).vlan(3);
    assert_unclassified(
        &mut h,
        prog,
        &f.build(),
        reason::VLAN_TOO_DEEP,
        "3 tags + prio",
    );
    // Past the walk's bound (5 in-band tags): too deep, and passed (kubelet monitors).
    let mut f = syn(40014);
    for _ in 0..5 {
        f = prio(f, 0);
    }
    assert_unclassified(
        &mut h,
        prog,
        &f.build(),
        reason::VLAN_TOO_DEEP,
        "5 priority tags",
    );
}

/// What the parser gives up on, to a port watched by a drop group (`enforced`), is dropped
/// when the destination port can be read; counted under its reason; never an event.
/// Everything else (port not readable, not watched, watched by a monitor group) passes.
fn drop_groups_fail_closed(fam: Fam, prog: Prog) {
    let mut h = harness();
    let to = |dport: u16, sport| tcp(fam.denied(), fam.node(), sport, dport, SYN);
    // Too many tags: three real ones, or more priority tags than the strict walk takes.
    let three = to(ENFORCED, 40020).vlan(1).vlan(2).vlan(3);
    assert_fails_closed(
        &mut h,
        prog,
        &three.build(),
        reason::VLAN_TOO_DEEP,
        "3 tags",
    );
    let udp3 = udp(fam.denied(), fam.node(), 40021, ENFORCED)
        .vlan(1)
        .vlan(2)
        .vlan(3);
    assert_fails_closed(
        &mut h,
        prog,
        &udp3.build(),
        reason::VLAN_TOO_DEEP,
        "3 tags, UDP",
    );
    // From an allowed source too: the drop group cannot tell who sent what it cannot read.
    let allowed = tcp(fam.allowed(), fam.node(), 40022, ENFORCED, SYN)
        .vlan(1)
        .vlan(2)
        .vlan(3);
    assert_fails_closed(
        &mut h,
        prog,
        &allowed.build(),
        reason::VLAN_TOO_DEEP,
        "3 tags, allowed source",
    );
    let mut deep = to(ENFORCED, 40023);
    for _ in 0..6 {
        deep = prio(deep, 0);
    }
    assert_fails_closed(
        &mut h,
        prog,
        &deep.build(),
        reason::VLAN_TOO_DEEP,
        "6 prio tags",
    );
    // Broken TCP header: data offset < 5, and a header cut after its ports.
    let bad = to(ENFORCED, 40024).tcp_data_offset_raw(4);
    assert_fails_closed(&mut h, prog, &bad.build(), reason::BAD_TCP, "data offset 4");
    let (bytes, b) = to(ENFORCED, 40025).vlan(7).build_with_boundaries();
    let cut = truncate(&bytes, b.l4_start + 4);
    assert_fails_closed(
        &mut h,
        prog,
        &cut,
        reason::TRUNC_L4,
        "TCP cut after its ports",
    );
    // Fails open: the port not readable, or not watched by a drop group.
    let cut = truncate(&bytes, b.l4_start + 3);
    assert_unclassified(
        &mut h,
        prog,
        &cut,
        reason::TRUNC_L4,
        "TCP cut inside its ports",
    );
    let unwatched = to(UNWATCHED, 40026).vlan(1).vlan(2).vlan(3);
    assert_unclassified(
        &mut h,
        prog,
        &unwatched.build(),
        reason::VLAN_TOO_DEEP,
        "3 tags, unwatched port",
    );
    let monitor = to(KUBELET, 40027).tcp_data_offset_raw(3);
    assert_unclassified(
        &mut h,
        prog,
        &monitor.build(),
        reason::BAD_TCP,
        "monitor group",
    );
    let mut too_deep = to(ENFORCED, 40028);
    for _ in 0..9 {
        too_deep = prio(too_deep, 0);
    }
    assert_unclassified(
        &mut h,
        prog,
        &too_deep.build(),
        reason::VLAN_TOO_DEEP,
        "9 priority tags: port past every bound",
    );
    // Non-first fragments carry no port: they still pass.
    if fam == Fam::V4 {
        let frag = to(ENFORCED, 40029).ipv4_fragment(1, true);
        assert_unclassified_also(
            &mut h,
            prog,
            &frag.build(),
            reason::IPV4_FRAGMENT,
            &[reason::FRAG_OVERLAP],
            "fragment",
        );
    }
    // Too many IPv6 extension headers.
    if fam == Fam::V6 {
        use ExtHeader::*;
        let chain = [
            HopByHop, Routing, DestOpts, DestOpts, DestOpts, DestOpts, DestOpts,
        ];
        let f = to(ENFORCED, 40030).ipv6_ext(&chain);
        assert_fails_closed(
            &mut h,
            prog,
            &f.build(),
            reason::IPV6_EXT_LIMIT,
            "7 ext headers",
        );
        let f = to(KUBELET, 40031).ipv6_ext(&chain);
        assert_unclassified(
            &mut h,
            prog,
            &f.build(),
            reason::IPV6_EXT_LIMIT,
            "7, monitor",
        );
    }
}

/// The reason a frame cut to `cut` bytes must be counted under, or None when the L4 header
/// is complete (then it is classified).
fn truncation_reason(b: &Boundaries, v4: bool, cut: usize) -> Option<u32> {
    if cut < b.eth_end {
        Some(reason::TRUNC_ETH)
    } else if cut < b.l3_start {
        Some(reason::TRUNC_VLAN)
    } else if cut < b.l3_fixed_end {
        Some(if v4 {
            reason::TRUNC_IPV4
        } else {
            reason::TRUNC_IPV6
        })
    } else if cut < b.l3_end {
        Some(if v4 {
            reason::TRUNC_IPV4
        } else {
            reason::TRUNC_IPV6_EXT
        })
    } else if cut < b.l4_end {
        Some(reason::TRUNC_L4)
    } else {
        None
    }
}

fn truncation_at_every_boundary(fam: Fam, prog: Prog) {
    let v4 = fam == Fam::V4;
    // Each variant has its own source port, so that its first complete cut is a new
    // connection; one harness serves all variants (deltas are asserted after every run).
    let base_tcp = |sport| tcp(fam.denied(), fam.node(), sport, KUBELET, SYN).payload(b"data");
    let base_udp = |sport| udp(fam.denied(), fam.node(), sport, UDP_SVC).payload(b"data");
    let mut variants = vec![
        ("tcp", base_tcp(40000)),
        ("udp", base_udp(40001)),
        ("tcp, 1 tag", base_tcp(40002).vlan(10)),
        ("tcp, 2 tags", base_tcp(40003).vlan(10).vlan(20)),
        ("udp, 2 tags", base_udp(40004).vlan(10).vlan(20)),
    ];
    if v4 {
        variants.push(("tcp, options", base_tcp(40005).ipv4_options(3)));
        variants.push((
            "udp, 1 tag, options",
            base_udp(40006).vlan(10).ipv4_options(10),
        ));
    } else {
        let exts = [
            ExtHeader::HopByHop,
            ExtHeader::Routing,
            ExtHeader::Fragment {
                offset_units: 0,
                more: true,
            },
            ExtHeader::DestOptsLen(2),
        ];
        variants.push(("tcp, ext headers", base_tcp(40005).ipv6_ext(&exts)));
        variants.push((
            "udp, 2 tags, ext headers",
            base_udp(40006).vlan(10).vlan(20).ipv6_ext(&exts[..2]),
        ));
    }
    let mut h = harness();
    let min = h.min_test_run_len(prog);
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for (name, f) in variants {
        let (bytes, b) = f.build_with_boundaries();
        let mut cuts = vec![
            b.eth_end,
            b.l3_start,
            b.l3_fixed_end,
            b.l3_end,
            b.l4_end,
            b.end,
        ];
        cuts.extend(&b.vlan_ends);
        cuts.extend(&b.ext_ends);
        let mut all: Vec<usize> = cuts.iter().flat_map(|c| [*c, c - 1]).collect();
        all.sort_unstable();
        all.dedup();
        let (group, proto) = if matches!(f.l4, L4::Tcp { .. }) {
            ("kubelet", TCP)
        } else {
            ("udp-svc", UDP)
        };
        let mut first = true;
        for cut in all {
            let frame = truncate(&bytes, cut);
            let ctx = format!("{name}: cut at {cut} of {}", bytes.len());
            if cut < min {
                // BPF_PROG_TEST_RUN refuses input shorter than an Ethernet header (EINVAL:
                // `bpf_test_init`, for skb and, on current kernels, XDP programs), so the
                // truncated_ethernet case cannot be injected; reported as SKIPPED below.
                skipped.push(cut);
                continue;
            }
            let stats = h.stats();
            let reasons = h.reasons();
            let got = match h.try_run(prog, &frame) {
                Ok(v) => v,
                // The kernel's skb test run refuses an untagged IPv4/IPv6 frame that does
                // not hold the fixed IP header (EINVAL, seen on 6.18); with a VLAN tag it
                // runs, so truncated_ipv4/truncated_ipv6 are covered on tc by the tagged
                // variants. Anything else refused is a failure.
                Err(e)
                    if prog == Prog::TcIngress
                        && b.vlan_ends.is_empty()
                        && cut < b.l3_fixed_end =>
                {
                    refused.push((name, cut, e.to_string()));
                    continue;
                }
                Err(e) => panic!("{ctx}: BPF_PROG_TEST_RUN refused the frame: {e} ({e:?})"),
            };
            assert_eq!(got, prog.pass(), "{ctx}: must pass");
            let mut want_reasons = reasons;
            let mut want_stats = stats.clone();
            let mut want_events = Vec::new();
            match truncation_reason(&b, v4, cut) {
                Some(why) => want_reasons[why as usize] += 1,
                None => {
                    let s = want_stats
                        .get_mut(&(group.to_owned(), proto.name(), D))
                        .expect("stats entry");
                    s.packets += 1;
                    s.bytes += cut as u64;
                    s.would_drop += 1;
                    if first {
                        s.new_conns += 1;
                        s.events += 1;
                        want_events.push(Event {
                            pkt_len: cut as u32,
                            ..flagged(&h, prog, &f, group, ACTION_WOULD_DROP)
                        });
                        first = false;
                    }
                }
            }
            let why =
                truncation_reason(&b, v4, cut).map_or("classified", |r| reason::NAMES[r as usize]);
            assert_reasons_eq(&format!("{ctx} (want {why})"), &h.reasons(), &want_reasons);
            assert_eq!(h.stats(), want_stats, "{ctx} (want {why}): GROUP_STATS");
            assert_events(&ctx, &h.events(), &want_events);
        }
        assert!(!first, "{name}: the complete frame was never classified");
    }
    if !refused.is_empty() {
        eprintln!(
            "note: {prog:?} {fam:?}: kernel refused (EINVAL) these untagged cuts: {refused:?}"
        );
    }
    if !skipped.is_empty() {
        eprintln!(
            "SKIPPED (kernel limit) truncated_ethernet via {prog:?}: BPF_PROG_TEST_RUN refuses frames \
             under {min} bytes, so cuts {skipped:?} cannot be injected"
        );
    }
}

fn ipv4_fragments(h: &mut Harness, prog: Prog) {
    // Non-first fragments whose first bytes look exactly like a denied SYN to kubelet.
    for (off, mf) in [(1u16, true), (1, false), (185, true), (0x1fff, false)] {
        let f = tcp(DENIED_V4, NODE_V4, 40000, KUBELET, SYN).ipv4_fragment(off, mf);
        let overlap: &[u32] = if off == 1 {
            &[reason::FRAG_OVERLAP]
        } else {
            &[]
        };
        assert_unclassified_also(
            h,
            prog,
            &f.build(),
            reason::IPV4_FRAGMENT,
            overlap,
            &format!("IPv4 fragment offset {off} MF {mf}"),
        );
        let u = udp(DENIED_V4, NODE_V4, 40000, UDP_SVC).ipv4_fragment(off, mf);
        assert_unclassified(
            h,
            prog,
            &u.build(),
            reason::IPV4_FRAGMENT,
            &format!("IPv4 UDP fragment offset {off}"),
        );
    }
    // The first fragment (offset 0, MF) carries the header: classified.
    let first = tcp(DENIED_V4, NODE_V4, 40001, KUBELET, SYN).ipv4_fragment(0, true);
    assert_classified(h, prog, &first, "IPv4 first fragment");
    // DF set, offset 0: an ordinary packet.
    let df = tcp(DENIED_V4, NODE_V4, 40002, KUBELET, SYN).ipv4_df();
    assert_classified(h, prog, &df, "IPv4 DF");
}

fn ipv4_options_are_skipped(h: &mut Harness, prog: Prog) {
    for words in 1..=10u8 {
        let f = tcp(DENIED_V4, NODE_V4, 40100 + u16::from(words), KUBELET, SYN).ipv4_options(words);
        assert_classified(h, prog, &f, &format!("IPv4 IHL {}", 5 + words));
    }
}

fn bad_ipv4_header(h: &mut Harness, prog: Prog) {
    for ihl in 0..5u8 {
        let f = tcp(DENIED_V4, NODE_V4, 40000, KUBELET, SYN).ipv4_ihl_raw(ihl);
        assert_unclassified(
            h,
            prog,
            &f.build(),
            reason::BAD_IPV4,
            &format!("IPv4 IHL {ihl}"),
        );
    }
    for version in [0u8, 5, 6, 15] {
        let f = tcp(DENIED_V4, NODE_V4, 40000, KUBELET, SYN);
        let (mut bytes, b) = f.build_with_boundaries();
        bytes[b.l3_start] = (version << 4) | (bytes[b.l3_start] & 0x0f);
        assert_unclassified(
            h,
            prog,
            &bytes,
            reason::BAD_IPV4,
            &format!("IPv4 EtherType, IP version {version}"),
        );
    }
}

fn ipv6_fragments(h: &mut Harness, prog: Prog) {
    let frag = |off: u16, more: bool| ExtHeader::Fragment {
        offset_units: off,
        more,
    };
    let cases: [(&str, Vec<ExtHeader>); 4] = [
        ("offset 1, M", vec![frag(1, true)]),
        ("offset 8191", vec![frag(0x1fff, false)]),
        (
            "after HopByHop+Routing",
            vec![ExtHeader::HopByHop, ExtHeader::Routing, frag(5, true)],
        ),
        ("before DestOpts", vec![frag(3, false), ExtHeader::DestOpts]),
    ];
    for (name, exts) in &cases {
        let f = tcp(DENIED_V6, NODE_V6, 40000, KUBELET, SYN).ipv6_ext(exts);
        assert_unclassified(
            h,
            prog,
            &f.build(),
            reason::IPV6_FRAGMENT,
            &format!("IPv6 fragment {name}"),
        );
        let u = udp(DENIED_V6, NODE_V6, 40000, UDP_SVC).ipv6_ext(exts);
        assert_unclassified(
            h,
            prog,
            &u.build(),
            reason::IPV6_FRAGMENT,
            &format!("IPv6 UDP fragment {name}"),
        );
    }
    let first = tcp(DENIED_V6, NODE_V6, 40001, KUBELET, SYN).ipv6_ext(&[frag(0, true)]);
    assert_classified(h, prog, &first, "IPv6 first fragment");
    let atomic = tcp(DENIED_V6, NODE_V6, 40002, KUBELET, SYN).ipv6_ext(&[frag(0, false)]);
    assert_classified(h, prog, &atomic, "IPv6 atomic fragment");
}

fn ipv6_extension_header_chains(h: &mut Harness, prog: Prog) {
    use ExtHeader::*;
    let f0 = Fragment {
        offset_units: 0,
        more: true,
    };
    let ok: [&[ExtHeader]; 9] = [
        &[HopByHop],
        &[Routing],
        &[DestOpts],
        &[f0],
        &[HopByHop, Routing, f0, DestOpts],
        &[DestOpts, DestOpts, DestOpts, DestOpts, DestOpts, DestOpts],
        &[HopByHop, DestOpts, Routing, f0, DestOpts, Routing],
        &[
            HopByHopLen(4),
            DestOptsLen(31),
            Routing,
            Routing,
            DestOptsLen(1),
            DestOpts,
        ],
        &[Routing, f0, Routing, f0, Routing, f0],
    ];
    for (i, chain) in ok.iter().enumerate() {
        let f = tcp(DENIED_V6, NODE_V6, 40100 + i as u16, KUBELET, SYN).ipv6_ext(chain);
        assert_classified(
            h,
            prog,
            &f,
            &format!("{} ext headers {chain:?}", chain.len()),
        );
    }
    let too_many: [&[ExtHeader]; 3] = [
        &[
            HopByHop, Routing, DestOpts, DestOpts, DestOpts, DestOpts, DestOpts,
        ],
        &[
            DestOpts, DestOpts, DestOpts, DestOpts, DestOpts, DestOpts, f0,
        ],
        &[
            HopByHop, DestOpts, Routing, f0, DestOpts, Routing, DestOpts, DestOpts,
        ],
    ];
    for chain in too_many {
        let f = tcp(DENIED_V6, NODE_V6, 41000, KUBELET, SYN).ipv6_ext(chain);
        assert_unclassified(
            h,
            prog,
            &f.build(),
            reason::IPV6_EXT_LIMIT,
            &format!("{} ext headers", chain.len()),
        );
    }
}

/// tc reads only the linear part of an skb, and BPF_PROG_TEST_RUN always builds a linear
/// one; so this one test sends live frames. An AF_PACKET frame of a page or more is built
/// with only its Ethernet header linear (`packet_alloc_skb`), and a veth hands that skb on
/// as it is, so tc ingress on the peer sees 14 linear bytes. The program must pull as far as
/// the header chain goes: a 304-byte Destination Options header, then a chain of three, must
/// not hide TCP.
#[test]
fn tc_pulls_the_header_chain_of_a_non_linear_skb() {
    use ExtHeader::*;
    require_root();
    let ns = veth_lab("pull", "nmpull0", "nmpull1", "9000");
    let frames = [
        tcp(DENIED_V6, NODE_V6, 40060, KUBELET, SYN).ipv6_ext(&[DestOptsLen(37)]),
        tcp(DENIED_V6, NODE_V6, 40061, KUBELET, SYN).ipv6_ext(&[
            HopByHopLen(20),
            Routing,
            DestOptsLen(30),
        ]),
    ];
    let bytes: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| f.clone().pad_to(5000).build())
        .collect();
    let (before, after, trunc) = ns
        .run(move || {
            let h = harness();
            let link = tcx_ingress(&h, "nmpull1");
            let before = h.stat("kubelet", TCP, D);
            let trunc = h.reasons()[reason::TRUNC_IPV6_EXT as usize];
            for b in &bytes {
                send_raw("nmpull0", b);
            }
            // The veth delivers from a softirq: wait (bounded) for both frames to be counted.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while h.stat("kubelet", TCP, D).packets < before.packets + 2
                && h.reasons()[reason::TRUNC_IPV6_EXT as usize] < trunc + 2
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let after = h.stat("kubelet", TCP, D);
            let trunc_after = h.reasons()[reason::TRUNC_IPV6_EXT as usize];
            drop(link);
            (before, after, trunc_after - trunc)
        })
        .expect("run in the test namespace");
    assert_eq!(
        trunc, 0,
        "tc ingress counted truncated_ipv6_ext: it did not pull far enough"
    );
    assert_eq!(
        after.packets - before.packets,
        2,
        "both frames classified: {after:?}"
    );
    assert_eq!(after.new_conns - before.new_conns, 2, "{after:?}");
}

/// tc ingress answers the segments of established connections (ACK or RST) to a watched
/// port from a copy of a non-linear skb's headers, without pulling them in: they must be
/// counted exactly as the full path counts them (group, verdict, bytes, would-drop or drop),
/// and a denied source's segment that the full path must look at further (here while a
/// config has revoked a flow) must go there and be counted once. Live frames over a veth, as
/// above: padded to 5,000 bytes, only their Ethernet header is linear.
#[test]
fn tc_counts_established_segments_of_a_non_linear_skb_as_the_full_path_does() {
    const LEN: usize = 5000;
    require_root();
    let ns = veth_lab("peek", "nmpeek0", "nmpeek1", "9000");
    let frame = |src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8| {
        tcp(src, dst, sport, dport, flags).pad_to(LEN).build()
    };
    let (got, revoked) = ns
        .run(move || {
            let mut h = harness();
            let link = tcx_ingress(&h, "nmpeek1");
            let unwatched = reason::UNWATCHED as usize;
            // Sends `frames` and waits (bounded, 5 s) until `done` says they were counted.
            let send = |h: &Harness, frames: &[Vec<u8>], done: &dyn Fn(&Harness) -> bool| {
                for f in frames {
                    send_raw("nmpeek0", f);
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while !done(h) && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            };
            let stats0 = h.stats();
            let reasons0 = h.reasons();
            let mut frames = Vec::new();
            for fam in [Fam::V4, Fam::V6] {
                let (allowed, denied, node) = (fam.allowed(), fam.denied(), fam.node());
                frames.push(frame(allowed, node, 40100, KUBELET, ACK));
                frames.push(frame(denied, node, 40101, KUBELET, ACK | PSH));
                frames.push(frame(denied, node, 40102, ENFORCED, RST));
                frames.push(frame(denied, node, 40103, STRICT, ACK | FIN));
                frames.push(frame(allowed, node, 40104, UNWATCHED, ACK));
            }
            send(&h, &frames, &|h| {
                h.reasons()[unwatched] >= reasons0[unwatched] + 2
            });
            // Let the other frames of the batch land too (the veth delivers them in order).
            std::thread::sleep(std::time::Duration::from_millis(100));
            let got = (
                stats0,
                h.stats(),
                h.reasons()[unwatched] - reasons0[unwatched],
            );

            // A config that revoked a flow: a denied source's segment may belong to a flow
            // opened while it was allowed, so the full path looks it up.
            let mut settings = h.dp.settings().expect("settings");
            settings.revoked_generation = settings.generation;
            h.dp.set_settings(settings).expect("settings");
            let before = h.stat("kubelet", TCP, D);
            send(
                &h,
                &[frame(Fam::V4.denied(), Fam::V4.node(), 40105, KUBELET, ACK)],
                &|h| h.stat("kubelet", TCP, D).packets > before.packets,
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
            let revoked = (before, h.stat("kubelet", TCP, D), h.events());
            drop(link);
            (got, revoked)
        })
        .expect("run in the test namespace");
    let (stats0, stats1, unwatched) = got;
    assert_eq!(unwatched, 2, "the unwatched ACKs counted as unwatched");
    let delta = |group: &str, verdict: u8| {
        let key = (group.to_owned(), "tcp", verdict);
        let (a, b) = (
            stats0.get(&key).copied().unwrap_or_default(),
            stats1.get(&key).copied().unwrap_or_default(),
        );
        (
            b.packets - a.packets,
            b.bytes - a.bytes,
            b.would_drop - a.would_drop,
            b.dropped - a.dropped,
            b.new_conns - a.new_conns,
        )
    };
    let len = LEN as u64;
    // (packets, bytes, would drop, dropped, new connections): one per family.
    assert_eq!(delta("kubelet", A), (2, 2 * len, 0, 0, 0), "allowed ACKs");
    assert_eq!(delta("kubelet", D), (2, 2 * len, 2, 0, 0), "denied ACKs");
    assert_eq!(
        delta("enforced", D),
        (2, 2 * len, 0, 2, 0),
        "denied RSTs, drop group"
    );
    assert_eq!(
        delta("strict", A),
        (2, 2 * len, 0, 0, 0),
        "per-group allowlist"
    );
    let (before, after, events) = revoked;
    assert_eq!(
        (
            after.packets - before.packets,
            after.would_drop - before.would_drop,
            after.new_conns - before.new_conns,
        ),
        (1, 1, 0),
        "a revoking config's denied ACK is counted once: {after:?}"
    );
    assert!(
        events.is_empty(),
        "no flow on record, nothing to report: {events:?}"
    );
}

/// tc ingress also answers a denied pure SYN from the header copy of a non-linear skb when a
/// spent budget withholds its event (a spoofed flood, or one source scanning), without
/// pulling the headers in: it must count, withhold and summarise it exactly as the full path
/// does, and leave every other SYN (within the budgets, allowed) to the full path. Per family,
/// per-source budget 2 and group budget 3: source A sends 4 SYNs to the kubelet (2 reported, 2
/// withheld by A's budget, no flow entry), B1..B5 one each (B1 reported with the group's last
/// token, B2..B5 withheld by the group's budget), an allowed source one (sampled); C sends 3
/// to the drop group's port (2 reported, 1 withheld, all 3 dropped). Live frames over a veth,
/// padded to 5,000 bytes: only their Ethernet header is linear.
#[test]
fn tc_withholds_attempts_of_a_non_linear_skb_as_the_full_path_does() {
    use node_monitor_common::{Addr, IPPROTO_TCP, source_slot};
    const LEN: usize = 5000;
    require_root();
    let ns = veth_lab("withheld", "nmwh0", "nmwh1", "9000");
    for fam in Fam::ALL {
        let denied = |i: u16| -> IpAddr {
            match fam {
                Fam::V4 => std::net::Ipv4Addr::new(198, 51, 100, 120 + i as u8).into(),
                Fam::V6 => std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 2, i).into(),
            }
        };
        let (a, c) = (denied(0), denied(6));
        let b: Vec<IpAddr> = (1..=5).map(denied).collect();
        let node = fam.node();
        let syn = |src: IpAddr, sport: u16, dport: u16| {
            tcp(src, node, sport, dport, SYN).pad_to(LEN).build()
        };
        let mut frames = Vec::new();
        frames.extend((0..4).map(|i| syn(a, 40200 + i, KUBELET)));
        frames.extend(b.iter().zip(40210..).map(|(s, p)| syn(*s, p, KUBELET)));
        frames.push(syn(fam.allowed(), 40220, KUBELET));
        frames.extend((0..3).map(|i| syn(c, 40230 + i, ENFORCED)));
        let total = frames.len() as u64;
        let sources: Vec<IpAddr> = [a, c].into_iter().chain(b.iter().copied()).collect();
        let bs = b.clone();
        let (stats, events, flows, registers, slots) = ns
            .run(move || {
                let mut h = harness_with(Knobs {
                    events_per_sec: 2,
                    events_per_group: 3,
                    ..Knobs::default()
                });
                let mask = h.dp.settings().expect("settings").source_slot_mask;
                let slots: Vec<u32> = sources
                    .iter()
                    .map(|s| source_slot(&Addr::from_ip(*s), mask))
                    .collect();
                let link = tcx_ingress(&h, "nmwh1");
                let counted = |h: &Harness| h.stats().values().map(|s| s.packets).sum::<u64>();
                for f in &frames {
                    send_raw("nmwh0", f);
                }
                // The veth delivers from a softirq: wait (bounded) until every frame counted.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while counted(&h) < total && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                let flows: Vec<bool> = (0..4)
                    .map(|i| (a, 40200 + i))
                    .chain(bs.iter().copied().zip(40210..))
                    .map(|(s, p)| {
                        h.flow(&flow_key(s, node, p, KUBELET, IPPROTO_TCP))
                            .is_some()
                    })
                    .collect();
                let registers = h.dp.flood_registers(h.gid("kubelet")).expect("registers");
                let got = (h.stats(), h.events(), flows, registers, slots);
                drop(link);
                got
            })
            .expect("run in the test namespace");
        let mut distinct = slots.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            slots.len(),
            "{fam:?}: the test's sources must not share a SOURCES slot: {slots:?}"
        );
        let get = |group: &str, verdict: u8| {
            stats
                .get(&(group.to_owned(), "tcp", verdict))
                .copied()
                .unwrap_or_default()
        };
        let len = LEN as u64;
        assert_eq!(
            get("kubelet", D),
            S {
                packets: 9,
                bytes: 9 * len,
                new_conns: 9,
                would_drop: 9,
                events: 3,
                lost_rate_limited: 2,
                lost_group_budget: 4,
                ..S::default()
            },
            "{fam:?}: denied SYNs to the kubelet"
        );
        assert_eq!(
            get("kubelet", A),
            S {
                packets: 1,
                bytes: len,
                new_conns: 1,
                events: 1,
                ..S::default()
            },
            "{fam:?}: the allowed SYN, sampled"
        );
        assert_eq!(
            get("enforced", D),
            S {
                packets: 3,
                bytes: 3 * len,
                new_conns: 3,
                dropped: 3,
                events: 2,
                lost_rate_limited: 1,
                ..S::default()
            },
            "{fam:?}: denied SYNs to the drop group"
        );
        let mut reported: Vec<(IpAddr, u16)> = events
            .iter()
            .map(|e| (e.src_addr.to_ip(e.family), e.src_port))
            .collect();
        reported.sort();
        let mut want = vec![
            (a, 40200),
            (a, 40201),
            (b[0], 40210),
            (fam.allowed(), 40220),
            (c, 40230),
            (c, 40231),
        ];
        want.sort();
        assert_eq!(reported, want, "{fam:?}: the events sent");
        assert_eq!(
            flows,
            [true, true, false, false, true, false, false, false, false],
            "{fam:?}: flow entries of A's 4 attempts and B1..B5's: only reported ones"
        );
        let mut withheld = vec![a, a];
        withheld.extend(&b[1..]);
        let want_regs = {
            let mut r = Box::new([0u8; node_monitor_common::HLL_REGISTERS]);
            for s in &withheld {
                node_monitor_common::hll_add(
                    &mut r,
                    node_monitor_common::source_hash(&Addr::from_ip(*s)),
                );
            }
            r
        };
        assert!(
            *registers == *want_regs,
            "{fam:?}: the kubelet's sketch holds exactly the withheld sources A, B2..B5"
        );
    }
}

/// On a live receive path the kernel moves the outer tag of a tagged frame into the skb's
/// metadata before tc ingress runs (`skb_vlan_untag` in `__netif_receive_skb_core`), so tc
/// must read that tag from `vlan_tci` and the rest in band, and count it towards the limit of
/// two. BPF_PROG_TEST_RUN never fills the metadata: these frames go over a veth.
#[test]
fn tc_reads_the_vlan_tag_in_the_skb_metadata() {
    require_root();
    let ns = veth_lab("vlanmeta", "nmvlan0", "nmvlan1", "1500");
    let syn = |sport| tcp(DENIED_V4, NODE_V4, sport, KUBELET, SYN);
    // (source port, frame, VLAN ids the event must carry)
    let cases: Vec<(u16, Vec<u8>, (u16, u16))> = vec![
        (40070, syn(40070).build(), (0, 0)),
        (40071, syn(40071).vlan(100).build(), (100, 0)),
        (40072, syn(40072).vlan(100).vlan(200).build(), (100, 200)),
        (40073, syn(40073).vlan(4095).vlan(1).build(), (4095, 1)),
        // A priority tag (id 0) goes to the metadata too, and is no tag.
        (40074, prio(syn(40074), 3).vlan(300).build(), (300, 0)),
    ];
    let want: Vec<(u16, (u16, u16))> = cases.iter().map(|(p, _, v)| (*p, *v)).collect();
    // One tag in the metadata and two in band: three, one too many.
    let too_deep = syn(40075).vlan(1).vlan(2).vlan(3).build();
    let (got, deep, stat) = ns
        .run(move || {
            let mut h = harness();
            let link = tcx_ingress(&h, "nmvlan1");
            let before = h.reasons()[reason::VLAN_TOO_DEEP as usize];
            for (_, b, _) in &cases {
                send_raw("nmvlan0", b);
            }
            send_raw("nmvlan0", &too_deep);
            // The veth delivers from a softirq: wait (bounded) for every frame's trace.
            let mut events = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while (events.len() < cases.len()
                || h.reasons()[reason::VLAN_TOO_DEEP as usize] == before)
                && std::time::Instant::now() < deadline
            {
                events.extend(h.events());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            events.extend(h.events());
            let deep = h.reasons()[reason::VLAN_TOO_DEEP as usize] - before;
            let stat = h.stat("kubelet", TCP, D);
            drop(link);
            let got: Vec<(u16, (u16, u16))> = events
                .iter()
                .map(|e| (e.src_port, (e.vlan_outer, e.vlan_inner)))
                .collect();
            (got, deep, stat)
        })
        .expect("run in the test namespace");
    for (port, vlans) in &want {
        let seen: Vec<_> = got.iter().filter(|(p, _)| p == port).collect();
        assert_eq!(
            seen,
            vec![&(*port, *vlans)],
            "source port {port}: one event with VLAN ids {vlans:?}; all events: {got:?}"
        );
    }
    assert_eq!(
        deep, 1,
        "a metadata tag and two in-band tags are three: counted vlan_too_deep"
    );
    assert_eq!(stat.packets, want.len() as u64, "{stat:?}");
}

/// Attaches the harness's tc ingress program to `dev` (tcx; the link goes with the fd).
fn tcx_ingress(h: &Harness, dev: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _};
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TCX_INGRESS: u32 = 46;
    let prog = h.dp.tc_ingress_program().expect("tc ingress program");
    let prog_fd = prog.fd().expect("program fd").as_fd().as_raw_fd();
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "no device {dev}");
    // union bpf_attr, link_create: prog_fd, target_ifindex, attach_type, flags, tcx {..}.
    let mut attr = [0u32; 16];
    attr[0] = prog_fd as u32;
    attr[1] = ifindex;
    attr[2] = BPF_TCX_INGRESS;
    // SAFETY: attr is a zeroed bpf_attr prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    assert!(fd >= 0, "tcx attach: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd the kernel just returned, owned from here on.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// A test namespace holding one veth pair `a`–`b`, both up, of `mtu` bytes.
fn veth_lab(tag: &str, a: &str, b: &str, mtu: &str) -> node_monitor_lab::Netns {
    let ns = node_monitor_lab::Netns::new(tag).expect("test namespace");
    ns.ip(&[
        "link", "add", a, "mtu", mtu, "type", "veth", "peer", "name", b, "mtu", mtu,
    ])
    .expect("veth pair");
    for dev in [a, b] {
        ns.ip(&["link", "set", dev, "up"]).expect("link up");
    }
    ns
}

/// Sends `frame` as it is out of `dev` over an AF_PACKET socket.
fn send_raw(dev: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: plain syscalls on values built here; the fd is closed below.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no device {dev}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(n, frame.len() as isize, "sendto {dev}: {err}");
    }
}
