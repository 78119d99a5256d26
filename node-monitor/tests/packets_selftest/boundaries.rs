//! Header boundaries against etherparse, truncation at each boundary, truncate and pad.

use etherparse::{
    Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, NetSlice, SlicedPacket,
    TransportSlice, err::Layer,
};

use crate::{
    check::{assert_checksums, parse},
    common::packets::*,
};

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
