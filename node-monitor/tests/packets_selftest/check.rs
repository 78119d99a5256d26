//! What the self-tests check frames with: etherparse slices, the VLAN stack, every
//! checksum recomputed, the address pairs of both families.

use std::net::IpAddr;

use etherparse::{LinkExtSlice, LinkSlice, NetSlice, SlicedPacket, TransportSlice};

use crate::common::packets::{checksum::internet_checksum, *};

pub(crate) fn parse(bytes: &[u8]) -> SlicedPacket<'_> {
    SlicedPacket::from_ethernet(bytes).expect("etherparse rejects the frame")
}

pub(crate) fn eth_type(p: &SlicedPacket<'_>) -> u16 {
    match p.link.as_ref().unwrap() {
        LinkSlice::Ethernet2(e) => e.ether_type().0,
        other => panic!("not ethernet: {other:?}"),
    }
}

/// (TPID, VID) of every tag, outermost first, and the final EtherType.
pub(crate) fn vlan_stack(p: &SlicedPacket<'_>) -> (Vec<(u16, u16)>, u16) {
    let mut tpid = eth_type(p);
    let mut tags = Vec::new();
    for ext in &p.link_exts {
        match ext {
            LinkExtSlice::Vlan(v) => {
                tags.push((tpid, v.vlan_identifier().value()));
                tpid = v.ether_type().0;
            }
            other @ LinkExtSlice::Macsec(_) => panic!("unexpected link ext {other:?}"),
        }
    }
    (tags, tpid)
}

/// Assert the IPv4 header checksum and the L4 checksum are the ones etherparse
/// computes.
pub(crate) fn assert_checksums(bytes: &[u8]) {
    let p = parse(bytes);
    match p.net.as_ref().unwrap() {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            let (s, d) = (h.source(), h.destination());
            match p.transport.as_ref().unwrap() {
                TransportSlice::Tcp(t) => {
                    assert_eq!(t.checksum(), t.calc_checksum_ipv4(s, d).unwrap());
                }
                TransportSlice::Udp(u) => assert_eq!(
                    u.checksum(),
                    u.to_header()
                        .calc_checksum_ipv4_raw(s, d, u.payload())
                        .unwrap()
                ),
                TransportSlice::Icmpv4(i) => {
                    assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()));
                }
                TransportSlice::Icmpv6(_) => panic!("ICMPv6 in IPv4"),
            }
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            let (s, d) = (h.source(), h.destination());
            match p.transport.as_ref().unwrap() {
                TransportSlice::Tcp(t) => {
                    assert_eq!(t.checksum(), t.calc_checksum_ipv6(s, d).unwrap());
                }
                TransportSlice::Udp(u) => assert_eq!(
                    u.checksum(),
                    u.to_header()
                        .calc_checksum_ipv6_raw(s, d, u.payload())
                        .unwrap()
                ),
                TransportSlice::Icmpv6(i) => assert!(i.is_checksum_valid(s, d)),
                TransportSlice::Icmpv4(_) => panic!("ICMPv4 in IPv6"),
            }
        }
        NetSlice::Arp(_) => panic!("ARP"),
    }
    // And independently: the internet checksum over a correct header is 0.
    if let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() {
        assert_eq!(internet_checksum(ip.header().slice()), 0);
    }
}

pub(crate) fn tcp_of<'a>(p: &'a SlicedPacket<'a>) -> &'a etherparse::TcpSlice<'a> {
    match p.transport.as_ref().unwrap() {
        TransportSlice::Tcp(t) => t,
        other => panic!("not TCP: {other:?}"),
    }
}

pub(crate) fn all_l3() -> [(IpAddr, IpAddr); 2] {
    [
        (DENIED_V4.into(), NODE_V4.into()),
        (DENIED_V6.into(), NODE_V6.into()),
    ]
}
