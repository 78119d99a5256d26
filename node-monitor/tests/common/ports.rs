//! Loopback ports that nothing listens on, for servers and peers the tests start.

use std::net::{TcpListener, UdpSocket};

/// A loopback port that nothing listens on (bound, then released).
pub(crate) fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// A loopback UDP port that nothing listens on (bound, then released).
pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind")
        .port()
}
