//! Network interfaces of the node: names, indexes and the prefixes configured on them.
use std::{collections::BTreeSet, ffi::CString, net::IpAddr};

use ipnet::IpNet;

/// The interface index of `name`, if it exists in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The name of interface `index`, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// The IP prefixes configured on the named interfaces (host bits cleared, deduplicated):
/// what the `node-subnets` allow set resolves to. IPv6 link-local prefixes (fe80::/10) are
/// left out: every interface has one, and a link-local source is no cluster address.
pub fn subnets_of(ifaces: &[String]) -> std::io::Result<Vec<IpNet>> {
    let mut out = BTreeSet::new();
    let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    for a in addrs {
        if !ifaces.contains(&a.interface_name) {
            continue;
        }
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        let net = if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            let plen = u32::from(m.ip()).count_ones() as u8;
            IpNet::new(IpAddr::V4(ip.ip()), plen).ok()
        } else if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            let plen = u128::from(m.ip()).count_ones() as u8;
            IpNet::new(IpAddr::V6(ip.ip()), plen).ok()
        } else {
            None
        };
        if let Some(n) = net {
            let link_local =
                matches!(n, IpNet::V6(v6) if v6.addr().segments()[0] & 0xffc0 == 0xfe80);
            if !link_local {
                out.insert(n.trunc());
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Every address of this network namespace's interfaces (the node's own addresses, on a
/// node or in a hostNetwork pod); empty when they cannot be read.
#[must_use]
pub fn local_addrs() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|a| {
            let sa = a.address?;
            sa.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| sa.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Interfaces that carry a default route (IPv4 or IPv6), from /proc/net.
pub fn default_route_ifaces() -> std::io::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    // /proc/net/route: Iface Destination Gateway ... Mask; default = destination and mask 0.
    if let Ok(v4) = std::fs::read_to_string("/proc/net/route") {
        for line in v4.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
                out.insert(f[0].to_owned());
            }
        }
    }
    // /proc/net/ipv6_route: dest(32 hex) plen ... iface last; default = ::/0.
    if let Ok(v6) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for line in v6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo" {
                out.insert(f[9].to_owned());
            }
        }
    }
    Ok(out.into_iter().collect())
}
