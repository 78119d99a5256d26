//! The event budget: the per-source token buckets (one for flagged events, one for allowed
//! and sweep events), the first flagged event of each group in a window that no bucket can
//! withhold, a slot taken over that inherits its buckets, and a full ring buffer: each loss
//! counted by reason so that flagged = emitted + counted losses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, Addr, EVENT_SAMPLED, Event, source_slot,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    token_bucket_per_source,
    token_bucket_slot_taken_over,
    allowed_sweep_traffic_spends_no_flagged_budget,
    first_flagged_event_of_each_group,
    ring_buffer_full_is_counted
);
progs!(the_ring_wakes_its_reader_at_each_eighth);

/// Slots in the test config's token-bucket table (`limits.sources: 256`).
const SOURCE_SLOT_MASK: u32 = 255;

fn slot_of(a: IpAddr) -> u32 {
    source_slot(&Addr::from_ip(a), SOURCE_SLOT_MASK)
}

fn token_bucket_per_source(fam: Fam, prog: Prog) {
    const RATE: u64 = 3;
    assert_ne!(
        slot_of(fam.denied()),
        slot_of(fam.denied2()),
        "the two test sources must not share a token-bucket slot"
    );
    let mut h = harness_with(Knobs {
        events_per_sec: RATE as u32,
        ..Knobs::default()
    });
    let mut bytes = 0;
    // BPF_PROG_TEST_RUN is fast: all of these land well within one second.
    for (src, n) in [(fam.denied(), 10u16), (fam.denied2(), 5)] {
        for i in 0..n {
            let f = tcp(src, fam.node(), 43000 + i, KUBELET, SYN);
            run_expect(&h, prog, &f, prog.pass(), "rate-limited SYN");
            bytes += len(&f);
        }
    }
    let s = S {
        packets: 15,
        bytes,
        new_conns: 15,
        would_drop: 15,
        events: 2 * RATE,
        lost_rate_limited: 15 - 2 * RATE,
        ..S::default()
    };
    h.assert_stats("token bucket", &[("kubelet", TCP, D, s)]);
    // The burst of each source: its first RATE connections.
    let mut want = Vec::new();
    for src in [fam.denied(), fam.denied2()] {
        for i in 0..RATE as u16 {
            want.push(flagged(
                &h,
                prog,
                &tcp(src, fam.node(), 43000 + i, KUBELET, SYN),
                "kubelet",
                ACTION_WOULD_DROP,
            ));
        }
    }
    assert_events("token bucket", &h.events(), &want);
    assert_all_invariants("token bucket", &h);
}

/// The token-bucket table is direct-mapped: a source whose slot another source holds takes it
/// over, and inherits the slot's buckets as they are (never a full one: two sources that
/// alternate in one slot share one budget, they do not each get a fresh burst per takeover),
/// and the groups already reported in this window. Rate 2: `a` spends one token, `b` takes
/// the slot over and spends the other, and from then on every takeover finds the bucket empty.
fn token_bucket_slot_taken_over(fam: Fam, prog: Prog) {
    let mut h = harness_with(Knobs {
        events_per_sec: 2,
        ..Knobs::default()
    });
    let a = fam.denied();
    let b = slot_mate(fam, a);
    let mut bytes = 0;
    let mut want = Vec::new();
    for i in 0..8u16 {
        let src = if i % 2 == 0 { a } else { b };
        let f = tcp(src, fam.node(), 41000 + i, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "shared slot");
        bytes += len(&f);
        if i < 2 {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let s = S {
        packets: 8,
        bytes,
        new_conns: 8,
        would_drop: 8,
        events: 2,
        lost_rate_limited: 6,
        ..S::default()
    };
    h.assert_stats("slot takeover", &[("kubelet", TCP, D, s)]);
    assert_events("slot takeover", &h.events(), &want);
    assert_all_invariants("slot takeover", &h);
}

/// Another denied source (outside the kubelet allowlist) in the same token-bucket slot as `a`.
fn slot_mate(fam: Fam, a: IpAddr) -> IpAddr {
    (1..=u16::MAX)
        .map(|i| -> IpAddr {
            match fam {
                Fam::V4 => Ipv4Addr::new(198, 51, (i >> 8) as u8, i as u8).into(),
                Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 1, i).into(),
            }
        })
        .find(|b| *b != a && slot_of(*b) == slot_of(a))
        .expect("a source sharing the slot")
}

/// A NodePort range open to everyone and sweep-watched (as in the default config), beside
/// the kubelet: every new connection to a NodePort is reported under the source's budget.
const NODEPORT: u16 = 30000;

fn nodeport_yaml(rate: u32) -> String {
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
  events_per_source_per_second: {rate}
"#
    )
}

