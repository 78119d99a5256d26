//! Per-port source ranges: the NodePorts whose Service sets `loadBalancerSourceRanges`.
//!
//! A port table entry (`PORTS_TCP`/`PORTS_UDP`) is a group id below
//! [`MAX_GROUPS`](crate::MAX_GROUPS) = 64, so its top bit is free: [`PORT_RANGES_MARK`] set
//! there says "this port has source ranges of its own". For a marked port a source is allowed
//! only when its group allows it *and* the port's ranges do: an entry of `PORT_ALLOW_V4`/`_V6`
//! under (protocol, port), or one under [`PORT_RANGES_ANY`] (the cluster's own sources that
//! reach every NodePort, `cluster.node_port_also_allow`). Unmarked ports never look there.

/// Top bit of a port table entry: the port has source ranges of its own.
pub const PORT_RANGES_MARK: u8 = 0x80;
/// The group id bits of a port table entry.
pub const PORT_GROUP_MASK: u8 = 0x3f;
/// The protocol byte of the entries every marked port accepts (with port 0).
pub const PORT_RANGES_ANY: u8 = 0;

/// Default (and fixed) size of each per-port trie: 500 Services with 16 ranges on 4 NodePorts
/// each fit twice. An LPM trie allocates its nodes as they are added, so an empty one costs
/// nothing.
pub const PORT_ALLOW_ENTRIES: u32 = 65_536;

/// LPM trie key data for the IPv4 per-port ranges: protocol, destination port (network
/// order), then the address. The trie's prefix length is `24 + cidr_prefix`.
pub type PortAllowKeyV4 = [u8; 7];
/// LPM trie key data for the IPv6 per-port ranges: protocol, port, then the address.
pub type PortAllowKeyV6 = [u8; 19];
/// Bits of a per-port key before the address.
pub const PORT_KEY_BITS: u32 = 24;

/// The key data of `port` (protocol `proto`) and an IPv4 network.
#[inline(always)]
pub fn port_key_v4(proto: u8, port: u16, addr: [u8; 4]) -> PortAllowKeyV4 {
    let p = port.to_be_bytes();
    [proto, p[0], p[1], addr[0], addr[1], addr[2], addr[3]]
}

/// The key data of `port` (protocol `proto`) and an IPv6 network.
#[inline(always)]
pub fn port_key_v6(proto: u8, port: u16, addr: &[u8; 16]) -> PortAllowKeyV6 {
    let p = port.to_be_bytes();
    let mut d = [0u8; 19];
    d[0] = proto;
    d[1] = p[0];
    d[2] = p[1];
    d[3..].copy_from_slice(addr);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_never_meets_a_group_id() {
        for g in 0..crate::MAX_GROUPS as u8 {
            assert_eq!(g & PORT_GROUP_MASK, g);
            assert_eq!(g & PORT_RANGES_MARK, 0);
            assert_eq!((g | PORT_RANGES_MARK) & PORT_GROUP_MASK, g);
        }
    }

    #[test]
    fn keys_hold_protocol_port_then_address() {
        assert_eq!(
            port_key_v4(6, 30_080, [198, 51, 100, 7]),
            [6, 0x75, 0x80, 198, 51, 100, 7]
        );
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[15] = 1;
        let k = port_key_v6(17, 30_001, &a);
        assert_eq!(k[..3], [17, 0x75, 0x31]);
        assert_eq!(k[3..], a);
    }
}
