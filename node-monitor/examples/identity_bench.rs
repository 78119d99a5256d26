//! The identity cache at scale, without an API server: 100,000 pods (of 1,000 Deployments),
//! 5,000 NodePort Services, 1,000 nodes built straight into the stores; the build times, the
//! heap bytes of the stores and of the index (counted by this program's allocator, exact),
//! the resident memory, and the lookup latency (one `View` per batch, as the daemon takes
//! it). `cargo run --release --example identity_bench [-- ROUNDS]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]
use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use node_monitor::{
    cluster::{Snapshot, View, testing::synthetic},
    config::Protocol,
    record::fixture,
};

/// The system allocator, counting the bytes held now and the most held at once.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let now = HELD.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            HELD.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// p50, p99 and max of `lat` (ns), sorted in place.
fn pcts(lat: &mut [u64]) -> (u64, u64, u64) {
    lat.sort_unstable();
    let at = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99), lat[lat.len() - 1])
}

/// Times `f` on every pod address in a scrambled order, one call at a time.
fn timed(ips: &[IpAddr], mut f: impl FnMut(usize, IpAddr)) -> (u64, u64, u64) {
    let n = ips.len();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let ip = ips[(i * 7919) % n];
        let t = Instant::now();
        f(i, ip);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    pcts(&mut lat)
}

fn port(i: usize) -> u16 {
    30_000 + (i % 3000) as u16
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |a| a.parse().expect("ROUNDS is a number"));
    let rss_before = rss_kib();
    let base = held();
    let t = Instant::now();
    let (stores, ips) = synthetic::stores(1_000, 100_000, 5_000);
    let filled = t.elapsed();
    let stores_bytes = held() - base - ips.capacity() * size_of::<IpAddr>();
    PEAK.store(held(), Ordering::Relaxed);
    let before_index = held();
    let t = Instant::now();
    let snapshot = Arc::new(Snapshot::build(&stores, true));
    let built = t.elapsed();
    let index_bytes = held() - before_index;
    let build_peak = PEAK.load(Ordering::Relaxed) - before_index;
    let rss_after = rss_kib();
    println!(
        "1,000 nodes, 100,000 pods, 5,000 NodePort Services: stores filled in {filled:.2?}, index built in {built:.2?}"
    );
    println!(
        "heap: stores {:.1} MiB, index {:.1} MiB (build peak {:.1} MiB over the stores), together {:.1} MiB; the cache's own estimate (node_monitor_cluster_cache_bytes): {:.1} MiB",
        mib(stores_bytes),
        mib(index_bytes),
        mib(build_peak),
        mib(stores_bytes + index_bytes),
        mib(snapshot.cache_bytes),
    );
    println!(
        "resident: {:.1} MiB more than before ({:.1} MiB total)",
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let view = synthetic::view_of(&snapshot);
    let floor = timed(&ips, |_, ip| {
        black_box(ip);
    });
    println!(
        "timer floor (an empty timed call): p50 {} ns, p99 {} ns",
        floor.0, floor.1
    );
    for round in 1..=rounds {
        let id = timed(&ips, |i, ip| {
            black_box(view.identify(ip, port(i), Protocol::Tcp));
        });
        let mut rec = fixture::flagged();
        let en = timed(&ips, |i, ip| {
            rec.src_ip = ip;
            rec.dst_port = port(i);
            view.enrich(&mut rec);
            black_box(&rec);
        });
        // Throughput: every address once, timed as a whole.
        let t = Instant::now();
        for (i, ip) in ips.iter().enumerate() {
            black_box(view.identify(*ip, port(i), Protocol::Tcp));
        }
        let mean = t.elapsed().as_nanos() as f64 / ips.len() as f64;
        println!(
            "round {round}: identify p50 {} ns, p99 {} ns, max {} ns; enrich (identify + the record's Arc) p50 {} ns, p99 {} ns; identify in a loop: {mean:.0} ns each",
            id.0, id.1, id.2, en.0, en.1
        );
    }
    let t = Instant::now();
    let v: View = synthetic::view_of(&snapshot);
    black_box(&v);
    println!("taking a view: {:?}", t.elapsed());
    drop(stores);
}
