//! The hasher of the index's lookup tables (addresses, NodePorts): each word folded in with
//! a 64x64->128-bit multiply whose two halves are xored (the "folded multiply" of foldhash
//! and ahash), in place of SipHash. A plain multiply (FxHash) is not enough here: pod
//! addresses differ in the high bits of their words, which a multiply never carries down to
//! the low bits the table picks buckets with. The keys are the cluster's own addresses and
//! ports, inserted from the API server, never from packets; a packet only looks a key up,
//! and a lookup cannot make the table slow.
use std::hash::{BuildHasherDefault, Hasher};

/// `BuildHasher` of [`Fx`].
pub type FxBuild = BuildHasherDefault<Fx>;

const K: u64 = 0xf135_7aea_2e62_a9c5;

#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

/// The two halves of `a * b`, xored: every bit of either input reaches every output bit.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = folded_multiply(self.0 ^ word, K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashSet,
        hash::BuildHasher,
        net::{IpAddr, Ipv6Addr},
    };

    use super::*;

    #[test]
    fn addresses_that_differ_in_high_bits_spread_over_buckets_and_tags() {
        let b = FxBuild::default();
        let (mut buckets, mut tags) = (HashSet::new(), HashSet::new());
        for i in 0..4096u16 {
            // Pod addresses as a cluster hands them out: the node in one word's high bits,
            // the pod in the other's.
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, i % 64, 0, 0, 0, i / 64));
            let h = b.hash_one(ip);
            buckets.insert(h & 4095);
            tags.insert(h >> 57);
        }
        // A random function fills about 63% of 4096 buckets with 4096 keys.
        assert!(buckets.len() > 2400, "{}", buckets.len());
        assert_eq!(tags.len(), 128);
    }
}
