//! The property run of the eBPF programs on generated frames ([`super::framegen`]), shared by
//! the datapath test `property` (100,000 frames a program) and the `property` section of
//! `cargo xtask bench` (10 million). It panics on the first violated property: the verdict is
//! pass unless a drop group's source is flagged (ingress) or a drop group's unseen
//! acceptance is dropped (egress), and every drop is counted; every frame an ingress program
//! sees is counted exactly once (in `GROUP_STATS` or under one of `reason::DISPOSITIONS`); no
//! event names a port no group watches; the counter identities hold.

use node_monitor_common::reason;

use super::{
    framegen::{FrameGen, Space},
    progrun::{Harness, Prog, assert_all_invariants},
};

/// Events are drained (and checked) this often, so the ring buffer never fills for long.
const DRAIN_EVERY: u64 = 500;

/// What a run found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) frames: u64,
    pub(crate) passed: u64,
    pub(crate) dropped: u64,
    pub(crate) events: u64,
    /// Frames run (`refused` not among them).
    /// Frames BPF_PROG_TEST_RUN refused before running the program (EINVAL: for skb programs
    /// the kernel wants a whole fixed IP header behind an IP EtherType); XDP takes them all,
    /// so the XDP run covers them.
    pub(crate) refused: u64,
}

/// Runs `frames` generated frames (seed `seed`, drawn from `space`) through `prog` on `h`
/// (a freshly loaded data path) and checks every property; returns the tallies.
pub(crate) fn run_property(
    h: &mut Harness,
    prog: Prog,
    seed: u64,
    frames: u64,
    space: Space,
) -> Outcome {
    let watched = space.watched.clone();
    let mut generator = FrameGen::new(seed, space);
    let mut o = Outcome::default();
    let before = h.reasons();
    let check_events = |h: &mut Harness, o: &mut Outcome| {
        for ev in h.events() {
            o.events += 1;
            // Ingress events name the watched destination port; egress ones (answers,
            // NM-1030) are in ingress orientation too.
            assert!(
                watched.contains(&(ev.proto, ev.dst_port)) && ev.group != 0,
                "seed {seed}: an event for a port no group watches: {ev:?}"
            );
        }
    };
    for i in 0..frames {
        let frame = generator.next_frame();
        let r = match h.try_run(prog, &frame) {
            Ok(r) => r,
            Err(aya::programs::ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                // Only for skb programs, and only what the kernel's test_run refuses: an
                // IPv4 or IPv6 EtherType without a whole fixed IP header behind it.
                let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
                assert!(
                    prog != Prog::Xdp
                        && ((ethertype == 0x0800 && frame.len() < 14 + 20)
                            || (ethertype == 0x86dd && frame.len() < 14 + 40)),
                    "seed {seed}, frame {i}: test_run refused {frame:02x?}"
                );
                o.refused += 1;
                continue;
            }
            Err(e) => panic!("seed {seed}, frame {i}: test_run: {e}: {frame:02x?}"),
        };
        if r == prog.pass() {
            o.passed += 1;
        } else if r == prog.drop() {
            o.dropped += 1;
        } else {
            panic!("seed {seed}, frame {i}: {prog:?} returned {r}: {frame:02x?}");
        }
        o.frames += 1;
        if (i + 1) % DRAIN_EVERY == 0 {
            check_events(h, &mut o);
        }
    }
    check_events(h, &mut o);
    let after = h.reasons();
    let reasons: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let stats = h.stats();
    assert_all_invariants(&format!("{prog:?} seed {seed}"), h);
    let dropped_by_groups: u64 = stats.values().map(|s| s.dropped).sum();
    if prog == Prog::TcEgress {
        // Egress drops only a drop group's acceptance nobody saw asked for.
        assert_eq!(
            o.dropped,
            reasons[reason::UNSEEN_DROPPED as usize],
            "seed {seed}: every egress drop is counted"
        );
        assert_eq!(dropped_by_groups, 0, "egress counts nothing in GROUP_STATS");
    } else {
        assert_eq!(
            o.dropped,
            dropped_by_groups + reasons[reason::DROPPED_UNPARSED as usize],
            "seed {seed}: every drop is a flagged source of a drop group, or a drop group \
             failing closed, and counted: {reasons:?}"
        );
        let in_groups: u64 = stats.values().map(|s| s.packets).sum();
        let by_reason: u64 = reason::DISPOSITIONS
            .iter()
            .map(|r| reasons[*r as usize])
            .sum();
        assert_eq!(
            o.frames,
            in_groups + by_reason,
            "seed {seed}: every frame counted exactly once ({in_groups} in groups, \
             {by_reason} by reason: {reasons:?})"
        );
    }
    eprintln!("{prog:?} seed {seed}: {o:?}, reasons {reasons:?}");
    o
}
