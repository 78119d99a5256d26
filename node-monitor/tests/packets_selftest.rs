//! Self-tests of the packet builder (tests/common/packets.rs), checked against
//! etherparse.

#[path = "common"]
mod common {
    pub(crate) mod packets;
}

use common::packets::*;
use etherparse::{
    EtherType, Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, LinkExtSlice, LinkSlice, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice, err::Layer,
};
use std::net::IpAddr;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn parse(bytes: &[u8]) -> SlicedPacket<'_> {
    SlicedPacket::from_ethernet(bytes).expect("etherparse rejects the frame")
}

fn eth_type(p: &SlicedPacket<'_>) -> u16 {
    match p.link.as_ref().unwrap() {
        LinkSlice::Ethernet2(e) => e.ether_type().0,
        other => panic!("not ethernet: {other:?}"),
    }
}

/// (TPID, VID) of every tag, outermost first, and the final EtherType.
fn vlan_stack(p: &SlicedPacket<'_>) -> (Vec<(u16, u16)>, u16) {
    let mut tpid = eth_type(p);
    let mut tags = Vec::new();
    for ext in &p.link_exts {
        match ext {
            LinkExtSlice::Vlan(v) => {
                tags.push((tpid, v.vlan_identifier().value()));
                tpid = v.ether_type().0;
            }
            other => panic!("unexpected link ext {other:?}"),
        }
    }
    (tags, tpid)
}

/// Assert the IPv4 header checksum and the L4 checksum are the ones etherparse
/// computes.
fn assert_checksums(bytes: &[u8]) {
    let p = parse(bytes);
    match p.net.as_ref().unwrap() {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            let (s, d) = (h.source(), h.destination());
            match p.transport.as_ref().unwrap() {
                TransportSlice::Tcp(t) => {
                    assert_eq!(t.checksum(), t.calc_checksum_ipv4(s, d).unwrap())
                }
                TransportSlice::Udp(u) => assert_eq!(
                    u.checksum(),
                    u.to_header()
                        .calc_checksum_ipv4_raw(s, d, u.payload())
                        .unwrap()
                ),
                TransportSlice::Icmpv4(i) => {
                    assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()))
                }
                TransportSlice::Icmpv6(_) => panic!("ICMPv6 in IPv4"),
            }
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            let (s, d) = (h.source(), h.destination());
            match p.transport.as_ref().unwrap() {
                TransportSlice::Tcp(t) => {
                    assert_eq!(t.checksum(), t.calc_checksum_ipv6(s, d).unwrap())
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

fn tcp_of<'a>(p: &'a SlicedPacket<'a>) -> &'a etherparse::TcpSlice<'a> {
    match p.transport.as_ref().unwrap() {
        TransportSlice::Tcp(t) => t,
        other => panic!("not TCP: {other:?}"),
    }
}

fn all_l3() -> [(IpAddr, IpAddr); 2] {
    [
        (DENIED_V4.into(), NODE_V4.into()),
        (DENIED_V6.into(), NODE_V6.into()),
    ]
}

// ---------------------------------------------------------------------------
// constants
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// TCP / UDP basics
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// VLAN
// ---------------------------------------------------------------------------

#[test]
fn single_vlan() {
    for (src, dst) in all_l3() {
        let f = Frame::tcp(src, dst, 40000, 10250, SYN).vlan(100);
        let bytes = f.build();
        let p = parse(&bytes);
        let (tags, et) = vlan_stack(&p);
        assert_eq!(tags, vec![(TPID_8021Q, 100)]);
        assert_eq!(et, f.l3_ethertype());
        assert_eq!(tcp_of(&p).destination_port(), 10250);
        assert_checksums(&bytes);
    }
}

#[test]
fn double_vlan_is_qinq() {
    for (src, dst) in all_l3() {
        let bytes = Frame::udp(src, dst, 1, 30000).vlan(10).vlan(4094).build();
        let p = parse(&bytes);
        let (tags, _) = vlan_stack(&p);
        assert_eq!(tags, vec![(TPID_8021AD, 10), (TPID_8021Q, 4094)]);
        assert_eq!(
            p.vlan_ids().iter().map(|v| v.value()).collect::<Vec<_>>(),
            vec![10, 4094]
        );
        assert_checksums(&bytes);
    }
}

#[test]
fn triple_vlan_and_deeper() {
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
        .vlan(1)
        .vlan(2)
        .vlan(3)
        .build();
    let p = parse(&bytes);
    let (tags, et) = vlan_stack(&p);
    assert_eq!(
        tags,
        vec![(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)]
    );
    assert_eq!(et, ETH_P_IPV4);
    assert_checksums(&bytes);

    // 5 tags: more than etherparse follows; check the raw bytes.
    let f = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
        .vlan(1)
        .vlan(2)
        .vlan(3)
        .vlan(4)
        .vlan(5);
    let bytes = f.build();
    let b = f.boundaries();
    assert_eq!(b.vlan_ends, vec![18, 22, 26, 30, 34]);
    assert_eq!(b.l3_start, 34);
    let tpid_at = |i: usize| u16::from_be_bytes([bytes[12 + 4 * i], bytes[13 + 4 * i]]);
    let vid_at = |i: usize| u16::from_be_bytes([bytes[14 + 4 * i], bytes[15 + 4 * i]]) & 0xfff;
    assert_eq!(tpid_at(0), TPID_8021AD);
    for i in 1..5 {
        assert_eq!(tpid_at(i), TPID_8021Q);
    }
    for i in 0..5 {
        assert_eq!(vid_at(i), i as u16 + 1);
    }
    assert_eq!(tpid_at(5), ETH_P_IPV4); // the final EtherType
    assert_eq!(bytes[34] >> 4, 4);
    // The IP packet after the tags is intact.
    let p = SlicedPacket::from_ether_type(EtherType::IPV4, &bytes[b.l3_start..]).unwrap();
    assert_eq!(tcp_of(&p).destination_port(), 10250);
}

#[test]
fn forced_tpid_and_pcp() {
    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 2)
        .vlan_tpid(7, TPID_8021Q)
        .vlan(8)
        .build();
    let (tags, _) = vlan_stack(&parse(&bytes));
    assert_eq!(tags, vec![(TPID_8021Q, 7), (TPID_8021Q, 8)]);

    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 2)
        .vlan_tpid(7, 0x9100)
        .vlan_tpid(8, TPID_8021AD)
        .build();
    let (tags, _) = vlan_stack(&parse(&bytes));
    assert_eq!(tags, vec![(0x9100, 7), (TPID_8021AD, 8)]);

    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 2)
        .vlan_tag(VlanTag {
            vid: 42,
            pcp: 5,
            tpid: None,
        })
        .build();
    let p = parse(&bytes);
    let LinkExtSlice::Vlan(v) = &p.link_exts[0] else {
        panic!()
    };
    assert_eq!(v.priority_code_point().value(), 5);
    assert_eq!(v.vlan_identifier().value(), 42);
}

