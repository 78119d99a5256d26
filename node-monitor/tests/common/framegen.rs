//! Generated frames for the property runs of the eBPF programs (the datapath test `property`
//! and the `property` section of `cargo xtask bench`): structure-aware frames (valid headers
//! with random fields, VLAN tags and IPv6 extension chains of random length, IPv4 options and
//! fragments, watched and unwatched ports, allowed and denied sources), cut at any length or
//! with a byte flipped, and plain random bytes behind an Ethernet header. Seeded, so a failing
//! run can be replayed.
//!
//! Included by the tests (`crate::common::framegen`) and by the bench (`#[path]`), beside
//! `packets.rs`: it names that module as `super::packets`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::packets::{ExtHeader, Frame, L3, L4, VlanTag};

/// Ethernet header length: no frame is shorter (BPF_PROG_TEST_RUN refuses shorter input).
const ETH_HLEN: usize = 14;

/// What the generator draws addresses and ports from.
pub(crate) struct Space {
    /// Watched (protocol, port) pairs, drawn half of the time.
    pub(crate) watched: Vec<(u8, u16)>,
    /// Sources drawn besides random ones (allowed and denied ones of the config).
    pub(crate) sources_v4: Vec<Ipv4Addr>,
    pub(crate) sources_v6: Vec<Ipv6Addr>,
    /// The node's addresses (destinations, and sources of answers).
    pub(crate) node_v4: Ipv4Addr,
    pub(crate) node_v6: Ipv6Addr,
    /// Frames the node sends (for tc egress): the node's address and the watched port are
    /// the source, the peer the destination.
    pub(crate) egress: bool,
}

pub(crate) struct FrameGen {
    rng: Pcg64Mcg,
    space: Space,
}

impl FrameGen {
    pub(crate) fn new(seed: u64, space: Space) -> FrameGen {
        FrameGen {
            rng: Pcg64Mcg::seed_from_u64(seed),
            space,
        }
    }

