//! The event budget: the per-source token bucket and a full ring buffer, each loss
//! counted by reason so that flagged = emitted + counted losses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_monitor_common::{ACTION_WOULD_DROP, Addr, source_slot};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    token_bucket_per_source,
    token_bucket_slot_taken_over,
    ring_buffer_full_is_counted
);

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
/// over with a full bucket. Two sources in one slot, rate 1: the first gets its event and is
/// then limited; the second takes the slot (event); the first takes it back (event).
fn token_bucket_slot_taken_over(fam: Fam, prog: Prog) {
    let mut h = harness_with(Knobs {
        events_per_sec: 1,
        ..Knobs::default()
    });
    let a = fam.denied();
    // Another denied source (outside the kubelet allowlist) in the same slot.
    let b = (1..=u16::MAX)
        .map(|i| -> IpAddr {
            match fam {
                Fam::V4 => Ipv4Addr::new(198, 51, (i >> 8) as u8, i as u8).into(),
                Fam::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 1, i).into(),
            }
        })
        .find(|b| *b != a && slot_of(*b) == slot_of(a))
        .expect("a source sharing the slot");
    let steps = [
        (a, 41000u16, true),
        (a, 41001, false),
        (b, 41002, true),
        (a, 41003, true),
    ];
    let mut bytes = 0;
    let mut want = Vec::new();
    for (src, port, reported) in steps {
        let f = tcp(src, fam.node(), port, KUBELET, SYN);
        run_expect(&h, prog, &f, prog.pass(), "shared slot");
        bytes += len(&f);
        if reported {
            want.push(flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP));
        }
    }
    let s = S {
        packets: 4,
        bytes,
        new_conns: 4,
        would_drop: 4,
        events: 3,
        lost_rate_limited: 1,
        ..S::default()
    };
    h.assert_stats("slot takeover", &[("kubelet", TCP, D, s)]);
    assert_events("slot takeover", &h.events(), &want);
    assert_all_invariants("slot takeover", &h);
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
