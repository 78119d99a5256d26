//! The identity cache at scale, without an API server: 100,000 pods (of 1,000 Deployments),
//! 5,000 NodePort Services, 1,000 nodes built straight into the stores; the index build
//! time, the resident memory of stores plus index, and the lookup latency (one `View` per
//! batch, as the daemon takes it). `cargo run --release --example identity_bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]
use std::{hint::black_box, time::Instant};

use node_monitor::{cluster::testing::synthetic, config::Protocol};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let before = rss_kib();
    let t = Instant::now();
    let (stores, ips) = synthetic::stores(1_000, 100_000, 5_000);
    let filled = t.elapsed();
    let t = Instant::now();
    let s = synthetic::synthetic(1_000, 100_000, 5_000);
    let built = t.elapsed();
    drop((stores, ips));
    let after = rss_kib();
    println!(
        "stores filled in {filled:?}; stores + index built in {built:?} (index alone: about the difference)"
    );
    println!(
        "resident: {} KiB more than before ({} KiB total)",
        after.saturating_sub(before),
        after
    );
    let view = s.view();
    // Lookups of every pod address, in a scrambled order, timed one by one.
    let n = s.pod_ips.len();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let ip = s.pod_ips[(i * 7919) % n];
        let t = Instant::now();
        let id = view.identify(ip, 30_000 + (i % 3000) as u16, Protocol::Tcp);
        black_box(&id);
        lat.push(t.elapsed().as_nanos());
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "lookup (identify: source, node, NodePort Service) over {n}: p50 {} ns, p99 {} ns, max {} ns",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    let t = Instant::now();
    let v = s.view();
    black_box(&v);
    println!("taking a view: {:?}", t.elapsed());
}
