//! Malformed frames on request (bad lengths, checksums, offsets), and the non-IP frame.

use etherparse::{NetSlice, SlicedPacket};

use crate::{
    check::{all_l3, eth_type, parse, tcp_of},
    common::packets::{checksum::internet_checksum, *},
};

#[test]
fn malformed_overrides() {
    // IHL below 5
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN)
        .ipv4_ihl_raw(4)
        .build();
    assert_eq!(bytes[ETH_HLEN] & 0x0f, 4);
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    // IHL claims 60 bytes, only 20 + 20 present
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN)
        .ipv4_ihl_raw(15)
        .build();
    assert_eq!(bytes[ETH_HLEN], 0x4f);
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    // total length larger than the frame
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN)
        .ipv4_total_len_raw(1500)
        .build();
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    assert_eq!(
        internet_checksum(&bytes[14..34]),
        0,
        "checksum over the forced value"
    );
    // bad header checksum
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN)
        .ipv4_checksum_raw(0xbad0)
        .build();
    assert_eq!(u16::from_be_bytes([bytes[24], bytes[25]]), 0xbad0);
    assert_ne!(internet_checksum(&bytes[14..34]), 0);
    // IPv6 payload length larger than the frame
    let bytes = Frame::udp(DENIED_V6, NODE_V6, 1, 2)
        .ipv6_payload_len_raw(999)
        .build();
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    // TCP data offset < 5
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN)
        .tcp_data_offset_raw(2)
        .build();
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    // TCP data offset beyond the segment
    let bytes = Frame::tcp(DENIED_V6, NODE_V6, 1, 2, SYN)
        .tcp_data_offset_raw(15)
        .build();
    assert!(SlicedPacket::from_ethernet(&bytes).is_err());
    // wrong L4 checksum
    for (src, dst) in all_l3() {
        let bytes = Frame::tcp(src, dst, 1, 2, SYN)
            .l4_checksum_raw(0x1234)
            .build();
        let p = parse(&bytes);
        let t = tcp_of(&p);
        assert_eq!(t.checksum(), 0x1234);
        let ok = match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(ip) => t
                .calc_checksum_ipv4(ip.header().source(), ip.header().destination())
                .unwrap(),
            NetSlice::Ipv6(ip) => t
                .calc_checksum_ipv6(ip.header().source(), ip.header().destination())
                .unwrap(),
            NetSlice::Arp(_) => panic!(),
        };
        assert_ne!(ok, 0x1234);
    }
}
#[test]
fn non_ip_frame_is_arp_request() {
    let bytes = non_ip_frame();
    assert_eq!(bytes.len(), 42);
    let p = parse(&bytes);
    assert_eq!(eth_type(&p), ETH_P_ARP);
    let Some(NetSlice::Arp(a)) = p.net.as_ref() else {
        panic!("not ARP")
    };
    assert_eq!(a.operation().0, 1);
    assert_eq!(a.sender_protocol_addr(), &DENIED_V4.octets());
    assert_eq!(a.target_protocol_addr(), &NODE_V4.octets());
    assert!(p.transport.is_none());
}
