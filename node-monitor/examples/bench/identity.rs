//! The identity-cache section: 1,000 nodes, 100,000 pods (of 1,000 Deployments), 5,000
//! NodePort Services made as the API server sends them and cut down by the watches' own
//! conversions (no API server); the time to fill the stores and to build the index, the heap
//! of the stores and of the index (counted by this binary's allocator, exact), the resident
//! memory, and the lookup latency measured three ways (see [`identity`]).
use std::{
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Instant,
};

use node_monitor::{
    cluster::{Snapshot, testing::synthetic},
    config::Protocol,
    record::fixture,
};

use crate::alloc_count;

const NODES: usize = 1_000;
const PODS: usize = 100_000;
const SERVICES: usize = 5_000;
/// Lookups per timed batch: enough that the two clock reads (about 25-60 ns) are a small
/// part of the batch, few enough that a batch is one sample of the latency distribution.
const BATCH: usize = 64;

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// p50 and p99 of `v`, sorted in place.
fn pcts(v: &mut [f64]) -> (f64, f64) {
    v.sort_unstable_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99))
}

/// A scrambled order of `0..n` (a stride prime to n), so that consecutive lookups land far
/// apart in the tables and find nothing in the cache.
fn scrambled(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7919) % n).collect()
}

/// Each call of `f` timed alone: per-call ns, p50 and p99.
fn single(order: &[usize], mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut lat = Vec::with_capacity(order.len());
    for &i in order {
        let t = Instant::now();
        f(i);
        lat.push(t.elapsed().as_nanos() as f64);
    }
    pcts(&mut lat)
}

