//! Addresses as the data path holds them: two 64-bit words.

use crate::FAMILY_V4;

/// An IP address: 16 bytes in network order, IPv4 in the first 4 and the rest zero.
///
/// Held as two 64-bit words (each the native-endian reading of 8 address bytes) so that the
/// eBPF programs copy, compare and hash addresses as words: the BPF backend would split a
/// byte array into single-byte loads and stores.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr(pub [u64; 2]);

impl Addr {
    pub const ZERO: Addr = Addr([0; 2]);

    /// An IPv4 address from its 4 bytes in network order, as read from the packet.
    #[inline(always)]
    pub fn from_v4_word(w: u32) -> Addr {
        // The first 4 bytes in memory: the low half of the first word on little-endian
        // hosts, the high half on big-endian ones.
        let b = w.to_ne_bytes();
        Addr([u64::from_ne_bytes([b[0], b[1], b[2], b[3], 0, 0, 0, 0]), 0])
    }

    /// The first 4 bytes (an IPv4 address) as they sit in memory.
    #[inline(always)]
    pub fn v4_octets(&self) -> [u8; 4] {
        let b = self.0[0].to_ne_bytes();
        [b[0], b[1], b[2], b[3]]
    }

    /// The address's 16 bytes in network order.
    pub fn octets(&self) -> [u8; 16] {
        let (a, b) = (self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes());
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&a);
        o[8..].copy_from_slice(&b);
        o
    }

    /// The address of 16 bytes in network order.
    pub fn from_octets(o: [u8; 16]) -> Addr {
        let w = |i: usize| {
            u64::from_ne_bytes([
                o[i],
                o[i + 1],
                o[i + 2],
                o[i + 3],
                o[i + 4],
                o[i + 5],
                o[i + 6],
                o[i + 7],
            ])
        };
        Addr([w(0), w(8)])
    }

    /// The address of an IP address (IPv4 in the first 4 bytes).
    pub fn from_ip(ip: core::net::IpAddr) -> Addr {
        match ip {
            core::net::IpAddr::V4(v) => Addr::from_v4_word(u32::from_ne_bytes(v.octets())),
            core::net::IpAddr::V6(v) => Addr::from_octets(v.octets()),
        }
    }

    /// The IP address, read as `family` (`FAMILY_V4`: the first 4 bytes; else IPv6).
    pub fn to_ip(&self, family: u8) -> core::net::IpAddr {
        if family == FAMILY_V4 {
            core::net::Ipv4Addr::from(self.v4_octets()).into()
        } else {
            core::net::Ipv6Addr::from(self.octets()).into()
        }
    }
}
