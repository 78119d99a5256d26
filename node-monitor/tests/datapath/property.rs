//! Issue 13: generated frames through each program, 100,000 each (10 million in `cargo xtask
//! bench --only property`), with every property of `common/property.rs` checked.

use node_monitor_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::{
    common::{
        framegen::Space,
        packets::*,
        progrun::*,
        property::{Outcome, run_property},
    },
    config::*,
};

/// Frames per program in the test.
const FRAMES: u64 = 100_000;

fn space(prog: Prog) -> Space {
    Space {
        watched: vec![
            (IPPROTO_TCP, KUBELET),
            (IPPROTO_TCP, ENFORCED),
            (IPPROTO_UDP, ENFORCED),
            (IPPROTO_UDP, UDP_SVC),
            (IPPROTO_TCP, STRICT),
        ],
        sources_v4: vec![ALLOWED_V4, ALLOWED2_V4, DENIED_V4],
        sources_v6: vec![ALLOWED_V6, ALLOWED2_V6, DENIED_V6],
        node_v4: NODE_V4,
        node_v6: NODE_V6,
        egress: prog == Prog::TcEgress,
    }
}

fn run(prog: Prog, seed: u64) -> Outcome {
    run_property(&mut harness(), prog, seed, FRAMES, space(prog))
}

#[test]
fn generated_frames_xdp() {
    let o = run(Prog::Xdp, 0x5eed_0001);
    // The generator reaches every kind of outcome.
    assert!(
        o.dropped > 0 && o.events > 0 && o.passed > o.dropped,
        "{o:?}"
    );
}

#[test]
fn generated_frames_tc_ingress() {
    let o = run(Prog::TcIngress, 0x5eed_0002);
    assert!(
        o.dropped > 0 && o.events > 0 && o.passed > o.dropped,
        "{o:?}"
    );
}

#[test]
fn generated_frames_tc_egress() {
    let o = run(Prog::TcEgress, 0x5eed_0003);
    // Answers from watched ports reach NM-1030 and, in the drop group, its drops.
    assert!(
        o.dropped > 0 && o.events > 0 && o.passed > o.dropped,
        "{o:?}"
    );
}