/// Calls of `f` timed in batches of [`BATCH`]: the mean ns per call of each batch, p50 and
/// p99 over the batches.
fn batched(order: &[usize], mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut lat = Vec::with_capacity(order.len() / BATCH);
    for chunk in order.chunks_exact(BATCH) {
        let t = Instant::now();
        for &i in chunk {
            f(i);
        }
        lat.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    pcts(&mut lat)
}

fn port(i: usize) -> u16 {
    30_000 + (i % 3000) as u16
}

/// One figure: p50 and p99, ns.
type Pct = (f64, f64);

struct Round {
    floor_single: Pct,
    floor_batched: Pct,
    single: Pct,
    batched: Pct,
    chained: Pct,
    external: Pct,
    identify: Pct,
    enrich: Pct,
}

pub(crate) fn identity(rounds: usize, report: &mut String) -> anyhow::Result<()> {
    let rss_before = rss_kib();
    alloc_count::start();
    let base = alloc_count::held();
    let t = Instant::now();
    let (stores, ips) = synthetic::stores(NODES, PODS, SERVICES);
    let filled = t.elapsed();
    let stores_bytes = alloc_count::held() - base - (ips.capacity() * size_of::<IpAddr>()) as isize;
    let before_index = alloc_count::held();
    alloc_count::reset_peak();
    let t = Instant::now();
    let snapshot = Arc::new(Snapshot::build(&stores, true));
    let built = t.elapsed();
    let index_bytes = alloc_count::held() - before_index;
    let build_peak = alloc_count::peak() - before_index;
    alloc_count::stop();
    let rss_after = rss_kib();
    let resident = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    // What stays resident once the allocator has handed back the pages of what was freed
    // (the objects' JSON, the build's scratch tables): the cache's own footprint.
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    let trimmed = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!("identity: stores filled in {filled:.2?}, index built in {built:.2?}");

    let view = synthetic::view_of(&snapshot);
    let n = ips.len();
    let order = scrambled(n);
    // Addresses outside the cluster (2001:db8:ffff::/48: no node's pod CIDR), for the path an
    // attacker's address takes.
    let outside: Vec<IpAddr> = (0..n)
        .map(|i| {
            let i = i as u32;
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xffff,
                (i >> 16) as u16,
                0,
                0,
                0,
                i as u16,
            ))
        })
        .collect();
    let mut rec = fixture::flagged();
    let mut results = Vec::new();
    for round in 1..=rounds {
        let floor_single = single(&order, |i| {
            black_box(i);
        });
        let floor_batched = batched(&order, |i| {
            black_box(i);
        });
        let lookup = |i: usize| {
            black_box(view.lookup(ips[i]).kind());
        };
        let single_l = single(&order, lookup);
        let batched_l = batched(&order, lookup);
        // Each address chosen by the previous lookup's answer, so that no two lookups
        // overlap: the latency of one lookup, the clock amortized over the batch.
        let mut next = 0usize;
        let chained = batched(&order, |i| {
            let k = view.lookup(ips[(i + next) % n]).kind().len();
            next = black_box(k) & 1;
        });
        let external = batched(&order, |i| {
            black_box(view.lookup(outside[i]).kind());
        });
        let identify = batched(&order, |i| {
            black_box(view.identify(ips[i], port(i), Protocol::Tcp));
        });
        let enrich = batched(&order, |i| {
            rec.src_ip = ips[i];
            rec.dst_port = port(i);
            view.enrich(&mut rec);
            black_box(&rec);
        });
        eprintln!(
            "identity round {round}: lookup single p99 {:.0} ns (timer floor {:.0}), batched p99 {:.1} ns, chained p99 {:.1} ns",
            single_l.1, floor_single.1, batched_l.1, chained.1
        );
        results.push(Round {
            floor_single,
            floor_batched,
            single: single_l,
            batched: batched_l,
            chained,
            external,
            identify,
            enrich,
        });
    }
    drop(stores);

    let together = stores_bytes + index_bytes;
    writeln!(report)?;
    writeln!(report, "## Identity cache")?;
    writeln!(report)?;
    writeln!(
        report,
        "{NODES} nodes, {PODS} pods (100 per ReplicaSet of a Deployment, in 100 namespaces, each with `app` and `pod-template-hash` labels and a 36-character uid), {SERVICES} NodePort Services, made as the API server sends them (`kubectl get -o json` shape) and cut down by the watches' own conversions; no API server. Heap counted by this binary's global allocator (layout sizes, no allocator overhead); resident is the process's VmRSS growth over the section's start, with allocator overhead and whatever glibc keeps of freed memory (the objects' JSON, the build's scratch tables), then again once `malloc_trim(0)` has returned the free pages (the daemon calls it every 10 s, so the trimmed figure is what it keeps resident)."
    )?;
    writeln!(report)?;
    writeln!(report, "| | measured | target | met |")?;
    writeln!(report, "|---|---:|---:|:---:|")?;
    writeln!(
        report,
        "| stores filled (every object converted and stored) | {:.2} s | | |",
        filled.as_secs_f64()
    )?;
    writeln!(
        report,
        "| index built | {:.0} ms | | |",
        built.as_secs_f64() * 1000.0
    )?;
    writeln!(
        report,
        "| heap, stores | {:.1} MiB | | |",
        mib(stores_bytes)
    )?;
    writeln!(
        report,
        "| heap, index (build peak over the stores: {:.1} MiB) | {:.1} MiB | | |",
        mib(build_peak),
        mib(index_bytes)
    )?;
    writeln!(
        report,
        "| heap, together | {:.1} MiB | <= 64 MiB | {} |",
        mib(together),
        if mib(together) <= 64.0 { "yes" } else { "NO" }
    )?;
    writeln!(
        report,
        "| resident, over the section's start | {resident:.1} MiB | | |"
    )?;
    writeln!(
        report,
        "| resident, over the section's start, after `malloc_trim(0)` | {trimmed:.1} MiB | <= 64 MiB | {} |",
        if trimmed <= 64.0 { "yes" } else { "NO" }
    )?;
    writeln!(
        report,
        "| `node_monitor_cluster_cache_bytes` (the cache's own estimate) | {:.1} MiB | | |",
        mib(snapshot.cache_bytes as isize)
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "Lookups over every pod address in a scrambled order (each a cold address), {rounds} rounds, ns, p50 / p99 per round. `lookup` is `View::lookup`: the address table's probe and the identity borrowed from the slot (its kind read), no reference count taken. Timed three ways: one at a time (each between two clock reads: the timer floor beside it, an empty timed call, is of the size of the target itself); in batches of {BATCH} independent lookups, the mean of each batch one sample (the clock amortized; the lookups of a batch may overlap their cache misses, as the daemon's lookups of one batch of records do); and chained, each address picked by the previous lookup's answer so that no two overlap (one lookup's latency, the clock amortized). The target is judged on the batched p99: it is the cost per lookup the daemon pays when it enriches a batch, measured without the clock's own spread; the chained figure, the latency of a lone lookup, is beside it."
    )?;
    writeln!(report)?;
    let cell = |f: &dyn Fn(&Round) -> Pct| {
        results
            .iter()
            .map(|r| {
                let (a, b) = f(r);
                format!("{a:.0} / {b:.0}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let worst = |f: &dyn Fn(&Round) -> Pct| results.iter().map(|r| f(r).1).fold(0.0, f64::max);
    writeln!(report, "| | p50 / p99 per round | target | met |")?;
    writeln!(report, "|---|---|---:|:---:|")?;
    writeln!(
        report,
        "| timer floor, one empty call timed alone | {} | | |",
        cell(&|r| r.floor_single)
    )?;
    writeln!(
        report,
        "| lookup, timed alone | {} | | |",
        cell(&|r| r.single)
    )?;
    writeln!(
        report,
        "| timer floor per call, batches of {BATCH} empty calls | {} | | |",
        cell(&|r| r.floor_batched)
    )?;
    let b = worst(&|r| r.batched);
    writeln!(
        report,
        "| **lookup, batches of {BATCH}** | {} | p99 <= 200 ns | {} |",
        cell(&|r| r.batched),
        if b <= 200.0 { "yes" } else { "NO" }
    )?;
    writeln!(
        report,
        "| lookup, chained (one at a time, no overlap) | {} | | |",
        cell(&|r| r.chained)
    )?;
    writeln!(
        report,
        "| lookup of an address outside the cluster (probe miss, pod-CIDR search), batches | {} | | |",
        cell(&|r| r.external)
    )?;
    writeln!(
        report,
        "| `identify` (source owned: one reference count; this node; the NodePort's Service), batches | {} | | |",
        cell(&|r| r.identify)
    )?;
    writeln!(
        report,
        "| `enrich` (identify, and the record's `Arc<FlowIdentity>`), batches | {} | | |",
        cell(&|r| r.enrich)
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "Enrichment in the alert pipeline with identity on: see the event-pipeline section (the same run of the pipeline with and without a cache of this size)."
    )?;
    Ok(())
}