    /// The next frame: 70% structure-aware, 30% random bytes behind an Ethernet header.
    pub(crate) fn next_frame(&mut self) -> Vec<u8> {
        if self.rng.random_range(0..10) < 7 {
            self.structured()
        } else {
            self.random_bytes()
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn port(&mut self, proto: u8) -> u16 {
        if self.chance(50) {
            let watched: Vec<u16> = self
                .space
                .watched
                .iter()
                .filter(|(p, _)| *p == proto)
                .map(|(_, port)| *port)
                .collect();
            if !watched.is_empty() {
                return watched[self.rng.random_range(0..watched.len())];
            }
        }
        self.rng.random()
    }

    fn addresses(&mut self) -> (IpAddr, IpAddr) {
        if self.chance(60) {
            let src = if self.chance(70) && !self.space.sources_v4.is_empty() {
                let i = self.rng.random_range(0..self.space.sources_v4.len());
                self.space.sources_v4[i]
            } else {
                Ipv4Addr::from(self.rng.random::<u32>())
            };
            let dst = if self.chance(80) {
                self.space.node_v4
            } else {
                Ipv4Addr::from(self.rng.random::<u32>())
            };
            (src.into(), dst.into())
        } else {
            let src = if self.chance(70) && !self.space.sources_v6.is_empty() {
                let i = self.rng.random_range(0..self.space.sources_v6.len());
                self.space.sources_v6[i]
            } else {
                Ipv6Addr::from(self.rng.random::<u128>())
            };
            let dst = if self.chance(80) {
                self.space.node_v6
            } else {
                Ipv6Addr::from(self.rng.random::<u128>())
            };
            (src.into(), dst.into())
        }
    }

    fn l4(&mut self) -> L4 {
        match self.rng.random_range(0..10) {
            0..=5 => {
                // Half pure SYNs, the rest any flags.
                let flags = if self.chance(50) {
                    0x02
                } else {
                    self.rng.random()
                };
                L4::Tcp {
                    sport: self.rng.random(),
                    dport: self.port(6),
                    flags,
                    seq: self.rng.random(),
                    ack: self.rng.random(),
                    window: self.rng.random(),
                }
            }
            6..=8 => L4::Udp {
                sport: self.rng.random(),
                dport: self.port(17),
            },
            _ => {
                if self.chance(50) {
                    L4::Other {
                        proto: self.rng.random(),
                    }
                } else {
                    L4::Icmp {
                        ty: self.rng.random(),
                        code: self.rng.random(),
                        rest: self.rng.random(),
                        body: self.bytes(0..48),
                    }
                }
            }
        }
    }

    fn bytes(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let mut b = vec![0u8; self.rng.random_range(len)];
        self.rng.fill(&mut b[..]);
        b
    }

    fn structured(&mut self) -> Vec<u8> {
        let (mut src, mut dst) = self.addresses();
        let mut l4 = self.l4();
        if self.space.egress {
            std::mem::swap(&mut src, &mut dst);
            match &mut l4 {
                L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => {
                    std::mem::swap(sport, dport);
                }
                _ => {}
            }
        }
        let mut f = Frame::new(L3::new(src, dst), l4);
        // VLAN tags: mostly none, sometimes more than the parser walks.
        let tags = match self.rng.random_range(0..20) {
            0..=13 => 0,
            14..=16 => 1,
            17..=18 => 2,
            _ => self.rng.random_range(3..=6),
        };
        for _ in 0..tags {
            let tpid = match self.rng.random_range(0..3) {
                0 => Some(0x8100),
                1 => Some(0x88a8),
                _ => None,
            };
            // Priority tags (VLAN id 0) included.
            let vid = if self.chance(20) {
                0
            } else {
                self.rng.random_range(0..4096)
            };
            f = f.vlan_tag(VlanTag {
                vid,
                pcp: self.rng.random_range(0..8),
                tpid,
            });
        }
        if f.l3.is_v4() {
            if self.chance(10) {
                f = f.ipv4_options(self.rng.random_range(1..=10));
            }
            if self.chance(15) {
                f = f.ipv4_fragment(self.rng.random_range(0..4), self.rng.random());
            }
        } else if self.chance(25) {
            let n = self.rng.random_range(1..=9);
            let mut chain = Vec::with_capacity(n);
            for _ in 0..n {
                chain.push(match self.rng.random_range(0..6) {
                    0 => ExtHeader::HopByHop,
                    1 => ExtHeader::Routing,
                    2 => ExtHeader::Fragment {
                        offset_units: self.rng.random_range(0..3),
                        more: self.rng.random(),
                    },
                    3 => ExtHeader::DestOpts,
                    4 => ExtHeader::HopByHopLen(self.rng.random_range(0..40)),
                    _ => ExtHeader::DestOptsLen(self.rng.random_range(0..40)),
                });
            }
            f = f.ipv6_ext(&chain);
        }
        if self.chance(30) {
            let payload = self.bytes(1..64);
            f = f.payload(&payload);
        }
        if self.chance(5) {
            f = f.tcp_data_offset_raw(self.rng.random_range(0..16));
        }
        let mut bytes = f.build();
        // Cut anywhere past the Ethernet header, or flip a byte.
        if self.chance(20) && bytes.len() > ETH_HLEN {
            let len = self.rng.random_range(ETH_HLEN..bytes.len());
            bytes.truncate(len);
        } else if self.chance(10) {
            let i = self.rng.random_range(12..bytes.len());
            bytes[i] ^= 1 << self.rng.random_range(0..8);
        }
        bytes
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let mut b = self.bytes(ETH_HLEN..ETH_HLEN + 200);
        let ethertype: u16 = match self.rng.random_range(0..5) {
            0 => 0x0800,
            1 => 0x86dd,
            2 => 0x8100,
            3 => 0x88a8,
            _ => self.rng.random(),
        };
        b[12..14].copy_from_slice(&ethertype.to_be_bytes());
        b
    }
}
