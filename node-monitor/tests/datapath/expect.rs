//! Expected values: the events an ingress program should write for a frame, and the
//! assertions on return values and event lists.

use std::net::IpAddr;

use node_monitor_common::{ACTION_PASS, Addr, EVENT_FLAGGED, EVENT_SAMPLED, Event};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
};

/// The event an ingress program should write for `f`, with group/verdict/action zero (the
/// caller fills those in with struct update syntax).
pub(crate) fn event_for(kind: u8, prog: Prog, f: &Frame) -> Event {
    let (src_port, dst_port, proto, tcp_flags) = match f.l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            ..
        } => (sport, dport, IPPROTO_TCP, flags),
        L4::Udp { sport, dport } => (sport, dport, IPPROTO_UDP, 0),
        ref other => panic!("no event for {other:?}"),
    };
    Event {
        ts_ns: 0,
        src_addr: Addr::from_ip(f.l3.src()),
        dst_addr: Addr::from_ip(f.l3.dst()),
        ifindex: test_run_ifindex(),
        pkt_len: f.build().len() as u32,
        src_port,
        dst_port,
        vlan_outer: f.vlans.first().map_or(0, |t| t.vid),
        vlan_inner: f.vlans.get(1).map_or(0, |t| t.vid),
        kind,
        family: if f.l3.is_v4() { 4 } else { 6 },
        proto,
        tcp_flags,
        group: 0,
        verdict: 0,
        action: 0,
        answer: 0,
        hook: prog.hook(),
        // `sampled` (1 only for flow records picked by 1-in-N sampling) and padding.
        ..Event::default()
    }
}

/// A flagged (denied) event for `f` in `group`.
pub(crate) fn flagged(h: &Harness, prog: Prog, f: &Frame, group: &str, action: u8) -> Event {
    Event {
        group: h.gid(group),
        verdict: D,
        action,
        ..event_for(EVENT_FLAGGED, prog, f)
    }
}

/// A sampled (allowed) event for `f` in `group`, picked by 1-in-N sampling.
pub(crate) fn sampled(h: &Harness, prog: Prog, f: &Frame, group: &str) -> Event {
    Event {
        group: h.gid(group),
        verdict: A,
        action: ACTION_PASS,
        sampled: 1,
        ..event_for(EVENT_SAMPLED, prog, f)
    }
}

pub(crate) fn len(f: &Frame) -> u64 {
    f.build().len() as u64
}

pub(crate) fn tcp(
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Frame {
    Frame::tcp(src, dst, sport, dport, flags)
}

pub(crate) fn udp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, sport: u16, dport: u16) -> Frame {
    Frame::udp(src, dst, sport, dport)
}

/// Runs `f` through `prog` and asserts the return value.
#[track_caller]
pub(crate) fn run_expect(h: &Harness, prog: Prog, f: &Frame, want: u32, ctx: &str) {
    let got = h.run(prog, &f.build());
    assert_eq!(
        got,
        want,
        "{ctx}: {prog:?} return value (pass {}, drop {})",
        prog.pass(),
        prog.drop()
    );
}

#[track_caller]
pub(crate) fn assert_events(ctx: &str, have: &[Event], want: &[Event]) {
    assert_eq!(have.len(), want.len(), "{ctx}: number of events: {have:#?}");
    for (i, (h, w)) in have.iter().zip(want).enumerate() {
        assert_event(&format!("{ctx}: event {i}"), h, w);
    }
}
