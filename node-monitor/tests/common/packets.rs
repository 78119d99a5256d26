//! Raw Ethernet frame builder for data-path tests.
//!
//! Every frame is built explicitly, byte by byte, with correct IPv4 header,
//! TCP, UDP and ICMP/ICMPv6 checksums (unless a test asks for a broken one), so
//! the frames can go both through `BPF_PROG_TEST_RUN` and, raw over
//! `AF_PACKET`, through a veth into the kernel stack.
//!
//! ```ignore
//! let f = Frame::tcp(DENIED_V4, NODE_V4, 40000, 10250, SYN)
//!     .vlan(100)
//!     .vlan(200)
//!     .ipv4_options(2);
//! let bytes = f.build();
//! let b = f.boundaries();
//! let cut = truncate(&bytes, b.l4_start + 10); // TCP header cut in half
//! ```
//!
//! Std only: this file is included both by integration tests (their `common` module)
//! and by a benchmark example (`#[path = ...] mod packets;`).
#![allow(
    dead_code,
    reason = "std-only frame builder shared by the test binaries and the bench example; each uses part of it"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// TCP flag bits (byte 13 of the TCP header).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// EtherTypes / TPIDs.
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// IP protocol numbers.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Header sizes.
pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const ICMP_HLEN: usize = 8;
/// IPv6 minimum MTU: an ICMPv6 error never exceeds it (RFC 4443 2.4(c)).
pub const IPV6_MIN_MTU: usize = 1280;

/// Lab addresses (documentation ranges only: RFC 5737 / RFC 3849).
/// A source that the tests put on an allowlist.
pub const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// A second allowed source, same /24 as `ALLOWED_V4`.
pub const ALLOWED2_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 6);
/// A source that is on no allowlist.
pub const DENIED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
/// The node (destination of attempts, source of answers).
pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// An allowed source: 2001:db8:0:113::5.
pub const ALLOWED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 5);
/// A second allowed source: 2001:db8:0:113::6.
pub const ALLOWED2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 6);
/// A source on no allowlist: 2001:db8:0:100::77.
pub const DENIED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 0x77);
/// The node: 2001:db8:0:100::1.
pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 1);

/// Default MACs: a fixed locally administered (0x02 bit), unicast pair.
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Default TTL / hop limit, IPv4 identification, TCP sequence and window.
pub const DEFAULT_TTL: u8 = 64;
pub const DEFAULT_IPV4_ID: u16 = 0x1234;
pub const DEFAULT_FRAG_ID: u32 = 0x0000_abcd;
pub const DEFAULT_TCP_SEQ: u32 = 0x1000_0000;
pub const DEFAULT_TCP_WINDOW: u16 = 64240;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// Network layer addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl L3 {
    /// Panics if the two addresses are not of the same family.
    pub fn new(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> L3 {
        match (src.into(), dst.into()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => L3::V4 { src, dst },
            (IpAddr::V6(src), IpAddr::V6(dst)) => L3::V6 { src, dst },
            (s, d) => panic!("packets: mixed address families {s} -> {d}"),
        }
    }

    pub fn is_v4(&self) -> bool {
        matches!(self, L3::V4 { .. })
    }

    pub fn src(&self) -> IpAddr {
        match *self {
            L3::V4 { src, .. } => src.into(),
            L3::V6 { src, .. } => src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match *self {
            L3::V4 { dst, .. } => dst.into(),
            L3::V6 { dst, .. } => dst.into(),
        }
    }
}

/// Transport layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMPv4 or ICMPv6 (chosen by the L3 family): type, code, bytes 4..8 of
    /// the header, and the message body (e.g. the quoted packet).
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        body: Vec<u8>,
    },
    /// Any other IP protocol: no L4 header is written, only `payload`.
    Other {
        proto: u8,
    },
}

impl L4 {
    /// IP protocol number for this L4 under the given family.
    pub fn proto(&self, v4: bool) -> u8 {
        match self {
            L4::Tcp { .. } => IPPROTO_TCP,
            L4::Udp { .. } => IPPROTO_UDP,
            L4::Icmp { .. } if v4 => IPPROTO_ICMP,
            L4::Icmp { .. } => IPPROTO_ICMPV6,
            L4::Other { proto } => *proto,
        }
    }
}