// ---------------------------------------------------------------------------
// IPv4 options and fragments
// ---------------------------------------------------------------------------

#[test]
fn ipv4_options_every_ihl() {
    for words in 0..=10u8 {
        let f = Frame::tcp(DENIED_V4, NODE_V4, 40000, 2379, SYN)
            .vlan(5)
            .ipv4_options(words)
            .payload(b"abc");
        let bytes = f.build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        let h = ip.header();
        assert_eq!(h.ihl(), 5 + words);
        let opts = h.options();
        assert_eq!(opts.len(), 4 * usize::from(words));
        if words > 0 {
            assert!(opts[..opts.len() - 1].iter().all(|&b| b == 1), "NOPs");
            assert_eq!(*opts.last().unwrap(), 0, "EOL");
        }
        assert_eq!(usize::from(h.total_len()), 20 + opts.len() + 20 + 3);
        let t = tcp_of(&p);
        assert_eq!(t.destination_port(), 2379);
        assert_eq!(t.payload(), b"abc");
        assert_checksums(&bytes);
        let b = f.boundaries();
        assert_eq!(b.l3_end - b.l3_start, 4 * (5 + usize::from(words)));
    }
}

#[test]
#[should_panic(expected = "IHL max 15")]
fn ipv4_options_too_many_words_panics() {
    let _ = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN).ipv4_options(11);
}

