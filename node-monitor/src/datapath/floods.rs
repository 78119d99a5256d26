//! Flood summaries read back from the data path: the per-group HyperLogLog sketches and
//! space-saving tables of withheld new connections (per CPU: merged here, and reset when a
//! flood window ends), and the node's answers per group (cumulative counters).
//!
//! Merging: a HyperLogLog sketch of several CPUs is the register-wise maximum (the sketch of
//! the union of their sources). Space-saving tables are merged as mergeable summaries
//! (Agarwal et al.): a key's count is the sum of its counts, plus, for each CPU whose full
//! table lacks it, that table's smallest count (what the key may have had there), so that a
//! merged count never undercounts; its error bound grows by the same amount.
use std::{collections::BTreeMap, net::IpAddr};

use aya::{maps::PerCpuValues, util::nr_cpus};
use node_monitor_common::{
    Addr, FloodTop, GroupAnswers, HLL_REGISTERS, HllRegisters, TOP_PORTS, TOP_SOURCES, TopPort,
    TopSource, map_name,
};

use super::{Datapath, DatapathError, Result};

/// A source among the top withheld sources of a group in a flood window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopSourceCount {
    pub ip: IpAddr,
    /// Withheld new connections, at least (space-saving: the table's count minus what the
    /// entry inherited); the true count is at most `withheld + error`.
    pub withheld: u64,
    /// Of those, withheld by the source's own budget (since it holds its entry).
    pub rate_limited: u64,
    pub error: u64,
}

/// A destination port among the top ports of a group's withheld new connections (as
/// [`TopSourceCount`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopPortCount {
    pub port: u16,
    pub withheld: u64,
    pub error: u64,
}

/// An entry that says nothing: one attempt at most is its own, the rest it inherited. A
/// flood of spoofed sources fills the table with those; they are left out.
fn uninformative(withheld: u64, error: u64) -> bool {
    error > 0 && withheld <= 1
}

/// One group's flood summary, merged over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodSketch {
    /// HyperLogLog estimate of the distinct sources of the withheld new connections.
    pub distinct_sources: u64,
    /// Highest count first.
    pub top_sources: Vec<TopSourceCount>,
    pub top_ports: Vec<TopPortCount>,
}

/// The HyperLogLog estimate of a sketch's registers (Flajolet et al. 2007, with the
/// small-range correction; a 64-bit hash needs no large-range one).
pub fn hll_estimate(regs: &[u8]) -> u64 {
    let m = regs.len() as f64;
    if regs.is_empty() {
        return 0;
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|r| **r == 0).count();
    let est = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    est.round() as u64
}

/// The register-wise maximum of per-CPU sketches.
pub(crate) fn merge_registers<'a>(
    per_cpu: impl IntoIterator<Item = &'a HllRegisters>,
) -> Box<HllRegisters> {
    let mut out = Box::new([0u8; HLL_REGISTERS]);
    for regs in per_cpu {
        for (o, r) in out.iter_mut().zip(regs.iter()) {
            *o = (*o).max(*r);
        }
    }
    out
}

/// Merges per-CPU space-saving tables of sources; highest count first, at most
/// `TOP_SOURCES`.
pub(crate) fn merge_sources(per_cpu: &[[TopSource; TOP_SOURCES]]) -> Vec<TopSourceCount> {
    let mut merged: BTreeMap<(u8, [u64; 2]), (u64, u64, u64)> = BTreeMap::new();
    let key = |e: &TopSource| (e.family, e.addr.0);
    for table in per_cpu {
        for e in table.iter().filter(|e| e.count > 0) {
            let m = merged.entry(key(e)).or_default();
            m.0 += e.count;
            m.1 += e.rate_limited;
            m.2 += e.error;
        }
    }
    // A key missing from a full table may have had up to that table's minimum there.
    for table in per_cpu {
        if table.iter().any(|e| e.count == 0) {
            continue;
        }
        let min = table.iter().map(|e| e.count).min().unwrap_or(0);
        for (k, m) in &mut merged {
            if !table.iter().any(|e| key(e) == *k) {
                m.0 += min;
                m.2 += min;
            }
        }
    }
    let mut out: Vec<TopSourceCount> = merged
        .into_iter()
        .map(
            |((family, addr), (count, rate_limited, error))| TopSourceCount {
                ip: Addr(addr).to_ip(family),
                withheld: count.saturating_sub(error),
                rate_limited,
                error,
            },
        )
        .filter(|t| !uninformative(t.withheld, t.error))
        .collect();
    out.sort_by(|a, b| b.withheld.cmp(&a.withheld).then(a.ip.cmp(&b.ip)));
    out.truncate(TOP_SOURCES);
    out
}

