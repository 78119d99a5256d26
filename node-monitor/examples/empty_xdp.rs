//! The empty XDP program of the embedded object (`nm_baseline`, XDP_PASS and nothing else),
//! attached to an interface for a given time, then its kernel run statistics: the baseline
//! that live-traffic measurements of the real programs are set beside.
//!
//! `empty_xdp IFACE SECONDS` prints `run_count=N run_time_ns=T` when the time is up. Run it
//! in the same place and under the same traffic as the daemon it is compared with.
use std::time::Duration;

use anyhow::{Context as _, bail};
use aya::programs::{Xdp, XdpMode};
use node_monitor::{datapath::EBPF_OBJECT, metrics::BpfStats};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, seconds] = args.as_slice() else {
        bail!("usage: empty_xdp IFACE SECONDS");
    };
    let seconds: u64 = seconds.parse().context("SECONDS must be a whole number")?;
    let _stats = BpfStats::enable().context("enabling kernel BPF run statistics")?;
    let mut ebpf = aya::Ebpf::load(EBPF_OBJECT).context("loading the embedded object")?;
    let prog: &mut Xdp = ebpf
        .program_mut("nm_baseline")
        .context("no nm_baseline program in the object")?
        .try_into()?;
    prog.load()?;
    // Native first, generic where the driver has no XDP: as the daemon attaches.
    if prog.attach(iface, XdpMode::Driver).is_err() {
        prog.attach(iface, XdpMode::Skb)
            .with_context(|| format!("attaching to {iface}"))?;
    }
    println!("attached");
    std::thread::sleep(Duration::from_secs(seconds));
    let info = prog.info()?;
    println!(
        "run_count={} run_time_ns={}",
        info.run_count(),
        info.run_time().as_nanos()
    );
    Ok(())
}
