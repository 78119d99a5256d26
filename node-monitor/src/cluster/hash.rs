//! The index's lookup tables and their hashing. [`AddrTable`], address → who holds it: one
//! open-addressing table per family (IPv4 keys as `u32`, IPv6 as four `u32`s), linear
//! probing, at most two thirds full, each slot holding its identity inline, so that a lookup
//! reads one cache line (two, rarely) and takes no reference count. [`FxBuild`], the hasher
//! of the NodePort table. Both fold each word in with a 64x64->128-bit multiply whose two
//! halves are xored (the "folded multiply" of foldhash and ahash), in place of SipHash. A plain multiply (FxHash) is not enough here: pod
//! addresses differ in the high bits of their words, which a multiply never carries down to
//! the low bits the table picks buckets with. The keys are the cluster's own addresses and
//! ports, inserted from the API server, never from packets; a packet only looks a key up,
//! and a lookup cannot make the table slow.
use std::{
    hash::{BuildHasherDefault, Hasher},
    net::IpAddr,
};

use crate::record::SourceIdentity;

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

/// A table key: an address of one family.
trait Key: Copy + Eq {
    fn hash(self) -> u64;
}

impl Key for u32 {
    fn hash(self) -> u64 {
        folded_multiply(u64::from(self) ^ K, K2)
    }
}

impl Key for [u32; 4] {
    fn hash(self) -> u64 {
        let hi = (u64::from(self[0]) << 32) | u64::from(self[1]);
        let lo = (u64::from(self[2]) << 32) | u64::from(self[3]);
        folded_multiply(folded_multiply(hi ^ K, K2) ^ lo, K)
    }
}

const K2: u64 = 0x9e37_79b9_7f4a_7c15;

/// One slot: a key and, when the slot is taken, its identity.
#[derive(Debug, Clone)]
struct Slot<Q> {
    key: Q,
    id: Option<SourceIdentity>,
}

/// One family's table: a power-of-two number of slots, linear probing.
#[derive(Debug, Clone)]
struct Table<Q> {
    slots: Box<[Slot<Q>]>,
    len: usize,
}

impl<Q: Key + Default> Default for Table<Q> {
    fn default() -> Self {
        Table {
            slots: Box::default(),
            len: 0,
        }
    }
}

impl<Q: Key + Default> Table<Q> {
    /// Room for `n` keys at most two thirds full.
    fn with_room(n: usize) -> Self {
        let slots = if n == 0 {
            0
        } else {
            (n + n / 2).next_power_of_two().max(8)
        };
        let mut v = Vec::with_capacity(slots);
        huge_pages(&v);
        v.extend((0..slots).map(|_| Slot {
            key: Q::default(),
            id: None,
        }));
        Table {
            slots: v.into_boxed_slice(),
            len: 0,
        }
    }

    /// The slot of `key`, or the empty slot where it would go. The table is never full.
    fn find(&self, key: Q) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = key.hash() as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.id.is_none() || s.key == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn get(&self, key: Q) -> Option<&SourceIdentity> {
        if self.slots.is_empty() {
            return None;
        }
        self.slots[self.find(key)].id.as_ref()
    }

    fn insert(&mut self, key: Q, id: SourceIdentity) {
        if (self.len + 1) * 3 > self.slots.len() * 2 {
            self.grow();
        }
        let i = self.find(key);
        let slot = &mut self.slots[i];
        if slot.id.is_none() {
            self.len += 1;
        }
        slot.key = key;
        slot.id = Some(id);
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Table::with_room(self.len * 2 + 8));
        for s in old.slots {
            if let Some(id) = s.id {
                self.insert(s.key, id);
            }
        }
    }
}

/// Asks the kernel to back the 2 MiB-aligned part of `v`'s buffer (not yet touched) with
/// huge pages where it can: a lookup in a table of several MiB then misses the TLB far less
/// often. Advice only; nothing changes when the kernel declines.
fn huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + v.capacity() * size_of::<T>();
    let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if to > from {
        // SAFETY: the range lies inside `v`'s allocation; MADV_HUGEPAGE is advice that
        // changes no contents and no mapping the program can see.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
        }
    }
}

fn v6_key(a: std::net::Ipv6Addr) -> [u32; 4] {
    let s = a.segments();
    std::array::from_fn(|i| (u32::from(s[2 * i]) << 16) | u32::from(s[2 * i + 1]))
}

/// Address → who holds it (a pod, a node, a node's host network), both families.
#[derive(Debug, Clone, Default)]
pub struct AddrTable {
    v4: Table<u32>,
    v6: Table<[u32; 4]>,
}

impl AddrTable {
    /// A table with room for `v4` and `v6` addresses without growing.
    pub fn with_room(v4: usize, v6: usize) -> AddrTable {
        AddrTable {
            v4: Table::with_room(v4),
            v6: Table::with_room(v6),
        }
    }

    pub fn get(&self, ip: IpAddr) -> Option<&SourceIdentity> {
        match ip {
            IpAddr::V4(a) => self.v4.get(a.to_bits()),
            IpAddr::V6(a) => self.v6.get(v6_key(a)),
        }
    }

    pub fn contains_key(&self, ip: IpAddr) -> bool {
        self.get(ip).is_some()
    }

    /// Sets `ip`'s identity (replacing one it had).
    pub fn insert(&mut self, ip: IpAddr, id: SourceIdentity) {
        match ip {
            IpAddr::V4(a) => self.v4.insert(a.to_bits(), id),
            IpAddr::V6(a) => self.v6.insert(v6_key(a), id),
        }
    }

    /// Addresses held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    /// The slots' bytes (with the identities' pointers; what they point to is not counted).
    pub fn slot_bytes(&self) -> usize {
        size_of_val::<[Slot<u32>]>(&self.v4.slots) + size_of_val::<[Slot<[u32; 4]>]>(&self.v6.slots)
    }

    /// Every identity held.
    pub fn values(&self) -> impl Iterator<Item = &SourceIdentity> {
        let v4 = self.v4.slots.iter().filter_map(|s| s.id.as_ref());
        let v6 = self.v6.slots.iter().filter_map(|s| s.id.as_ref());
        v4.chain(v6)
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
    fn the_address_table_finds_what_it_holds_grows_and_replaces() {
        let mut t = AddrTable::with_room(2, 2);
        let v4 = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from_bits(0xc633_6400 | (i & 0xff)));
        let v6 = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, i % 64, 0, 0, 0, i / 64));
        // Past the room asked for: the table grows, keeping what it held.
        for i in 0..200u16 {
            t.insert(v4(u32::from(i)), SourceIdentity::External);
            t.insert(v6(i), SourceIdentity::Unresolved);
        }
        assert_eq!(t.len(), 400);
        for i in 0..200u16 {
            assert_eq!(t.get(v4(u32::from(i))), Some(&SourceIdentity::External));
            assert_eq!(t.get(v6(i)), Some(&SourceIdentity::Unresolved));
        }
        assert_eq!(t.get(v6(200)), None);
        assert_eq!(t.get("198.51.101.1".parse().unwrap()), None);
        // The same bits in the other family are another address.
        assert_eq!(t.get("::c633:6401".parse().unwrap()), None);
        t.insert(v6(7), SourceIdentity::External);
        assert_eq!(t.get(v6(7)), Some(&SourceIdentity::External));
        assert_eq!(t.values().count(), t.len());
        assert!(t.slot_bytes() > 0);
        assert_eq!(AddrTable::default().get(v6(1)), None);
    }

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