/// Merges per-CPU space-saving tables of ports, as [`merge_sources`].
pub(crate) fn merge_ports(per_cpu: &[[TopPort; TOP_PORTS]]) -> Vec<TopPortCount> {
    let mut merged: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for table in per_cpu {
        for e in table.iter().filter(|e| e.count > 0) {
            let m = merged.entry(e.port).or_default();
            m.0 += e.count;
            m.1 += e.error;
        }
    }
    for table in per_cpu {
        if table.iter().any(|e| e.count == 0) {
            continue;
        }
        let min = table.iter().map(|e| e.count).min().unwrap_or(0);
        for (port, m) in &mut merged {
            if !table.iter().any(|e| e.port == *port) {
                m.0 += min;
                m.1 += min;
            }
        }
    }
    let mut out: Vec<TopPortCount> = merged
        .into_iter()
        .map(|(port, (count, error))| TopPortCount {
            port,
            withheld: count.saturating_sub(error),
            error,
        })
        .filter(|t| !uninformative(t.withheld, t.error))
        .collect();
    out.sort_by(|a, b| b.withheld.cmp(&a.withheld).then(a.port.cmp(&b.port)));
    out.truncate(TOP_PORTS);
    out
}

impl Datapath {
    /// The flood summary of group `name` since its last reset, merged over CPUs; then resets
    /// it (updates that land between the read and the reset are lost to both windows).
    /// None for a group without a kernel id.
    pub fn take_flood_sketch(&mut self, name: &str) -> Result<Option<FloodSketch>> {
        let Some(id) = self.ids.id(name) else {
            return Ok(None);
        };
        let sketch = self.flood_sketch(id)?;
        self.reset_flood_sketch(id)?;
        Ok(Some(sketch))
    }

