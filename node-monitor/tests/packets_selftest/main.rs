//! Self-tests of the packet builder (tests/common/packets.rs), checked against
//! etherparse; one file per part of a frame.

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
