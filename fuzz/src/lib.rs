//! What the fuzz targets share.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address of the family `v6` from fuzzer bytes (IPv4: the first four).
#[must_use]
pub fn ip(v6: bool, b: [u8; 16]) -> IpAddr {
    if v6 {
        Ipv6Addr::from(b).into()
    } else {
        Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
    }
}

/// A network of the family `v6` from fuzzer bytes, its prefix length clamped to the family's
/// (32 or 128) and its host bits cleared, as a parsed CIDR would be.
#[must_use]
pub fn net(v6: bool, b: [u8; 16], len: u8) -> ipnet::IpNet {
    let n = match ip(v6, b) {
        IpAddr::V4(a) => ipnet::IpNet::V4(
            ipnet::Ipv4Net::new(a, len % 33).unwrap_or_else(|_| ipnet::Ipv4Net::default()),
        ),
        IpAddr::V6(a) => ipnet::IpNet::V6(
            ipnet::Ipv6Net::new(a, len % 129).unwrap_or_else(|_| ipnet::Ipv6Net::default()),
        ),
    };
    n.trunc()
}