#[test]
fn ipv4_fragments() {
    // first fragment: offset 0, MF
    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 30000)
        .payload(&[0; 64])
        .ipv4_fragment(0, true)
        .build();
    let p = parse(&bytes);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert!(ip.header().more_fragments());
    assert_eq!(ip.header().fragments_offset().value(), 0);
    assert!(ip.is_payload_fragmented());
    assert!(!ip.header().dont_fragment());
    assert_eq!(internet_checksum(ip.header().slice()), 0);
    // The L4 header is there even though etherparse does not parse fragments.
    assert!(p.transport.is_none());
    let l4 = ip.payload().payload;
    assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), 30000);

    // non-first fragments, with and without MF
    for (off, mf) in [(1u16, true), (185, false), (0x1fff, false)] {
        let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
            .ipv4_options(1)
            .ipv4_fragment(off, mf)
            .build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(ip.header().fragments_offset().value(), off);
        assert_eq!(ip.header().more_fragments(), mf);
        assert_eq!(ip.header().ihl(), 6);
        assert!(ip.is_payload_fragmented());
        assert!(p.transport.is_none());
        assert_eq!(internet_checksum(ip.header().slice()), 0);
    }
}

// ---------------------------------------------------------------------------
// IPv6 extension headers
// ---------------------------------------------------------------------------