/// Issue 15: a source that sends allowed, sweep-watched NodePort datagrams has spent its
/// allowed budget, and its kubelet attempts that follow are still reported, burst and all:
/// flagged events draw on a budget of their own.
fn allowed_sweep_traffic_spends_no_flagged_budget(fam: Fam, prog: Prog) {
    const RATE: u64 = 3;
    let mut h = Harness::yaml(&nodeport_yaml(RATE as u32));
    let src = fam.denied();
    let mut want = Vec::new();
    let mut np_bytes = 0;
    for i in 0..10u16 {
        let f = udp(src, fam.node(), 50000 + i, NODEPORT);
        run_expect(&h, prog, &f, prog.pass(), "allowed NodePort datagram");
        np_bytes += len(&f);
        if u64::from(i) < RATE {
            want.push(Event {
                group: h.gid("nodeport"),
                verdict: A,
                action: ACTION_PASS,
                ..event_for(EVENT_SAMPLED, prog, &f)
            });
        }
    }
    let mut k_bytes = 0;
    for i in 0..=RATE as u16 {
        let f = tcp(src, fam.node(), 43000 + i, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "kubelet SYN");
        k_bytes += len(&f);
        if u64::from(i) < RATE {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let np = S {
        packets: 10,
        bytes: np_bytes,
        new_conns: 10,
        events: RATE,
        lost_rate_limited: 10 - RATE,
        ..S::default()
    };
    let k = S {
        packets: RATE + 1,
        bytes: k_bytes,
        new_conns: RATE + 1,
        would_drop: RATE + 1,
        events: RATE,
        lost_rate_limited: 1,
        ..S::default()
    };
    h.assert_stats(
        "flagged budget apart",
        &[("nodeport", UDP, A, np), ("kubelet", TCP, D, k)],
    );
    assert_events("flagged budget apart", &h.events(), &want);
    assert_all_invariants("flagged budget apart", &h);
}

/// A source that has spent its flagged budget on the kubelet still gets its first attempt on
/// another group reported (that group's first in this window), and only the first: the
/// second is rate-limited.
fn first_flagged_event_of_each_group(fam: Fam, prog: Prog) {
    const RATE: u64 = 3;
    let mut h = harness_with(Knobs {
        events_per_sec: RATE as u32,
        ..Knobs::default()
    });
    let src = fam.denied();
    let mut want = Vec::new();
    let mut k_bytes = 0;
    for i in 0..10u16 {
        let f = tcp(src, fam.node(), 43000 + i, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "kubelet SYN");
        k_bytes += len(&f);
        if u64::from(i) < RATE {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let mut e_bytes = 0;
    for i in 0..2u16 {
        let f = tcp(src, fam.node(), 44000 + i, ENFORCED, SYN);
        run_expect(&h, prog, &f, prog.drop(), "enforced SYN");
        e_bytes += len(&f);
        if i == 0 {
            want.push(flagged(&h, prog, &f, "enforced", ACTION_DROPPED));
        }
    }
    let k = S {
        packets: 10,
        bytes: k_bytes,
        new_conns: 10,
        would_drop: 10,
        events: RATE,
        lost_rate_limited: 10 - RATE,
        ..S::default()
    };
    let e = S {
        packets: 2,
        bytes: e_bytes,
        new_conns: 2,
        dropped: 2,
        events: 1,
        lost_rate_limited: 1,
        ..S::default()
    };
    h.assert_stats(
        "first of each group",
        &[("kubelet", TCP, D, k), ("enforced", TCP, D, e)],
    );
    assert_events("first of each group", &h.events(), &want);
    assert_all_invariants("first of each group", &h);
}

/// Also covers `events_per_source_per_second: 0` (unlimited): 200 connections from one
/// source within a second, and not one is rate-limited.
fn ring_buffer_full_is_counted(fam: Fam, prog: Prog) {
    let mut h = harness_with(Knobs {
        ring_bytes: 4096,
        ..Knobs::default()
    });
    let n = 200u64;
    let mut bytes = 0;
    for i in 0..n as u16 {
        let f = tcp(fam.denied(), fam.node(), 45000 + i, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "ring full, denied");
        bytes += len(&f);
    }
    let s = h.stat("kubelet", TCP, D);
    let read = h.events().len() as u64;
    assert!(
        s.events > 0 && s.lost_ringbuf_full > 0,
        "ring full: some events fit, some are lost: {s:?}"
    );
    assert_eq!(
        read, s.events,
        "ring full: events counted == records in the ring"
    );
    let want = S {
        packets: n,
        bytes,
        new_conns: n,
        would_drop: n,
        events: read,
        lost_ringbuf_full: n - read,
        ..S::default()
    };
    h.assert_stats("ring full, denied", &[("kubelet", TCP, D, want)]);

    // Drained: events flow again. Then the same for allowed (sampled) connections.
    let mut abytes = 0;
    for i in 0..n as u16 {
        let f = tcp(fam.allowed(), fam.node(), 45000 + i, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "ring full, allowed");
        abytes += len(&f);
    }
    let a = h.stat("kubelet", TCP, A);
    let aread = h.events().len() as u64;
    assert!(
        a.events > 0 && a.lost_ringbuf_full > 0,
        "ring full (allowed): {a:?}"
    );
    assert_eq!(
        aread, a.events,
        "ring full (allowed): events counted == records in the ring"
    );
    let wa = S {
        packets: n,
        bytes: abytes,
        new_conns: n,
        events: aread,
        lost_ringbuf_full: n - aread,
        ..S::default()
    };
    h.assert_stats(
        "ring full",
        &[("kubelet", TCP, D, want), ("kubelet", TCP, A, wa)],
    );
    assert_all_invariants("ring full", &h);
}

/// A commit wakes the ring's reader (epoll, as tokio waits on it) only when the unread bytes
/// cross a multiple of an eighth of the ring: here 512 bytes of a 4096-byte ring, 80 bytes an
/// event. A lone event wakes nobody (the daemon reads it on its 50 ms tick); the seventh
/// unread one (480 -> 560 bytes) does, and so do the thirteenth (960 -> 1040) and the twentieth
/// (1520 -> 1600).
/// The readiness the ring reports when asked stays true all along: only the wake-up is saved.
fn the_ring_wakes_its_reader_at_each_eighth(prog: Prog) {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    assert_eq!(
        node_monitor_common::RING_RECORD_BYTES,
        80,
        "an event's size in the ring"
    );
    let mut h = harness_with(Knobs {
        ring_bytes: 4096,
        ..Knobs::default()
    });
    // SAFETY: plain epoll calls on fds that outlive them; the epoll fd is closed below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        ep >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    let mut reg = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 1,
    };
    let ring_fd = h.ring.as_fd().as_raw_fd();
    // SAFETY: as above.
    let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ring_fd, &raw mut reg) };
    assert_eq!(r, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    // Wake-ups the reader got within `ms` (the kernel's irq_work delivers them soon after
    // the commit, not within it).
    let woken = |ms: i32| {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` has room for the 4 events asked for.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, ms) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        n
    };
    assert_eq!(woken(0), 0, "an empty ring at registration");
    let mut sent = 0u16;
    let mut send = |h: &Harness| {
        sent += 1;
        let f = tcp(DENIED_V4, NODE_V4, 46000 + sent, KUBELET, SYN);
        run_expect(h, prog, &f, prog.pass(), "denied SYN");
    };
    for n in 1..=20u16 {
        send(&h);
        let crossing = matches!(n, 7 | 13 | 20);
        assert_eq!(
            woken(if crossing { 1000 } else { 50 }),
            i32::from(crossing),
            "after {n} unread events ({} bytes): woken only on crossing a multiple of 512",
            u64::from(n) * node_monitor_common::RING_RECORD_BYTES
        );
    }
    let events = h.events();
    assert_eq!(events.len(), 20, "every event is in the ring, woken or not");
    // Read to empty: the next lone event wakes nobody either.
    send(&h);
    assert_eq!(woken(50), 0, "a lone event after the reader caught up");
    assert_eq!(h.events().len(), 1);
    // SAFETY: closes the epoll fd made above.
    unsafe { libc::close(ep) };
}
