//! Flood summaries kept by the data path while events are withheld: a HyperLogLog sketch
//! of distinct sources, space-saving tables of top sources and ports, and the node's
//! answers per group.

use crate::Addr;

/// HyperLogLog precision: 2^12 = 4096 one-byte registers per group (per CPU). The standard
/// error is 1.04 / sqrt(4096) = 1.6%, so an estimate stays within 5% (three standard errors)
/// of the true count; at 1M distinct sources the estimate is in the "raw" regime (above
/// 5/2 × 4096), where HyperLogLog needs no bias correction, and a 64-bit hash needs no
/// large-range correction. Registers hold ranks of 1..=53 (64 − 12 + 1).
pub const HLL_PRECISION: u32 = 12;
/// Registers of one group's HyperLogLog sketch.
pub const HLL_REGISTERS: usize = 1 << HLL_PRECISION;
/// The registers of one group's sketch (one per-CPU slot of `FLOOD_HLL`).
pub type HllRegisters = [u8; HLL_REGISTERS];

/// The 64-bit finaliser of MurmurHash3: every input bit flips about half the output bits.
#[inline(always)]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The hash of a source address that the sketch counts (the same on both sides: userspace
/// tests compute the registers the data path must have written).
#[inline(always)]
pub fn source_hash(addr: &Addr) -> u64 {
    mix64(addr.0[0] ^ mix64(addr.0[1] ^ 0x9e37_79b9_7f4a_7c15))
}

/// The register (`hash`'s top `HLL_PRECISION` bits) and the rank (1 + the leading zeros of
/// the remaining bits, at most 64 − HLL_PRECISION + 1) that a hash updates.
#[inline(always)]
pub fn hll_position(hash: u64) -> (usize, u8) {
    let index = (hash >> (64 - HLL_PRECISION)) as usize;
    // A sentinel bit caps the count of leading zeros at 64 - HLL_PRECISION.
    let rest = (hash << HLL_PRECISION) | (1u64 << (HLL_PRECISION - 1));
    (index, rest.leading_zeros() as u8 + 1)
}

/// Adds `hash` to a sketch: one register, raised to the rank if that is higher.
#[inline(always)]
pub fn hll_add(regs: &mut HllRegisters, hash: u64) {
    let (index, rank) = hll_position(hash);
    if let Some(r) = regs.get_mut(index)
        && rank > *r
    {
        *r = rank;
    }
}

/// Heavy hitters kept per group (per CPU): the sources and destination ports whose new
/// connections were withheld the most in the current flood window.
pub const TOP_SOURCES: usize = 8;
pub const TOP_PORTS: usize = 8;

/// One entry of a space-saving table of sources. `count` never undercounts the source's
/// withheld connections and overcounts by at most `error` (what the entry it took over had);
/// `rate_limited` counts those withheld by the source's own budget since it holds the entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopSource {
    pub addr: Addr,
    pub count: u64,
    pub error: u64,
    pub rate_limited: u64,
    pub family: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<TopSource>() == 48);

/// One entry of a space-saving table of destination ports (as [`TopSource`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopPort {
    pub count: u64,
    pub error: u64,
    pub port: u16,
    pub _pad0: u16,
    pub _pad1: u32,
}
const _: () = assert!(size_of::<TopPort>() == 24);

/// One per-CPU slot of `FLOOD_TOP` (indexed by group id): the space-saving tables of a
/// group's withheld new connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodTop {
    pub sources: [TopSource; TOP_SOURCES],
    pub ports: [TopPort; TOP_PORTS],
}
const _: () = assert!(size_of::<FloodTop>() == 48 * TOP_SOURCES + 24 * TOP_PORTS);

/// Space-saving (Metwally et al.): the source's entry counts one more; a source without an
/// entry takes over the entry with the smallest count (the first empty one while there is
/// one) and inherits that count as its error. Any source with more than 1/`TOP_SOURCES` of
/// the table's total is guaranteed an entry. Pure, so host tests cover it.
#[inline(always)]
pub fn top_source_add(t: &mut [TopSource; TOP_SOURCES], addr: &Addr, family: u8, rl: bool) {
    let mut min_i = 0usize;
    let mut min_c = u64::MAX;
    for (i, e) in t.iter_mut().enumerate() {
        if e.count == 0 {
            // Entries fill in order and empty only all together: the rest are empty too.
            min_i = i;
            min_c = 0;
            break;
        }
        if e.family == family && e.addr.0[0] == addr.0[0] && e.addr.0[1] == addr.0[1] {
            e.count += 1;
            e.rate_limited += u64::from(rl);
            return;
        }
        if e.count < min_c {
            min_c = e.count;
            min_i = i;
        }
    }
    if let Some(e) = t.get_mut(min_i & (TOP_SOURCES - 1)) {
        e.addr = *addr;
        e.family = family;
        e.error = min_c;
        e.count = min_c + 1;
        e.rate_limited = u64::from(rl);
    }
}