/// One 802.1Q / 802.1ad tag. `tpid: None` = automatic (see [`Frame::vlan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    pub vid: u16,
    pub pcp: u8,
    pub tpid: Option<u16>,
}

/// IPv6 extension headers, chained in the given order before L4.
///
/// Hop-by-Hop and Destination Options carry PadN only (8 bytes) or, when
/// longer, experimental skip-if-unknown options (type 0x1e) plus at most 7
/// bytes of padding, which Linux accepts; Routing is type 0 with
/// Segments Left = 0 (so the IPv6 destination is the final destination and
/// the kernel skips it); Fragment carries identification [`DEFAULT_FRAG_ID`].
/// The kernel only accepts Hop-by-Hop first; the builder does not enforce it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// 8 bytes.
    HopByHop,
    /// 8 bytes.
    Routing,
    /// 8 bytes. `offset_units` in 8-byte units (13 bits), `more` = M flag.
    Fragment { offset_units: u16, more: bool },
    /// 8 bytes.
    DestOpts,
    /// Hop-by-Hop with Hdr Ext Len = `len_units`: 8 * (len_units + 1) bytes.
    /// `HopByHopLen(0)` is identical to `HopByHop`.
    HopByHopLen(u8),
    /// Destination Options with Hdr Ext Len = `len_units`: 8 * (len_units + 1) bytes.
    DestOptsLen(u8),
}

impl ExtHeader {
    /// The Next Header value that announces this header.
    pub fn proto(&self) -> u8 {
        match self {
            ExtHeader::HopByHop | ExtHeader::HopByHopLen(_) => IPPROTO_HOPOPTS,
            ExtHeader::Routing => IPPROTO_ROUTING,
            ExtHeader::Fragment { .. } => IPPROTO_FRAGMENT,
            ExtHeader::DestOpts | ExtHeader::DestOptsLen(_) => IPPROTO_DSTOPTS,
        }
    }

    /// Length on the wire in bytes.
    pub fn wire_len(&self) -> usize {
        match self {
            ExtHeader::HopByHopLen(n) | ExtHeader::DestOptsLen(n) => 8 * (usize::from(*n) + 1),
            _ => 8,
        }
    }

    fn write(&self, next: u8, out: &mut Vec<u8>) {
        match *self {
            ExtHeader::HopByHop | ExtHeader::DestOpts => {
                // Next, Hdr Ext Len 0, PadN(len 4) = 6 bytes of options.
                out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            ExtHeader::HopByHopLen(n) | ExtHeader::DestOptsLen(n) => {
                out.extend_from_slice(&[next, n]);
                fill_ipv6_options(self.wire_len() - 2, out);
            }
            ExtHeader::Routing => {
                // Next, Hdr Ext Len 0, Routing Type 0, Segments Left 0, reserved.
                out.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
            ExtHeader::Fragment { offset_units, more } => {
                assert!(offset_units <= 0x1fff, "packets: fragment offset > 13 bits");
                let off = (offset_units << 3) | u16::from(more);
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&off.to_be_bytes());
                out.extend_from_slice(&DEFAULT_FRAG_ID.to_be_bytes());
            }
        }
    }
}

/// Experimental IPv6 option type (RFC 4727): action 00 = skip if unknown.
pub const IPV6_OPT_EXPERIMENTAL: u8 = 0x1e;

/// Fill `n` bytes of a Hop-by-Hop / Destination Options area the way Linux
/// accepts it: `ip6_parse_tlv` rejects a padding run over 7 bytes and more
/// than 8 non-padding options (sysctl defaults). So: experimental skip-able
/// options (0x1e, up to 255 data bytes each, zero-filled) while more than 7
/// bytes remain, then one Pad1 or PadN for the rest.
fn fill_ipv6_options(mut n: usize, out: &mut Vec<u8>) {
    while n > 7 {
        let data = (n - 2).min(255);
        out.push(IPV6_OPT_EXPERIMENTAL);
        out.push(data as u8);
        out.extend(std::iter::repeat_n(0u8, data));
        n -= data + 2;
    }
    match n {
        0 => {}
        1 => out.push(0), // Pad1
        _ => {
            out.push(1); // PadN
            out.push((n - 2) as u8);
            out.extend(std::iter::repeat_n(0u8, n - 2));
        }
    }
}

/// Byte offsets into a built frame (all relative to the frame start).
///
/// Offsets describe the bytes actually emitted, not what (possibly
/// overridden) length fields claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boundaries {
    /// End of dst MAC + src MAC + first EtherType/TPID: always 14.
    pub eth_end: usize,
    /// End of each VLAN tag (TCI + following EtherType), outermost first.
    pub vlan_ends: Vec<usize>,
    /// Start of the IP header (= last of `vlan_ends`, or `eth_end`).
    pub l3_start: usize,
    /// End of the fixed IP header (l3_start + 20 or + 40).
    pub l3_fixed_end: usize,
    /// End of each IPv6 extension header, in order (empty for IPv4).
    pub ext_ends: Vec<usize>,
    /// End of the IP header including IPv4 options / IPv6 extension headers.
    pub l3_end: usize,
    /// Start of the L4 header (= l3_end).
    pub l4_start: usize,
    /// End of the L4 header (TCP 20, UDP 8, ICMP 8 bytes; = l4_start for
    /// `L4::Other`).
    pub l4_end: usize,
    /// End of the IP packet (L4 header, ICMP body and payload included).
    pub ip_end: usize,
    /// Frame length (ip_end plus any Ethernet padding from `pad_to`).
    pub end: usize,
}

