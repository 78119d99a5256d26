//! Loopback ports that nothing listens on, for servers and peers the tests start.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

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

/// A loopback TCP port that refuses connections for as long as this lives: a socket is bound
/// to it and never listens. The kernel hands the port to no other socket meanwhile (this one
/// does not set SO_REUSEADDR, so neither a bind to port 0 nor one to this port can share it),
/// so a peer a test means to be dead cannot become another test's receiver, as a port from
/// [`free_tcp_port`] can once released.
pub(crate) struct RefusingPort {
    socket: Option<Socket>,
    pub(crate) port: u16,
}

impl RefusingPort {
    pub(crate) fn new() -> RefusingPort {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let port = socket
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("an inet address")
            .port();
        RefusingPort {
            socket: Some(socket),
            port,
        }
    }

    /// Gives the port up, for a test that starts its peer on it now.
    pub(crate) fn release(&mut self) {
        self.socket = None;
    }
}
