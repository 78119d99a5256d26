//! The kernel's BPF statistics: enabling them as root, reading program stats.

use node_monitor::metrics;

#[test]
fn bpf_stats_enable_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: BPF_ENABLE_STATS needs root");
        return;
    }
    let s = metrics::BpfStats::enable().expect("BPF_ENABLE_STATS");
    drop(s);
    // The helper skips programs whose info cannot be read.
    assert!(metrics::program_stats(std::iter::empty()).is_empty());
}
