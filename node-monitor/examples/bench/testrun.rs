//! What the bench's sections share: one timed XDP run through BPF_PROG_TEST_RUN, the
//! median of a set of runs, and the node address every crafted frame goes to.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use aya::programs::{TestRun, TestRunOptions, Xdp};

/// The node: destination of every crafted frame.
pub(crate) const NODE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Runs `prog` on `frame` `repeat` times; the kernel's mean ns per run. Fails unless the
/// program passes the frame.
pub(crate) fn run(prog: &Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    anyhow::ensure!(
        r.return_value == 2,
        "expected XDP_PASS (2), got {}",
        r.return_value
    );
    Ok(r.duration.as_nanos() as f64)
}

/// The median of `v` (the upper one of an even count); sorts `v`.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