fn ext_chain(p: &SlicedPacket<'_>) -> (u8, Vec<(u8, u8, usize)>) {
    // (first next header, [(kind, next header, len)])
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!("not v6")
    };
    let first = ip.header().next_header().0;
    let mut out = Vec::new();
    for e in ip.extensions().clone() {
        out.push(match e {
            Ipv6ExtensionSlice::HopByHop(s) => {
                (IPPROTO_HOPOPTS, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::Routing(s) => (IPPROTO_ROUTING, s.next_header().0, s.slice().len()),
            Ipv6ExtensionSlice::Fragment(s) => {
                (IPPROTO_FRAGMENT, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::DestinationOptions(s) => {
                (IPPROTO_DSTOPTS, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::Authentication(_) => panic!("AH"),
        });
    }
    (first, out)
}

#[test]
fn ipv6_ext_chain_order_and_next_headers() {
    let f = Frame::tcp(DENIED_V6, NODE_V6, 40000, 10250, SYN)
        .ipv6_ext(&[
            ExtHeader::HopByHop,
            ExtHeader::DestOpts,
            ExtHeader::Routing,
            ExtHeader::Fragment {
                offset_units: 0,
                more: false,
            },
            ExtHeader::DestOpts,
        ])
        .payload(b"payload");
    let bytes = f.build();
    let p = parse(&bytes);
    let (first, chain) = ext_chain(&p);
    assert_eq!(first, IPPROTO_HOPOPTS);
    assert_eq!(
        chain,
        vec![
            (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_ROUTING, 8),
            (IPPROTO_ROUTING, IPPROTO_FRAGMENT, 8),
            (IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_TCP, 8),
        ]
    );
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(usize::from(ip.header().payload_length()), 5 * 8 + 20 + 7);
    let t = tcp_of(&p);
    assert!(t.syn());
    assert_eq!(t.payload(), b"payload");
    // Pseudo-header checksum with extension headers present.
    assert_checksums(&bytes);

    // UDP and ICMPv6 behind extension headers too.
    for f in [
        Frame::udp(DENIED_V6, NODE_V6, 1, 30001),
        Frame::icmp_echo(DENIED_V6, NODE_V6, 1, 1),
    ] {
        let bytes = f
            .ipv6_ext(&[ExtHeader::HopByHop, ExtHeader::Routing])
            .payload(b"abcde")
            .build();
        assert_checksums(&bytes);
    }
}

#[test]
fn ipv6_ext_padded_lengths() {
    let bytes = Frame::udp(DENIED_V6, NODE_V6, 1, 30002)
        .ipv6_ext(&[
            ExtHeader::HopByHopLen(2),
            ExtHeader::DestOptsLen(0),
            ExtHeader::DestOptsLen(33),
        ])
        .build();
    let p = parse(&bytes);
    let (first, chain) = ext_chain(&p);
    assert_eq!(first, IPPROTO_HOPOPTS);
    assert_eq!(
        chain,
        vec![
            (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 24),
            (IPPROTO_DSTOPTS, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_UDP, 272),
        ]
    );
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    let raw = ip.extensions().slice();
    assert_eq!(&raw[..4], &[IPPROTO_DSTOPTS, 2, IPV6_OPT_EXPERIMENTAL, 20]);
    assert_checksums(&bytes);
}

/// Walk a Hop-by-Hop / Destination Options header the way Linux's
/// `ip6_parse_tlv` does and check it would be accepted with default sysctls.
fn assert_linux_accepts_tlvs(hdr: &[u8]) {
    assert_eq!(hdr.len(), 8 * (usize::from(hdr[1]) + 1));
    let mut off = 2;
    let (mut padlen, mut count) = (0usize, 0usize);
    while off < hdr.len() {
        let ty = hdr[off];
        if ty == 0 {
            padlen += 1;
            off += 1;
        } else {
            let optlen = usize::from(hdr[off + 1]) + 2;
            assert!(off + optlen <= hdr.len(), "option overruns the header");
            if ty == 1 {
                padlen += optlen;
                assert!(hdr[off + 2..off + optlen].iter().all(|&b| b == 0));
            } else {
                assert_eq!(ty >> 6, 0, "unknown option must be skip-able");
                count += 1;
                padlen = 0;
            }
            off += optlen;
        }
        assert!(padlen <= 7, "padding run > 7 bytes");
    }
    assert_eq!(off, hdr.len());
    assert!(count <= 8, "more than 8 options");
}

#[test]
fn ipv6_option_headers_are_linux_acceptable() {
    for n in 0..=255u8 {
        for kind in [
            ExtHeader::HopByHopLen(n),
            ExtHeader::DestOptsLen(n),
            ExtHeader::HopByHop,
            ExtHeader::DestOpts,
        ] {
            let (bytes, b) = Frame::udp(DENIED_V6, NODE_V6, 1, 2)
                .ipv6_ext(&[kind])
                .build_with_boundaries();
            assert_eq!(b.ext_ends[0] - b.l3_fixed_end, kind.wire_len());
            assert_linux_accepts_tlvs(&bytes[b.l3_fixed_end..b.ext_ends[0]]);
        }
    }
    assert_eq!(
        Frame::udp(DENIED_V6, NODE_V6, 1, 2)
            .ipv6_ext(&[ExtHeader::HopByHopLen(0)])
            .build(),
        Frame::udp(DENIED_V6, NODE_V6, 1, 2)
            .ipv6_ext(&[ExtHeader::HopByHop])
            .build()
    );
}

#[test]
fn ipv6_fragment_headers() {
    for (off, more) in [(0u16, true), (1, true), (100, false), (0x1fff, false)] {
        let bytes = Frame::tcp(DENIED_V6, NODE_V6, 1, 10250, SYN)
            .ipv6_ext(&[ExtHeader::Fragment {
                offset_units: off,
                more,
            }])
            .build();
        let p = parse(&bytes);
        let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert!(ip.is_payload_fragmented());
        assert!(p.transport.is_none());
        let Some(Ipv6ExtensionSlice::Fragment(fr)) = ip.extensions().clone().into_iter().next()
        else {
            panic!("no fragment header")
        };
        // etherparse 0.19 decodes offset/M with the wrong bit positions
        // (JulianSchmid/etherparse#150, fixed in 0.20), so read the RFC 8200
        // layout ourselves: bytes 2..4 = offset << 3 | res(2) | M.
        let raw = fr.slice();
        let word = u16::from_be_bytes([raw[2], raw[3]]);
        assert_eq!(word >> 3, off);
        assert_eq!(word & 1 == 1, more);
        assert_eq!(word & 0b110, 0, "reserved bits");
        assert_eq!(raw[1], 0, "reserved byte");
        assert_eq!(fr.identification(), DEFAULT_FRAG_ID);
        assert_eq!(fr.next_header().0, IPPROTO_TCP);
    }
}

#[test]
fn ipv6_fragment_header_wire_layout_is_rfc8200() {
    // Same layout as Linux: frag_off & htons(0xfff8) = offset, htons(1) = M.
    let f = Frame::udp(DENIED_V6, NODE_V6, 1, 2).ipv6_ext(&[ExtHeader::Fragment {
        offset_units: 1,
        more: true,
    }]);
    let (bytes, b) = f.build_with_boundaries();
    let h = &bytes[b.l3_fixed_end..b.ext_ends[0]];
    assert_eq!(h, &[IPPROTO_UDP, 0, 0x00, 0x09, 0x00, 0x00, 0xab, 0xcd]);
    let f = Frame::udp(DENIED_V6, NODE_V6, 1, 2).ipv6_ext(&[ExtHeader::Fragment {
        offset_units: 0x1fff,
        more: false,
    }]);
    let (bytes, b) = f.build_with_boundaries();
    assert_eq!(
        &bytes[b.l3_fixed_end + 2..b.l3_fixed_end + 4],
        &[0xff, 0xf8]
    );
}

#[test]
fn fragments_reassemble_to_the_original_datagram() {
    for (src, dst) in all_l3() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let whole = Frame::udp(src, dst, 41000, 30053).payload(&payload);
        let (wb, wbnd) = whole.build_with_boundaries();
        let datagram = &wb[wbnd.l4_start..wbnd.ip_end];
        let frags = whole.fragments(50); // 400 bytes each: 400, 400, 208
        assert_eq!(frags.len(), 3);
        let mut joined = Vec::new();
        for (i, fb) in frags.iter().enumerate() {
            let p = parse(fb);
            let (off, more, body) = match p.net.as_ref().unwrap() {
                NetSlice::Ipv4(ip) => {
                    let h = ip.header();
                    assert_eq!(internet_checksum(h.slice()), 0);
                    assert_eq!(h.protocol().0, IPPROTO_UDP);
                    assert_eq!(h.identification(), DEFAULT_IPV4_ID);
                    (
                        h.fragments_offset().value(),
                        h.more_fragments(),
                        ip.payload().payload,
                    )
                }
                NetSlice::Ipv6(ip) => {
                    let raw = ip.extensions().slice();
                    assert_eq!(ip.header().next_header().0, IPPROTO_FRAGMENT);
                    assert_eq!(raw[0], IPPROTO_UDP);
                    let word = u16::from_be_bytes([raw[2], raw[3]]);
                    (word >> 3, word & 1 == 1, ip.payload().payload)
                }
                NetSlice::Arp(_) => panic!(),
            };
            assert_eq!(usize::from(off) * 8, joined.len(), "fragment {i}");
            assert_eq!(more, i + 1 < frags.len());
            joined.extend_from_slice(body);
        }
        assert_eq!(joined, datagram);
    }
}

// ---------------------------------------------------------------------------
// ICMP
// ---------------------------------------------------------------------------

#[test]
fn icmpv4_port_unreachable_quotes_header_and_8_bytes() {
    for words in [0u8, 3] {
        let orig = Frame::udp(DENIED_V4, NODE_V4, 41000, 30053)
            .vlan(9)
            .ipv4_options(words)
            .payload(&[0x55; 100]);
        let ob = orig.build();
        let obnd = orig.boundaries();
        let bytes = Frame::icmp_port_unreachable(NODE_V4, DENIED_V4, &orig).build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(ip.header().protocol().0, IPPROTO_ICMP);
        let TransportSlice::Icmpv4(i) = p.transport.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!((i.type_u8(), i.code_u8()), (3, 3));
        let quote = i.payload();
        assert_eq!(quote.len(), 20 + 4 * usize::from(words) + 8);
        assert_eq!(quote, &ob[obnd.l3_start..obnd.l4_start + 8]);
        assert_checksums(&bytes);
        assert_eq!(internet_checksum(i.slice()), 0);
    }
}

#[test]
fn icmpv6_port_unreachable_quotes_as_much_as_fits() {
    // small original: quoted whole
    let orig = Frame::udp(DENIED_V6, NODE_V6, 41000, 30053)
        .ipv6_ext(&[ExtHeader::DestOpts])
        .payload(b"q");
    let ob = orig.build();
    let bytes = Frame::icmp_port_unreachable(NODE_V6, DENIED_V6, &orig).build();
    let p = parse(&bytes);
    let TransportSlice::Icmpv6(i) = p.transport.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!((i.type_u8(), i.code_u8()), (1, 4));
    assert_eq!(i.payload(), &ob[ETH_HLEN..]);
    assert_checksums(&bytes);

    // big original: the error is exactly the IPv6 minimum MTU
    let orig = Frame::udp(DENIED_V6, NODE_V6, 41000, 30053).payload(&[7; 3000]);
    let ob = orig.build();
    let f = Frame::icmp_port_unreachable(NODE_V6, DENIED_V6, &orig);
    let bytes = f.build();
    let b = f.boundaries();
    assert_eq!(b.ip_end - b.l3_start, IPV6_MIN_MTU);
    let p = parse(&bytes);
    let TransportSlice::Icmpv6(i) = p.transport.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(i.payload(), &ob[ETH_HLEN..ETH_HLEN + 1232]);
    assert_checksums(&bytes);
}

#[test]
fn icmp_echo_both_families() {
    for (src, dst) in all_l3() {
        let bytes = Frame::icmp_echo(src, dst, 0x1234, 7)
            .payload(b"ping")
            .build();
        assert_checksums(&bytes);
    }
}

#[test]
#[should_panic(expected = "different families")]
fn icmp_error_family_mismatch_panics() {
    let orig = Frame::udp(DENIED_V6, NODE_V6, 1, 2);
    let _ = Frame::icmp_port_unreachable(NODE_V4, DENIED_V4, &orig);
}

// ---------------------------------------------------------------------------
// boundaries / truncate
// ---------------------------------------------------------------------------

fn boundary_cases() -> Vec<Frame> {
    vec![
        Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN),
        Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
            .vlan(1)
            .vlan(2)
            .ipv4_options(4)
            .payload(b"data"),
        Frame::udp(DENIED_V4, NODE_V4, 1, 30000)
            .vlan(3)
            .payload(&[1; 9]),
        Frame::tcp(DENIED_V6, NODE_V6, 1, 6443, SYN).payload(b"zz"),
        Frame::udp(DENIED_V6, NODE_V6, 1, 30000)
            .vlan(4)
            .vlan(5)
            .vlan(6)
            .ipv6_ext(&[
                ExtHeader::HopByHopLen(1),
                ExtHeader::Routing,
                ExtHeader::DestOpts,
            ]),
        Frame::icmp_port_unreachable(
            NODE_V4,
            DENIED_V4,
            &Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN),
        ),
        Frame::icmp_port_unreachable(NODE_V6, DENIED_V6, &Frame::udp(DENIED_V6, NODE_V6, 1, 2))
            .vlan(77),
    ]
}

#[test]
fn boundaries_match_etherparse() {
    for f in boundary_cases() {
        let (bytes, b) = f.build_with_boundaries();
        assert_eq!(bytes, f.build());
        assert_eq!(b, f.boundaries());
        let p = parse(&bytes);
        let LinkSlice::Ethernet2(e) = p.link.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(b.eth_end, e.header_slice().len());
        let mut off = b.eth_end;
        assert_eq!(b.vlan_ends.len(), p.link_exts.len());
        for (end, ext) in b.vlan_ends.iter().zip(&p.link_exts) {
            off += ext.header_len();
            assert_eq!(*end, off);
        }
        assert_eq!(b.l3_start, off);
        let (fixed, l3_total) = match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(ip) => (20, ip.header().slice().len()),
            NetSlice::Ipv6(ip) => (
                ip.header().slice().len(),
                ip.header().slice().len() + ip.extensions().slice().len(),
            ),
            NetSlice::Arp(_) => panic!(),
        };
        assert_eq!(b.l3_fixed_end, b.l3_start + fixed);
        assert_eq!(b.l3_end, b.l3_start + l3_total);
        if let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() {
            let mut off = b.l3_fixed_end;
            let mut ends = Vec::new();
            for e in ip.extensions().clone() {
                off += match e {
                    Ipv6ExtensionSlice::HopByHop(s)
                    | Ipv6ExtensionSlice::Routing(s)
                    | Ipv6ExtensionSlice::DestinationOptions(s) => s.slice().len(),
                    Ipv6ExtensionSlice::Fragment(s) => s.slice().len(),
                    Ipv6ExtensionSlice::Authentication(s) => s.slice().len(),
                };
                ends.push(off);
            }
            assert_eq!(b.ext_ends, ends);
        } else {
            assert!(b.ext_ends.is_empty());
        }
        assert_eq!(b.l4_start, b.l3_end);
        let (hdr, all) = match p.transport.as_ref().unwrap() {
            TransportSlice::Tcp(t) => (t.header_slice().len(), t.slice().len()),
            TransportSlice::Udp(u) => (u.header_slice().len(), u.slice().len()),
            TransportSlice::Icmpv4(i) => (i.header_len(), i.slice().len()),
            TransportSlice::Icmpv6(i) => (i.header_len(), i.slice().len()),
        };
        assert_eq!(b.l4_end, b.l4_start + hdr);
        assert_eq!(b.ip_end, b.l4_start + all);
        assert_eq!(b.end, bytes.len());
        assert_eq!(b.ip_end, b.end);
    }
}

#[test]
fn truncation_at_each_boundary() {
    for f in boundary_cases() {
        let (bytes, b) = f.build_with_boundaries();
        // Strictly parsed, every cut before the end fails.
        for cut in [b.eth_end - 1, b.l3_start + 1, b.l3_end - 1, b.l4_end - 1] {
            assert!(SlicedPacket::from_ethernet(&truncate(&bytes, cut)).is_err());
        }
        // Ethernet header cut: nothing at all.
        assert!(LaxSlicedPacket::from_ethernet(&truncate(&bytes, b.eth_end - 1)).is_err());
        // Cut inside a VLAN tag: the tag is missing.
        for (i, end) in b.vlan_ends.iter().enumerate() {
            let t = truncate(&bytes, end - 1);
            let p = LaxSlicedPacket::from_ethernet(&t).unwrap();
            assert_eq!(p.link_exts.len(), i);
            assert_eq!(p.stop_err.as_ref().unwrap().1, Layer::VlanHeader);
        }
        // Cut anywhere in the IP header (options / ext headers included): no L3.
        for cut in [b.l3_start, b.l3_start + 1, b.l3_fixed_end - 1, b.l3_end - 1] {
            let t = truncate(&bytes, cut);
            let p = LaxSlicedPacket::from_ethernet(&t).unwrap();
            assert_eq!(p.link_exts.len(), b.vlan_ends.len());
            let ipv6_ext_cut = cut >= b.l3_fixed_end && !f.l3.is_v4();
            if ipv6_ext_cut {
                // etherparse keeps the fixed v6 header and stops in the chain
                assert!(p.transport.is_none());
                assert!(p.stop_err.is_some());
            } else {
                assert!(p.net.is_none(), "cut {cut}");
            }
        }
        // Cut in the L4 header: L3 ok, L4 missing.
        let t = truncate(&bytes, b.l4_end - 1);
        let p = LaxSlicedPacket::from_ethernet(&t).unwrap();
        assert!(matches!(
            p.net,
            Some(LaxNetSlice::Ipv4(_) | LaxNetSlice::Ipv6(_))
        ));
        assert!(p.transport.is_none());
        assert!(p.stop_err.is_some());
        // Complete L4 header, payload cut: L4 there.
        let t = truncate(&bytes, b.l4_end);
        let p = LaxSlicedPacket::from_ethernet(&t).unwrap();
        assert!(p.transport.is_some());
    }
}

#[test]
fn truncate_is_a_prefix_and_clamps() {
    let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN).build();
    assert_eq!(truncate(&bytes, 0), Vec::<u8>::new());
    assert_eq!(truncate(&bytes, 20), bytes[..20].to_vec());
    assert_eq!(truncate(&bytes, 10_000), bytes);
}

#[test]
fn pad_to_adds_ethernet_trailer_only() {
    let f = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN).pad_to(60);
    let (bytes, b) = f.build_with_boundaries();
    assert_eq!(bytes.len(), 60);
    assert_eq!(b.ip_end, 14 + 20 + 20);
    assert_eq!(b.end, 60);
    assert!(bytes[b.ip_end..].iter().all(|&x| x == 0));
    let p = parse(&bytes);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(ip.header().total_len(), 40);
    assert_checksums(&bytes);
    // Longer than pad: untouched.
    let f = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
        .payload(&[1; 100])
        .pad_to(60);
    assert_eq!(f.build().len(), 154);
}

// ---------------------------------------------------------------------------
// malformations
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// non-IP
// ---------------------------------------------------------------------------

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