/// A frame builder. Methods consume and return `self`; `build()` borrows.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlans: Vec<VlanTag>,
    pub l3: L3,
    pub l4: L4,
    pub ttl: u8,
    pub ipv4_id: u16,
    pub ipv4_option_words: u8,
    pub ipv4_dont_fragment: bool,
    /// (offset in 8-byte units, more fragments)
    pub ipv4_frag: Option<(u16, bool)>,
    pub ipv6_exts: Vec<ExtHeader>,
    pub payload: Vec<u8>,
    pub pad_to: usize,
    // Malformation overrides: written as-is instead of the computed value.
    pub ipv4_ihl_raw: Option<u8>,
    pub ipv4_total_len_raw: Option<u16>,
    pub ipv4_checksum_raw: Option<u16>,
    pub ipv6_payload_len_raw: Option<u16>,
    pub tcp_data_offset_raw: Option<u8>,
    pub l4_checksum_raw: Option<u16>,
}

impl Frame {
    /// A frame with the given layers and all defaults.
    pub fn new(l3: L3, l4: L4) -> Frame {
        Frame {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlans: Vec::new(),
            l3,
            l4,
            ttl: DEFAULT_TTL,
            ipv4_id: DEFAULT_IPV4_ID,
            ipv4_option_words: 0,
            ipv4_dont_fragment: false,
            ipv4_frag: None,
            ipv6_exts: Vec::new(),
            payload: Vec::new(),
            pad_to: 0,
            ipv4_ihl_raw: None,
            ipv4_total_len_raw: None,
            ipv4_checksum_raw: None,
            ipv6_payload_len_raw: None,
            tcp_data_offset_raw: None,
            l4_checksum_raw: None,
        }
    }

