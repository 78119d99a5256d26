//! Allowlists: the LPM trie keys and the per-CPU verdict cache in front of them.

use crate::Addr;

/// One slot of the per-CPU verdict cache in front of the LPM tries: direct-mapped by a hash
/// of the source address ([`verdict_slot`]), so a lookup is an inlined array access and a
/// miss simply takes the slot over (a flood of spoofed sources costs nothing extra).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictSlot {
    pub addr: Addr,
    pub family: u8,
    /// 1: the source lies in a suspect range ([`Settings::suspect_ranges`](crate::Settings::suspect_ranges)),
    /// decided when the source took the slot under this generation.
    pub suspect: u8,
    pub _pad1: u16,
    /// `Settings::generation` these bits belong to.
    pub generation: u32,
    /// Bit g set: the verdict for group g is known.
    pub known: u64,
    /// Bit g set: the source is in group g's allowlist.
    pub allowed: u64,
}
const _: () = assert!(size_of::<VerdictSlot>() == 40);

/// Slots per CPU in the verdict cache (a power of two).
pub const VERDICT_SLOTS: u32 = 1 << VERDICT_SLOT_BITS;
const VERDICT_SLOT_BITS: u32 = 13;

/// The cache slot of a source: a multiplicative hash of its address (folded to 32 bits,
/// which for IPv4 is the address itself on hosts of either byte order).
#[inline(always)]
pub fn verdict_slot(addr: &Addr) -> u32 {
    let x = addr.0[0] ^ addr.0[1];
    let h = (x ^ (x >> 32)) as u32;
    h.wrapping_mul(0x9E37_79B9) >> (32 - VERDICT_SLOT_BITS)
}

/// LPM trie key data for IPv4 allowlists: group id byte, then the address (network order).
/// The trie's prefix length is `8 + cidr_prefix`.
pub type AllowKeyV4 = [u8; 5];
/// LPM trie key data for IPv6 allowlists: group id byte, then the address.
pub type AllowKeyV6 = [u8; 17];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_slots_stay_in_range_and_spread() {
        let mut used = [false; VERDICT_SLOTS as usize];
        for i in 0..=255u8 {
            for j in 0..4u8 {
                let a = Addr::from_v4_word(u32::from_ne_bytes([198, 51, j, i]));
                let s = verdict_slot(&a);
                assert!(s < VERDICT_SLOTS);
                used[s as usize] = true;
            }
        }
        // 1024 neighbouring addresses land in many different slots.
        assert!(used.iter().filter(|u| **u).count() > 900);
        // IPv6 sources that differ only in their interface id spread too.
        let mut used = [false; VERDICT_SLOTS as usize];
        for i in 0..1024u16 {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            o[14..].copy_from_slice(&i.to_be_bytes());
            used[verdict_slot(&Addr::from_octets(o)) as usize] = true;
        }
        assert!(used.iter().filter(|u| **u).count() > 900);
    }
}
