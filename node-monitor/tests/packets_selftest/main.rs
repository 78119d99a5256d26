//! Self-tests of the packet builder (tests/common/packets.rs), checked against
//! etherparse; one file per part of a frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a test fails loudly on what it did not expect"
)]

#[path = "../common"]
mod common {
    pub(crate) mod packets;
}

mod check;

mod basics;
mod boundaries;
mod icmp;
mod ipv4;
mod ipv6;
mod malformed;
mod vlan;