    /// TCP segment. `flags`: [`FIN`] [`SYN`] [`RST`] [`PSH`] [`ACK`] [`URG`]
    /// (any u8; bits 0x40 ECE and 0x80 CWR pass through). The ACK number is 1
    /// when ACK is set, else 0. Panics on mixed address families.
    pub fn tcp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        sport: u16,
        dport: u16,
        flags: u8,
    ) -> Frame {
        let ack = if flags & ACK != 0 { 1 } else { 0 };
        Frame::new(
            L3::new(src, dst),
            L4::Tcp {
                sport,
                dport,
                flags,
                seq: DEFAULT_TCP_SEQ,
                ack,
                window: DEFAULT_TCP_WINDOW,
            },
        )
    }

    /// UDP datagram. Panics on mixed address families.
    pub fn udp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, sport: u16, dport: u16) -> Frame {
        Frame::new(L3::new(src, dst), L4::Udp { sport, dport })
    }

    /// An IP packet of any other protocol (no L4 header; add bytes with
    /// `payload`).
    pub fn ip_proto(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, proto: u8) -> Frame {
        Frame::new(L3::new(src, dst), L4::Other { proto })
    }

    /// ICMP echo request (v4 type 8 / v6 type 128), id and seq given.
    pub fn icmp_echo(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, id: u16, seq: u16) -> Frame {
        let l3 = L3::new(src, dst);
        let ty = if l3.is_v4() { 8 } else { 128 };
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        Frame::new(
            l3,
            L4::Icmp {
                ty,
                code: 0,
                rest,
                body: Vec::new(),
            },
        )
    }

    /// Port unreachable from `from` to `to` about `original` (whose IP packet
    /// is quoted, without its Ethernet/VLAN headers): ICMPv4 type 3 code 3
    /// quoting the IP header (with options) + the first 8 bytes after it;
    /// ICMPv6 type 1 code 4 quoting as much of the original IPv6 packet as
    /// fits in 1280 bytes (1232). Panics on mixed families.
    pub fn icmp_port_unreachable(
        from: impl Into<IpAddr>,
        to: impl Into<IpAddr>,
        original: &Frame,
    ) -> Frame {
        let l3 = L3::new(from, to);
        assert_eq!(
            l3.is_v4(),
            original.l3.is_v4(),
            "packets: ICMP error and quoted packet of different families"
        );
        let bytes = original.build();
        let b = original.boundaries();
        let ip = &bytes[b.l3_start..b.ip_end];
        let (ty, code, quote) = if l3.is_v4() {
            let n = (b.l3_end - b.l3_start + 8).min(ip.len());
            (3, 3, ip[..n].to_vec())
        } else {
            let n = (IPV6_MIN_MTU - IPV6_HLEN - ICMP_HLEN).min(ip.len());
            (1, 4, ip[..n].to_vec())
        };
        Frame::new(
            l3,
            L4::Icmp {
                ty,
                code,
                rest: [0; 4],
                body: quote,
            },
        )
    }

    // --- Ethernet -------------------------------------------------------

    pub fn src_mac(mut self, mac: [u8; 6]) -> Frame {
        self.src_mac = mac;
        self
    }

    pub fn dst_mac(mut self, mac: [u8; 6]) -> Frame {
        self.dst_mac = mac;
        self
    }

    /// Push a VLAN tag; the first call is the outermost tag. TPID is
    /// automatic: with 2+ tags the outermost is 0x88a8 (802.1ad) and the
    /// others 0x8100; a single tag is 0x8100. Any number of tags is allowed.
    pub fn vlan(self, vid: u16) -> Frame {
        self.vlan_tag(VlanTag {
            vid,
            pcp: 0,
            tpid: None,
        })
    }

    /// Push a VLAN tag with a forced TPID (e.g. 0x8100 outer + 0x8100 inner).
    pub fn vlan_tpid(self, vid: u16, tpid: u16) -> Frame {
        self.vlan_tag(VlanTag {
            vid,
            pcp: 0,
            tpid: Some(tpid),
        })
    }

    /// Push a fully specified tag.
    pub fn vlan_tag(mut self, tag: VlanTag) -> Frame {
        assert!(tag.vid <= 0x0fff, "packets: VLAN id > 12 bits");
        assert!(tag.pcp <= 7, "packets: VLAN PCP > 3 bits");
        self.vlans.push(tag);
        self
    }

    /// Append zero bytes after the IP packet until the frame is `len` bytes
    /// long (Ethernet minimum: 60). Not counted in IP lengths.
    pub fn pad_to(mut self, len: usize) -> Frame {
        self.pad_to = len;
        self
    }

    // --- IP ---------------------------------------------------------------

    /// TTL (IPv4) / Hop Limit (IPv6).
    pub fn ttl(mut self, ttl: u8) -> Frame {
        self.ttl = ttl;
        self
    }

    pub fn ipv4_id(mut self, id: u16) -> Frame {
        self.ipv4_id = id;
        self
    }

    /// IPv4 options: IHL = 5 + `words` (0..=10), filled with NOP and a final
    /// EOL.
    pub fn ipv4_options(mut self, words: u8) -> Frame {
        assert!(self.l3.is_v4(), "packets: ipv4_options on an IPv6 frame");
        assert!(words <= 10, "packets: IHL max 15 = 5 + 10 option words");
        self.ipv4_option_words = words;
        self
    }

    /// Set the DF flag.
    pub fn ipv4_df(mut self) -> Frame {
        self.ipv4_dont_fragment = true;
        self
    }

    /// IPv4 fragment: offset in 8-byte units (13 bits), MF flag. The L4
    /// header is still written at the start of the IP payload (for a non-first
    /// fragment these are just payload bytes), checksummed over what is
    /// present.
    pub fn ipv4_fragment(mut self, offset_units: u16, more_fragments: bool) -> Frame {
        assert!(self.l3.is_v4(), "packets: ipv4_fragment on an IPv6 frame");
        assert!(offset_units <= 0x1fff, "packets: fragment offset > 13 bits");
        self.ipv4_frag = Some((offset_units, more_fragments));
        self
    }

    /// IPv6 extension headers, chained in order between the IPv6 header and
    /// L4 (appends to any already set).
    pub fn ipv6_ext(mut self, kinds: &[ExtHeader]) -> Frame {
        assert!(!self.l3.is_v4(), "packets: ipv6_ext on an IPv4 frame");
        self.ipv6_exts.extend_from_slice(kinds);
        self
    }

    // --- L4 ---------------------------------------------------------------

    /// Bytes after the L4 header (after the ICMP body for ICMP).
    pub fn payload(mut self, bytes: &[u8]) -> Frame {
        self.payload = bytes.to_vec();
        self
    }

    pub fn tcp_seq(mut self, seq: u32) -> Frame {
        if let L4::Tcp { seq: s, .. } = &mut self.l4 {
            *s = seq;
        } else {
            panic!("packets: tcp_seq on a non-TCP frame");
        }
        self
    }

    pub fn tcp_ack(mut self, ack: u32) -> Frame {
        if let L4::Tcp { ack: a, .. } = &mut self.l4 {
            *a = ack;
        } else {
            panic!("packets: tcp_ack on a non-TCP frame");
        }
        self
    }

    // --- Malformations (written as-is; boundaries still describe bytes) ----

    /// Force the IPv4 IHL nibble (the header written is still 20 + options).
    pub fn ipv4_ihl_raw(mut self, ihl: u8) -> Frame {
        assert!(ihl <= 15);
        self.ipv4_ihl_raw = Some(ihl);
        self
    }

    /// Force the IPv4 Total Length field.
    pub fn ipv4_total_len_raw(mut self, len: u16) -> Frame {
        self.ipv4_total_len_raw = Some(len);
        self
    }

    /// Force the IPv4 header checksum (e.g. a wrong one).
    pub fn ipv4_checksum_raw(mut self, csum: u16) -> Frame {
        self.ipv4_checksum_raw = Some(csum);
        self
    }

    /// Force the IPv6 Payload Length field.
    pub fn ipv6_payload_len_raw(mut self, len: u16) -> Frame {
        self.ipv6_payload_len_raw = Some(len);
        self
    }

    /// Force the TCP data offset nibble (the header written is still 20 bytes).
    pub fn tcp_data_offset_raw(mut self, doff: u8) -> Frame {
        assert!(doff <= 15);
        self.tcp_data_offset_raw = Some(doff);
        self
    }

    /// Force the TCP/UDP/ICMP checksum field.
    pub fn l4_checksum_raw(mut self, csum: u16) -> Frame {
        self.l4_checksum_raw = Some(csum);
        self
    }

    // --- Output -------------------------------------------------------------

    /// The frame bytes.
    pub fn build(&self) -> Vec<u8> {
        self.assemble().0
    }

    /// Header offsets in `build()`'s output.
    pub fn boundaries(&self) -> Boundaries {
        self.assemble().1
    }

    /// Both at once.
    pub fn build_with_boundaries(&self) -> (Vec<u8>, Boundaries) {
        self.assemble()
    }

    /// Split this packet into IP fragments of `chunk_units` * 8 bytes of
    /// fragmentable payload each (the last may be shorter), for reassembly by
    /// the kernel: the L4 header and checksum are computed over the whole
    /// datagram first. IPv4: same header (options included) in every
    /// fragment, MF on all but the last. IPv6: the extension headers already
    /// set form the unfragmentable part, a Fragment header follows them.
    pub fn fragments(&self, chunk_units: u16) -> Vec<Vec<u8>> {
        assert!(chunk_units > 0, "packets: empty fragments");
        assert!(
            self.ipv4_frag.is_none()
                && !self
                    .ipv6_exts
                    .iter()
                    .any(|e| matches!(e, ExtHeader::Fragment { .. })),
            "packets: fragments() of a packet that is already a fragment"
        );
        let v4 = self.l3.is_v4();
        let (seg, _) = self.l4_bytes();
        let chunk = usize::from(chunk_units) * 8;
        let n = seg.len().div_ceil(chunk).max(1);
        (0..n)
            .map(|i| {
                let part = &seg[i * chunk..((i + 1) * chunk).min(seg.len())];
                let more = i + 1 < n;
                let off = u16::try_from(i * chunk / 8).expect("fragment offset > 13 bits");
                assert!(off <= 0x1fff, "packets: fragment offset > 13 bits");
                let mut f = self.clone();
                f.l4 = L4::Other {
                    proto: self.l4.proto(v4),
                };
                f.payload = part.to_vec();
                if v4 {
                    f.ipv4_frag = Some((off, more));
                } else {
                    f.ipv6_exts.push(ExtHeader::Fragment {
                        offset_units: off,
                        more,
                    });
                }
                f.build()
            })
            .collect()
    }

    /// The EtherType of the L3 packet.
    pub fn l3_ethertype(&self) -> u16 {
        if self.l3.is_v4() {
            ETH_P_IPV4
        } else {
            ETH_P_IPV6
        }
    }

    /// L4 header + ICMP body + payload, checksum field filled.
    fn l4_bytes(&self) -> (Vec<u8>, usize) {
        let v4 = self.l3.is_v4();
        let mut seg = Vec::new();
        let (hdr_len, csum_at) = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
                window,
            } => {
                let doff = self.tcp_data_offset_raw.unwrap_or((TCP_HLEN / 4) as u8);
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&seq.to_be_bytes());
                seg.extend_from_slice(&ack.to_be_bytes());
                seg.push(doff << 4);
                seg.push(*flags);
                seg.extend_from_slice(&window.to_be_bytes());
                seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                (TCP_HLEN, Some(16))
            }
            L4::Udp { sport, dport } => {
                let len = (UDP_HLEN + self.payload.len()) as u16;
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&len.to_be_bytes());
                seg.extend_from_slice(&[0, 0]);
                (UDP_HLEN, Some(6))
            }
            L4::Icmp {
                ty,
                code,
                rest,
                body,
            } => {
                seg.extend_from_slice(&[*ty, *code, 0, 0]);
                seg.extend_from_slice(rest);
                seg.extend_from_slice(body);
                (ICMP_HLEN, Some(2))
            }
            L4::Other { .. } => (0, None),
        };
        seg.extend_from_slice(&self.payload);

        if let Some(at) = csum_at {
            let proto = self.l4.proto(v4);
            let csum = match self.l4_checksum_raw {
                Some(c) => c,
                None => {
                    let mut acc = 0u64;
                    // ICMPv4 has no pseudo-header; everything else does.
                    if proto != IPPROTO_ICMP {
                        acc = pseudo_header_sum(&self.l3, proto, seg.len());
                    }
                    let c = fold(sum_bytes(acc, &seg));
                    // UDP: 0 means "no checksum"; send 0xffff instead.
                    if proto == IPPROTO_UDP && c == 0 {
                        0xffff
                    } else {
                        c
                    }
                }
            };
            seg[at..at + 2].copy_from_slice(&csum.to_be_bytes());
        }
        (seg, hdr_len)
    }

    fn assemble(&self) -> (Vec<u8>, Boundaries) {
        let v4 = self.l3.is_v4();
        let (seg, l4_hdr_len) = self.l4_bytes();

        // Ethernet + VLAN tags.
        let mut out = Vec::with_capacity(128 + seg.len());
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        let n = self.vlans.len();
        let mut vlan_ends = Vec::with_capacity(n);
        for (i, tag) in self.vlans.iter().enumerate() {
            let tpid = tag.tpid.unwrap_or(if i == 0 && n >= 2 {
                TPID_8021AD
            } else {
                TPID_8021Q
            });
            out.extend_from_slice(&tpid.to_be_bytes());
            let tci = (u16::from(tag.pcp) << 13) | tag.vid;
            out.extend_from_slice(&tci.to_be_bytes());
            vlan_ends.push(ETH_HLEN + VLAN_HLEN * (i + 1));
        }
        out.extend_from_slice(&self.l3_ethertype().to_be_bytes());
        let l3_start = out.len();
        let mut ext_ends = Vec::new();

        match self.l3 {
            L3::V4 { src, dst } => {
                let opt_len = 4 * usize::from(self.ipv4_option_words);
                let hlen = IPV4_HLEN + opt_len;
                let ihl = self.ipv4_ihl_raw.unwrap_or((hlen / 4) as u8);
                let total = self.ipv4_total_len_raw.unwrap_or((hlen + seg.len()) as u16);
                let (off, mf) = self.ipv4_frag.unwrap_or((0, false));
                let frag = (u16::from(self.ipv4_dont_fragment) << 14) | (u16::from(mf) << 13) | off;
                let mut h = Vec::with_capacity(hlen);
                h.push(0x40 | ihl);
                h.push(0); // DSCP/ECN
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&self.ipv4_id.to_be_bytes());
                h.extend_from_slice(&frag.to_be_bytes());
                h.push(self.ttl);
                h.push(self.l4.proto(v4));
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                if opt_len > 0 {
                    h.extend(std::iter::repeat_n(1u8, opt_len - 1)); // NOP
                    h.push(0); // EOL
                }
                let csum = self
                    .ipv4_checksum_raw
                    .unwrap_or_else(|| fold(sum_bytes(0, &h)));
                h[10..12].copy_from_slice(&csum.to_be_bytes());
                out.extend_from_slice(&h);
            }
            L3::V6 { src, dst } => {
                let ext_len: usize = self.ipv6_exts.iter().map(ExtHeader::wire_len).sum();
                let plen = self
                    .ipv6_payload_len_raw
                    .unwrap_or((ext_len + seg.len()) as u16);
                let l4_proto = self.l4.proto(v4);
                let first = self.ipv6_exts.first().map_or(l4_proto, ExtHeader::proto);
                out.extend_from_slice(&[0x60, 0, 0, 0]); // version, TC, flow label
                out.extend_from_slice(&plen.to_be_bytes());
                out.push(first);
                out.push(self.ttl);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                for (i, e) in self.ipv6_exts.iter().enumerate() {
                    let next = self.ipv6_exts.get(i + 1).map_or(l4_proto, ExtHeader::proto);
                    e.write(next, &mut out);
                    ext_ends.push(out.len());
                }
            }
        }
        let l3_fixed_end = l3_start + if v4 { IPV4_HLEN } else { IPV6_HLEN };
        let l3_end = out.len();
        out.extend_from_slice(&seg);
        let ip_end = out.len();
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        let b = Boundaries {
            eth_end: ETH_HLEN,
            vlan_ends,
            l3_start,
            l3_fixed_end,
            ext_ends,
            l3_end,
            l4_start: l3_end,
            l4_end: l3_end + l4_hdr_len,
            ip_end,
            end: out.len(),
        };
        (out, b)
    }
}

