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
