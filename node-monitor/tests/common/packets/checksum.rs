//! The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums of both families.

use super::L3;

/// Add `data` as big-endian 16-bit words (odd tail padded with zero).
pub(crate) fn sum_bytes(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Fold to 16 bits and complement.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of `data`.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum_bytes(0, data))
}

/// Sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 8200 8.1). For
/// IPv6 the destination is the final one; routing headers built here always
/// have Segments Left = 0, so that is the IPv6 header's destination.
pub(super) fn pseudo_header_sum(l3: &L3, proto: u8, l4_len: usize) -> u64 {
    match *l3 {
        L3::V4 { src, dst } => {
            let acc = sum_bytes(0, &src.octets());
            let acc = sum_bytes(acc, &dst.octets());
            let acc = acc + u64::from(proto);
            acc + (l4_len as u64 & 0xffff)
        }
        L3::V6 { src, dst } => {
            let acc = sum_bytes(0, &src.octets());
            let acc = sum_bytes(acc, &dst.octets());
            let acc = sum_bytes(acc, &(l4_len as u32).to_be_bytes());
            acc + u64::from(proto)
        }
    }
}