// ---------------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------------

/// Add `data` as big-endian 16-bit words (odd tail padded with zero).
pub fn sum_bytes(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Fold to 16 bits and complement.
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of `data`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum_bytes(0, data))
}

/// Sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 8200 8.1). For
/// IPv6 the destination is the final one; routing headers built here always
/// have Segments Left = 0, so that is the IPv6 header's destination.
fn pseudo_header_sum(l3: &L3, proto: u8, l4_len: usize) -> u64 {
    match *l3 {
        L3::V4 { src, dst } => {
            let acc = sum_bytes(0, &src.octets());
            let acc = sum_bytes(acc, &dst.octets());
            let acc = acc + u64::from(proto);
            acc + (l4_len as u64 & 0xffff)
        }
        L3::V6 { src, dst } => {
            let acc = sum_bytes(0, &src.octets());
            let acc = sum_bytes(acc, &dst.octets());
            let acc = sum_bytes(acc, &(l4_len as u32).to_be_bytes());
            acc + u64::from(proto)
        }
    }
}

// ---------------------------------------------------------------------------
// Free helpers
// ---------------------------------------------------------------------------

/// The first `len` bytes of `frame` (all of it if shorter). Length fields are
/// left as they were: the result claims more than it holds.
pub fn truncate(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len.min(frame.len())].to_vec()
}

/// A broadcast ARP request (who-has NODE_V4 tell DENIED_V4), 42 bytes.
pub fn non_ip_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&BROADCAST_MAC);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    out.extend_from_slice(&ETH_P_IPV4.to_be_bytes()); // PTYPE
    out.push(6); // HLEN
    out.push(4); // PLEN
    out.extend_from_slice(&1u16.to_be_bytes()); // request
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&DENIED_V4.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&NODE_V4.octets());
    out
}
