//! Lab addresses. Only documentation ranges: 198.51.100.0/24 (node LAN),
//! 203.0.113.0/24 (outside), 2001:db8:1::/64 (node LAN), 2001:db8:2::/64 (outside).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The node (`node` namespace, `eth0`).
pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The node's IPv6 address.
pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The control-plane peer (`cp` namespace), on the node LAN.
pub const CP_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The control-plane peer's IPv6 address.
pub const CP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The router on the node LAN (`br0`).
pub const ROUTER_LAN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// The router's IPv6 address on the node LAN.
pub const ROUTER_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);
/// A host outside the node LAN (`outside` namespace).
pub const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The outside host's IPv6 address.
pub const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// The router on the outside link.
pub const ROUTER_OUT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// The router's IPv6 address on the outside link.
pub const ROUTER_OUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe);
/// The node LAN (node, cp, router's br0).
pub const NODE_SUBNET_V4: &str = "198.51.100.0/24";
/// The node LAN, IPv6.
pub const NODE_SUBNET_V6: &str = "2001:db8:1::/64";
/// The outside link.
pub const OUTSIDE_SUBNET_V4: &str = "203.0.113.0/24";
/// The outside link, IPv6.
pub const OUTSIDE_SUBNET_V6: &str = "2001:db8:2::/64";

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// The lab rule: documentation ranges only (198.51.100.0/24, 203.0.113.0/24,
    /// 2001:db8::/32); 192.0.2.0/24 belongs to the root namespace here.
    fn allowed(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => matches!(v4.octets(), [198, 51, 100, _] | [203, 0, 113, _]),
            IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0xdb8],
        }
    }

    #[test]
    fn every_lab_address_is_from_a_documentation_range() {
        let v4 = [NODE_V4, CP_V4, ROUTER_LAN_V4, OUTSIDE_V4, ROUTER_OUT_V4];
        let v6 = [NODE_V6, CP_V6, ROUTER_LAN_V6, OUTSIDE_V6, ROUTER_OUT_V6];
        for ip in v4.map(IpAddr::V4).into_iter().chain(v6.map(IpAddr::V6)) {
            assert!(allowed(ip), "{ip} is outside the lab ranges");
        }
        for subnet in [
            NODE_SUBNET_V4,
            NODE_SUBNET_V6,
            OUTSIDE_SUBNET_V4,
            OUTSIDE_SUBNET_V6,
        ] {
            let (net, _len) = subnet.split_once('/').unwrap();
            assert!(allowed(net.parse().unwrap()), "{subnet}");
        }
    }
}
