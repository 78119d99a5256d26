//! The lab addresses, and TCP/UDP frames: byte for byte against etherparse's builder,
//! ports, flags, checksums, TTL, identification, DF, EtherType and MACs.

use etherparse::{LinkSlice, NetSlice, PacketBuilder, TransportSlice};

use crate::{
    check::{all_l3, assert_checksums, eth_type, parse, tcp_of},
    common::packets::{checksum::internet_checksum, *},
};

#[test]
fn lab_addresses_are_documentation_ranges() {
    for a in [ALLOWED_V4, ALLOWED2_V4, DENIED_V4, NODE_V4] {
        let o = a.octets();
        assert!(
            matches!(o[..3], [198, 51, 100] | [203, 0, 113]),
            "{a} not in 198.51.100.0/24 or 203.0.113.0/24"
        );
    }
    for a in [ALLOWED_V6, ALLOWED2_V6, DENIED_V6, NODE_V6] {
        let s = a.segments();
        assert_eq!((s[0], s[1]), (0x2001, 0x0db8), "{a} not in 2001:db8::/32");
    }
    assert_ne!(ALLOWED_V4, DENIED_V4);
    assert_ne!(ALLOWED_V6, DENIED_V6);
    // locally administered, unicast
    for m in [SRC_MAC, DST_MAC] {
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
#[test]
fn tcp_v4_matches_etherparse_packet_builder_byte_for_byte() {
    let payload = b"hello kubelet";
    let ours = Frame::tcp(DENIED_V4, NODE_V4, 40000, 10250, SYN)
        .ipv4_df()
        .ipv4_id(0)
        .payload(payload)
        .build();
    let builder = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(DENIED_V4.octets(), NODE_V4.octets(), DEFAULT_TTL)
        .tcp(40000, 10250, DEFAULT_TCP_SEQ, DEFAULT_TCP_WINDOW)
        .syn();
    let mut theirs = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut theirs, payload).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn udp_v6_matches_etherparse_packet_builder_byte_for_byte() {
    let payload = [0xabu8; 33]; // odd length exercises the checksum tail
    let ours = Frame::udp(DENIED_V6, NODE_V6, 5353, 31000)
        .payload(&payload)
        .build();
    let builder = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(DENIED_V6.octets(), NODE_V6.octets(), DEFAULT_TTL)
        .udp(5353, 31000);
    let mut theirs = Vec::new();
    builder.write(&mut theirs, &payload).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn tcp_ports_flags_and_checksums_v4_v6() {
    let cases = [
        (SYN, "syn"),
        (SYN | ACK, "syn-ack"),
        (RST, "rst"),
        (RST | ACK, "rst-ack"),
        (FIN | ACK, "fin-ack"),
        (PSH | ACK, "psh-ack"),
        (URG, "urg"),
        (0, "none"),
        (FIN | SYN | RST | PSH | ACK | URG, "all"),
    ];
    for (src, dst) in all_l3() {
        for (flags, name) in cases {
            let bytes = Frame::tcp(src, dst, 40001, 6443, flags)
                .payload(b"x")
                .build();
            let p = parse(&bytes);
            let t = tcp_of(&p);
            assert_eq!(t.source_port(), 40001, "{name}");
            assert_eq!(t.destination_port(), 6443, "{name}");
            assert_eq!(t.fin(), flags & FIN != 0, "{name}");
            assert_eq!(t.syn(), flags & SYN != 0, "{name}");
            assert_eq!(t.rst(), flags & RST != 0, "{name}");
            assert_eq!(t.psh(), flags & PSH != 0, "{name}");
            assert_eq!(t.ack(), flags & ACK != 0, "{name}");
            assert_eq!(t.urg(), flags & URG != 0, "{name}");
            assert_eq!(t.data_offset(), 5);
            assert_eq!(t.sequence_number(), DEFAULT_TCP_SEQ);
            assert_eq!(t.acknowledgment_number(), u32::from(flags & ACK != 0));
            assert_eq!(t.payload(), b"x");
            assert_checksums(&bytes);
        }
    }
}

#[test]
fn tcp_seq_ack_setters() {
    let bytes = Frame::tcp(NODE_V4, DENIED_V4, 10250, 40000, SYN | ACK)
        .tcp_seq(7)
        .tcp_ack(0xdead_beef)
        .build();
    let p = parse(&bytes);
    let t = tcp_of(&p);
    assert_eq!(t.sequence_number(), 7);
    assert_eq!(t.acknowledgment_number(), 0xdead_beef);
    assert_checksums(&bytes);
}

#[test]
fn udp_ports_length_and_checksums_v4_v6() {
    for (src, dst) in all_l3() {
        for len in [0usize, 1, 2, 7, 100, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bytes = Frame::udp(src, dst, 53000, 30053).payload(&payload).build();
            let p = parse(&bytes);
            let TransportSlice::Udp(u) = p.transport.as_ref().unwrap() else {
                panic!("not UDP")
            };
            assert_eq!(u.source_port(), 53000);
            assert_eq!(u.destination_port(), 30053);
            assert_eq!(usize::from(u.length()), UDP_HLEN + len);
            assert_eq!(u.payload(), &payload[..]);
            assert_ne!(u.checksum(), 0, "UDP checksum must be present");
            assert_checksums(&bytes);
        }
    }
}

#[test]
fn ttl_ident_df_and_ethertype() {
    let bytes = Frame::tcp(ALLOWED_V4, NODE_V4, 1, 2, SYN)
        .ttl(3)
        .ipv4_id(0x4242)
        .ipv4_df()
        .build();
    let p = parse(&bytes);
    assert_eq!(eth_type(&p), ETH_P_IPV4);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    let h = ip.header();
    assert_eq!(h.ttl(), 3);
    assert_eq!(h.identification(), 0x4242);
    assert!(h.dont_fragment());
    assert_eq!(h.source_addr(), ALLOWED_V4);
    assert_eq!(h.destination_addr(), NODE_V4);
    assert_checksums(&bytes);

    let bytes = Frame::udp(ALLOWED_V6, NODE_V6, 1, 2).ttl(1).build();
    let p = parse(&bytes);
    assert_eq!(eth_type(&p), ETH_P_IPV6);
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(ip.header().hop_limit(), 1);
    assert_eq!(ip.header().source_addr(), ALLOWED_V6);
    assert_eq!(ip.header().destination_addr(), NODE_V6);
}

#[test]
fn macs_default_and_settable() {
    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 2).build();
    assert_eq!(&bytes[0..6], &DST_MAC);
    assert_eq!(&bytes[6..12], &SRC_MAC);
    let a = [0x02, 1, 2, 3, 4, 5];
    let b = [0x02, 9, 8, 7, 6, 5];
    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 2)
        .src_mac(a)
        .dst_mac(b)
        .build();
    let p = parse(&bytes);
    let LinkSlice::Ethernet2(e) = p.link.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(e.source(), a);
    assert_eq!(e.destination(), b);
}

#[test]
fn other_ip_protocol() {
    let bytes = Frame::ip_proto(DENIED_V4, NODE_V4, 132) // SCTP
        .payload(&[1, 2, 3, 4])
        .build();
    let p = parse(&bytes);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(ip.header().protocol().0, 132);
    assert_eq!(ip.payload().payload, &[1, 2, 3, 4]);
    assert!(p.transport.is_none());
    assert_checksums_ipv4_only(&bytes);
}

fn assert_checksums_ipv4_only(bytes: &[u8]) {
    let p = parse(bytes);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(internet_checksum(ip.header().slice()), 0);
}

#[test]
#[should_panic(expected = "mixed address families")]
fn mixed_families_panic() {
    let _ = Frame::tcp(DENIED_V4, NODE_V6, 1, 2, SYN);
}
