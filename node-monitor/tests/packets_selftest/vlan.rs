//! 802.1Q and 802.1ad tags: single, QinQ, deeper stacks, forced TPID and PCP.

use etherparse::{EtherType, LinkExtSlice, SlicedPacket};

use crate::{
    check::{all_l3, assert_checksums, parse, tcp_of, vlan_stack},
    common::packets::*,
};

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
