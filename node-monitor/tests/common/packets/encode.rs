//! Frame output: the wire encoding of every header, with header boundaries, checksums and
//! fragments. A child of `packets` (so it sees `Frame`'s fields), in its own file.

use super::{
    Boundaries, DEFAULT_FRAG_ID, ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, ExtHeader, Frame, ICMP_HLEN,
    IPPROTO_ICMP, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, IPV6_OPT_EXPERIMENTAL, L3, L4, TCP_HLEN,
    TPID_8021AD, TPID_8021Q, UDP_HLEN, VLAN_HLEN,
    checksum::{fold, pseudo_header_sum, sum_bytes},
};

impl ExtHeader {
    fn write(self, next: u8, out: &mut Vec<u8>) {
        match self {
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

impl Frame {
    /// The frame bytes.
    pub(crate) fn build(&self) -> Vec<u8> {
        self.assemble().0
    }

    /// Header offsets in `build()`'s output.
    pub(crate) fn boundaries(&self) -> Boundaries {
        self.assemble().1
    }

    /// Both at once.
    pub(crate) fn build_with_boundaries(&self) -> (Vec<u8>, Boundaries) {
        self.assemble()
    }

    /// Split this packet into IP fragments of `chunk_units` * 8 bytes of
    /// fragmentable payload each (the last may be shorter), for reassembly by
    /// the kernel: the L4 header and checksum are computed over the whole
    /// datagram first. IPv4: same header (options included) in every
    /// fragment, MF on all but the last. IPv6: the extension headers already
    /// set form the unfragmentable part, a Fragment header follows them.
    pub(crate) fn fragments(&self, chunk_units: u16) -> Vec<Vec<u8>> {
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
    pub(crate) fn l3_ethertype(&self) -> u16 {
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
                let ext_len: usize = self
                    .ipv6_exts
                    .iter()
                    .copied()
                    .map(ExtHeader::wire_len)
                    .sum();
                let plen = self
                    .ipv6_payload_len_raw
                    .unwrap_or((ext_len + seg.len()) as u16);
                let l4_proto = self.l4.proto(v4);
                let first = self.ipv6_exts.first().map_or(l4_proto, |e| e.proto());
                out.extend_from_slice(&[0x60, 0, 0, 0]); // version, TC, flow label
                out.extend_from_slice(&plen.to_be_bytes());
                out.push(first);
                out.push(self.ttl);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                for (i, e) in self.ipv6_exts.iter().enumerate() {
                    let next = self.ipv6_exts.get(i + 1).map_or(l4_proto, |e| e.proto());
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