    /// The flood summary of kernel group `id`, merged over CPUs (no reset).
    pub fn flood_sketch(&self, id: u8) -> Result<FloodSketch> {
        let index = u32::from(id);
        let regs = self
            .flood_hll
            .get(&index, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::FLOOD_HLL,
                error,
            })?;
        let top = self
            .flood_top
            .get(&index, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::FLOOD_TOP,
                error,
            })?;
        let sources: Vec<_> = top.iter().map(|t| t.sources).collect();
        let ports: Vec<_> = top.iter().map(|t| t.ports).collect();
        Ok(FloodSketch {
            distinct_sources: hll_estimate(&merge_registers(regs.iter())[..]),
            top_sources: merge_sources(&sources),
            top_ports: merge_ports(&ports),
        })
    }

    /// The raw registers of kernel group `id`'s sketch, merged over CPUs (tests).
    pub fn flood_registers(&self, id: u8) -> Result<Box<HllRegisters>> {
        let regs = self
            .flood_hll
            .get(&u32::from(id), 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::FLOOD_HLL,
                error,
            })?;
        Ok(merge_registers(regs.iter()))
    }

    /// The raw per-CPU space-saving tables of kernel group `id` (tests).
    pub fn flood_tables(&self, id: u8) -> Result<Vec<FloodTop>> {
        let top = self
            .flood_top
            .get(&u32::from(id), 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::FLOOD_TOP,
                error,
            })?;
        Ok(top.iter().copied().collect())
    }

    /// Zeroes the flood summary of kernel group `id` on every CPU.
    pub(crate) fn reset_flood_sketch(&mut self, id: u8) -> Result<()> {
        let cpus = nr_cpus().map_err(|(path, error)| DatapathError::PinDir {
            path: path.into(),
            error,
        })?;
        let map_err = |name, error| DatapathError::Map { name, error };
        let regs = PerCpuValues::try_from(vec![[0u8; HLL_REGISTERS]; cpus])
            .map_err(|e| map_err(map_name::FLOOD_HLL, e.into()))?;
        self.flood_hll
            .set(u32::from(id), regs, 0)
            .map_err(|e| map_err(map_name::FLOOD_HLL, e))?;
        let top = PerCpuValues::try_from(vec![FloodTop::default(); cpus])
            .map_err(|e| map_err(map_name::FLOOD_TOP, e.into()))?;
        self.flood_top
            .set(u32::from(id), top, 0)
            .map_err(|e| map_err(map_name::FLOOD_TOP, e))
    }

    /// Zeroes the flood summaries and answer counters of the groups `ids` (ids newly handed
    /// out start from zero, like their group counters).
    pub(super) fn reset_flood_state(&mut self, ids: &[u8]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let cpus = nr_cpus().map_err(|(path, error)| DatapathError::PinDir {
            path: path.into(),
            error,
        })?;
        for id in ids {
            self.reset_flood_sketch(*id)?;
            let zero =
                PerCpuValues::try_from(vec![GroupAnswers::default(); cpus]).map_err(|e| {
                    DatapathError::Map {
                        name: map_name::FLOOD_ANSWERS,
                        error: e.into(),
                    }
                })?;
            self.flood_answers
                .set(u32::from(*id), zero, 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::FLOOD_ANSWERS,
                    error,
                })?;
        }
        Ok(())
    }

    /// Zeroes every group's flood summary: at start, where adopted maps may hold an earlier
    /// run's (or a fresh object's nothing).
    pub fn reset_flood_sketches(&mut self) -> Result<()> {
        for id in 1..node_monitor_common::MAX_GROUPS as u8 {
            self.reset_flood_sketch(id)?;
        }
        Ok(())
    }

    /// The node's answers from each configured group's TCP ports, summed over CPUs
    /// (cumulative: they survive restarts in a pinned map, like the group counters).
    pub fn flood_answers(&self) -> Result<BTreeMap<String, GroupAnswers>> {
        let mut out = BTreeMap::new();
        for (name, id) in self.ids.iter() {
            let per_cpu =
                self.flood_answers
                    .get(&u32::from(id), 0)
                    .map_err(|error| DatapathError::Map {
                        name: map_name::FLOOD_ANSWERS,
                        error,
                    })?;
            let mut sum = GroupAnswers::default();
            for a in per_cpu.iter() {
                sum.accepted += a.accepted;
                sum.refused += a.refused;
            }
            out.insert(name.to_owned(), sum);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use node_monitor_common::{FAMILY_V4, hll_add, source_hash, top_port_add, top_source_add};

    use super::*;

    /// The IPv4 address whose number is `i`.
    fn v4(i: u32) -> Addr {
        Addr::from_v4_word(u32::from_ne_bytes(i.to_be_bytes()))
    }

    /// 1M distinct sources (the address space of a spoofed IPv4 flood, walked in order) into
    /// one sketch spread over 4 CPUs: the merged estimate is within 5% (the bound the
    /// 4096-register precision is chosen for; its standard error is 1.6%).
    #[test]
    fn hll_estimate_within_five_percent_at_one_million_sources() {
        const N: u32 = 1_000_000;
        let mut cpus = vec![[0u8; HLL_REGISTERS]; 4];
        for i in 0..N {
            hll_add(
                &mut cpus[(i % 4) as usize],
                source_hash(&v4(0xC633_0000 + i)),
            );
        }
        let est = hll_estimate(&merge_registers(cpus.iter())[..]);
        let err = (est as f64 - f64::from(N)).abs() / f64::from(N);
        eprintln!(
            "HLL estimate at {N} distinct sources: {est} (error {:.3}%)",
            err * 100.0
        );
        assert!(err < 0.05, "estimate {est} for {N}: error {err}");
        // Repeats do not count: the same sources again change nothing.
        let before = merge_registers(cpus.iter());
        for i in 0..1000u32 {
            hll_add(&mut cpus[3], source_hash(&v4(0xC633_0000 + i)));
        }
        assert_eq!(merge_registers(cpus.iter()), before);
    }

    /// Small counts (the small-range correction) are near exact; IPv6 sources too.
    #[test]
    fn hll_estimate_small_and_ipv6() {
        let mut regs = [0u8; HLL_REGISTERS];
        assert_eq!(hll_estimate(&regs), 0);
        for i in 0..1000u16 {
            let ip: IpAddr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, i).into();
            hll_add(&mut regs, source_hash(&Addr::from_ip(ip)));
        }
        let est = hll_estimate(&regs);
        assert!((980..=1020).contains(&est), "{est}");
        for n in [1u32, 10, 100, 50_000] {
            let mut regs = [0u8; HLL_REGISTERS];
            for i in 0..n {
                hll_add(&mut regs, source_hash(&v4(i)));
            }
            let est = hll_estimate(&regs) as f64;
            let err = (est - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.05, "{n}: {est}");
        }
    }

    fn src(i: u8) -> Addr {
        Addr::from_ip(std::net::Ipv4Addr::new(203, 0, 113, i).into())
    }

    /// Space-saving: a source with more than 1/k of the stream always has an entry, and its
    /// count bounds its true count from above by at most its error; the table's counts sum
    /// to the stream length.
    #[test]
    fn space_saving_keeps_the_heavy_hitters() {
        let mut t = [TopSource::default(); TOP_SOURCES];
        let mut truth: BTreeMap<u8, u64> = BTreeMap::new();
        let mut n = 0u64;
        // Two heavy sources (1000 and 500) among 3000 connections from 300 light ones.
        for round in 0..1000u32 {
            for (s, every) in [(1u8, 1u32), (2, 2)] {
                if round % every == 0 {
                    top_source_add(&mut t, &src(s), FAMILY_V4, s == 1);
                    *truth.entry(s).or_default() += 1;
                    n += 1;
                }
            }
            for j in 0..3u32 {
                let s = 10 + ((round * 3 + j) % 200) as u8;
                top_source_add(&mut t, &src(s), FAMILY_V4, false);
                *truth.entry(s).or_default() += 1;
                n += 1;
            }
        }
        assert_eq!(t.iter().map(|e| e.count).sum::<u64>(), n);
        for e in &t {
            let s = e.addr.v4_octets()[3];
            let real = truth[&s];
            assert!(
                e.count >= real && e.count - e.error <= real,
                "{s}: {e:?} vs {real}"
            );
        }
        let merged = merge_sources(&[t]);
        assert_eq!(merged[0].ip, IpAddr::from([203, 0, 113, 1]));
        assert_eq!(merged[1].ip, IpAddr::from([203, 0, 113, 2]));
        assert!(merged[0].withheld <= 1000 && merged[0].withheld + merged[0].error >= 1000);
        assert!(merged[0].rate_limited > 0 && merged[0].rate_limited <= 1000);
        // Fewer distinct keys than entries: exact counts, no error.
        let mut p = [TopPort::default(); TOP_PORTS];
        for port in [30000u16, 30001, 30000, 30002, 30000, 30001] {
            top_port_add(&mut p, port);
        }
        assert_eq!(
            merge_ports(&[p]),
            vec![
                TopPortCount {
                    port: 30000,
                    withheld: 3,
                    error: 0
                },
                TopPortCount {
                    port: 30001,
                    withheld: 2,
                    error: 0
                },
                TopPortCount {
                    port: 30002,
                    withheld: 1,
                    error: 0
                },
            ]
        );
    }

    /// Per-CPU tables merge by key; a key missing from a full table gets that table's
    /// minimum added (never an undercount), and into its error.
    #[test]
    fn space_saving_tables_merge_across_cpus() {
        let mut a = [TopSource::default(); TOP_SOURCES];
        let mut b = [TopSource::default(); TOP_SOURCES];
        for _ in 0..5 {
            top_source_add(&mut a, &src(1), FAMILY_V4, true);
            top_source_add(&mut b, &src(1), FAMILY_V4, false);
        }
        top_source_add(&mut b, &src(2), FAMILY_V4, false);
        let m = merge_sources(&[a, b]);
        assert_eq!(
            m,
            vec![
                TopSourceCount {
                    ip: IpAddr::from([203, 0, 113, 1]),
                    withheld: 10,
                    rate_limited: 5,
                    error: 0
                },
                TopSourceCount {
                    ip: IpAddr::from([203, 0, 113, 2]),
                    withheld: 1,
                    rate_limited: 0,
                    error: 0
                },
            ]
        );
        // Table `c` is full (8 sources, 2 each) and lacks source 1: 2 more may be its.
        let mut c = [TopSource::default(); TOP_SOURCES];
        for s in 20..28u8 {
            top_source_add(&mut c, &src(s), FAMILY_V4, false);
            top_source_add(&mut c, &src(s), FAMILY_V4, false);
        }
        let m = merge_sources(&[a, c]);
        assert_eq!(m.len(), TOP_SOURCES);
        assert_eq!((m[0].withheld, m[0].error), (5, 2), "{m:?}");
        assert_eq!(m[0].ip, IpAddr::from([203, 0, 113, 1]));
        // A spoofed flood: every source once. The table's entries inherit all but one of
        // their counts: none says anything, none is listed.
        let mut t = [TopSource::default(); TOP_SOURCES];
        for i in 0..5000u32 {
            top_source_add(&mut t, &v4(0xCB00_7100 + i), FAMILY_V4, false);
        }
        assert!(t.iter().all(|e| e.count > 600), "{t:?}");
        assert_eq!(merge_sources(&[t]), vec![]);
    }
}
