//! Tier 2: BPF_PROG_TEST_RUN on crafted packets.
//!
//! Each test loads its own unpinned data path (fresh maps), runs frames from
//! `common::packets` through the XDP, tc ingress or tc egress program, and asserts the
//! verdict, the exact `GROUP_STATS` / `REASONS` contents and the exact ring-buffer events.
//! Cases are written once and instantiated for IPv4 and IPv6 and for both ingress programs
//! (XDP and tc ingress) by the `matrix!` macros. Needs root (or CAP_BPF + CAP_NET_ADMIN);
//! without it every test fails with a message saying so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a test fails loudly on what it did not expect"
)]

#[path = "../common"]
mod common {
    pub(crate) mod framegen;
    pub(crate) mod packets;
    #[allow(
        dead_code,
        reason = "shared BPF_PROG_TEST_RUN helpers; not every one is used here"
    )]
    pub(crate) mod progrun;
    pub(crate) mod property;
}

/// `case(fam, prog)` for IPv4/IPv6 × XDP/tc ingress, one #[test] each.
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn v4_xdp() { super::$name(Fam::V4, Prog::Xdp) }
            #[test]
            fn v4_tc() { super::$name(Fam::V4, Prog::TcIngress) }
            #[test]
            fn v6_xdp() { super::$name(Fam::V6, Prog::Xdp) }
            #[test]
            fn v6_tc() { super::$name(Fam::V6, Prog::TcIngress) }
        }
    )*};
}

/// `case(prog)` for XDP and tc ingress (single-family cases).
macro_rules! progs {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn xdp() { super::$name(Prog::Xdp) }
            #[test]
            fn tc() { super::$name(Prog::TcIngress) }
        }
    )*};
}

mod config;
mod expect;

mod answers;
mod catalog;
mod evasion;
mod floods;
mod limits;
mod new_conns;
mod parse;
mod port_ranges;
mod property;
mod reload;
mod verdicts;