/// [`top_source_add`] for destination ports.
#[inline(always)]
pub fn top_port_add(t: &mut [TopPort; TOP_PORTS], port: u16) {
    let mut min_i = 0usize;
    let mut min_c = u64::MAX;
    for (i, e) in t.iter_mut().enumerate() {
        if e.count == 0 {
            min_i = i;
            min_c = 0;
            break;
        }
        if e.port == port {
            e.count += 1;
            return;
        }
        if e.count < min_c {
            min_c = e.count;
            min_i = i;
        }
    }
    if let Some(e) = t.get_mut(min_i & (TOP_PORTS - 1)) {
        e.port = port;
        e.error = min_c;
        e.count = min_c + 1;
    }
}

/// The node's answers from a group's ports, per CPU (one slot of `FLOOD_ANSWERS` per group),
/// counted by the egress program for every SYN-ACK (accepted) and RST (refused) it sees,
/// whether or not the attempt has a flow entry: under a flood the withheld attempts have none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupAnswers {
    pub accepted: u64,
    pub refused: u64,
}
const _: () = assert!(size_of::<GroupAnswers>() == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FAMILY_V4, FAMILY_V6};

    #[test]
    fn hll_positions_stay_in_range() {
        // The register is the top 12 bits; the rank counts the leading zeros of the rest,
        // capped by the sentinel bit at 64 - 12 + 1.
        assert_eq!(hll_position(0), (0, 53));
        assert_eq!(hll_position(u64::MAX), (HLL_REGISTERS - 1, 1));
        assert_eq!(hll_position(1u64 << 51), (0, 1));
        assert_eq!(hll_position(1u64 << 40), (0, 12));
        assert_eq!(hll_position(0xABC0_0000_0000_0000), (0xABC, 53));
        let mut regs = [0u8; HLL_REGISTERS];
        hll_add(&mut regs, 1u64 << 40);
        hll_add(&mut regs, 1u64 << 45); // rank 7 < 12: the register keeps its maximum
        assert_eq!(regs[0], 12);
        assert!(regs[1..].iter().all(|r| *r == 0));
        // Addresses that differ in one bit hash far apart.
        let a = Addr::from_ip(core::net::Ipv4Addr::new(198, 51, 100, 1).into());
        let b = Addr::from_ip(core::net::Ipv4Addr::new(198, 51, 100, 3).into());
        assert!((source_hash(&a) ^ source_hash(&b)).count_ones() > 16);
    }

    #[test]
    fn space_saving_takes_over_the_smallest_entry() {
        let addr = |i: u8| Addr::from_ip(core::net::Ipv4Addr::new(203, 0, 113, i).into());
        let mut t = [TopSource::default(); TOP_SOURCES];
        for i in 1..=TOP_SOURCES as u8 {
            top_source_add(&mut t, &addr(i), FAMILY_V4, false);
        }
        top_source_add(&mut t, &addr(1), FAMILY_V4, true);
        // Full: 9 takes over the first entry with the smallest count (2's), inheriting it.
        top_source_add(&mut t, &addr(9), FAMILY_V4, true);
        assert_eq!((t[0].count, t[0].rate_limited), (2, 1));
        assert_eq!(t[1].addr, addr(9));
        assert_eq!((t[1].count, t[1].error, t[1].rate_limited), (2, 1, 1));
        // Another family with the same bytes is another key.
        let mut v6 = t[2].addr;
        v6.0[1] = 0;
        top_source_add(&mut t, &v6, FAMILY_V6, false);
        assert_eq!(t[2].family, FAMILY_V6);
        assert_eq!((t[2].count, t[2].error), (2, 1));
        let mut p = [TopPort::default(); TOP_PORTS];
        for port in [1u16, 2, 3, 4, 5, 6, 7, 8, 9] {
            top_port_add(&mut p, port);
        }
        assert_eq!((p[0].port, p[0].count, p[0].error), (9, 2, 1));
    }
}
