//! Real TCP/UDP peers inside lab namespaces: connects and probes with explicit source ports,
//! servers that stop by themselves (count and time bounded), and `curl`.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use node_monitor_lab::{Netns, output_with_timeout};
use socket2::{Domain, Protocol, Socket, Type};

fn socket_for(dst: &SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(*dst), ty, Some(proto))?;
    s.set_reuse_address(true)?;
    Ok(s)
}

/// How a TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpOutcome {
    Connected,
    Refused,
    TimedOut,
    Other(ErrorKind),
}

/// A TCP connect from `src` (explicit port) to `dst` inside `ns`, at most `timeout`; on
/// success sends a line and closes.
pub(crate) fn tcp_connect(
    ns: &Netns,
    src: SocketAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> TcpOutcome {
    ns.run(move || {
        let s = socket_for(&dst, Type::STREAM, Protocol::TCP).expect("tcp socket");
        s.bind(&src.into())
            .unwrap_or_else(|e| panic!("bind {src}: {e}"));
        match s.connect_timeout(&dst.into(), timeout) {
            Ok(()) => {
                let mut st: std::net::TcpStream = s.into();
                let _ = st.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let _ = st.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 256];
                let _ = st.read(&mut buf);
                TcpOutcome::Connected
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => TcpOutcome::Refused,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                TcpOutcome::TimedOut
            }
            Err(e) => TcpOutcome::Other(e.kind()),
        }
    })
    .expect("run in netns")
}

/// How a UDP probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UdpOutcome {
    Reply(Vec<u8>),
    Refused,
    Silence,
    Other(ErrorKind),
}

/// One UDP datagram from `src` (explicit port) to `dst` inside `ns`; waits at most `wait`
/// for a reply or an ICMP error.
pub(crate) fn udp_probe(
    ns: &Netns,
    src: SocketAddr,
    dst: SocketAddr,
    wait: Duration,
) -> UdpOutcome {
    ns.run(move || {
        let s = socket_for(&dst, Type::DGRAM, Protocol::UDP).expect("udp socket");
        s.bind(&src.into())
            .unwrap_or_else(|e| panic!("bind {src}: {e}"));
        s.connect(&dst.into()).expect("udp connect");
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(wait)).expect("timeout");
        if let Err(e) = s.send(b"probe") {
            return UdpOutcome::Other(e.kind());
        }
        let mut buf = [0u8; 512];
        match s.recv(&mut buf) {
            Ok(n) => UdpOutcome::Reply(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => UdpOutcome::Refused,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                UdpOutcome::Silence
            }
            Err(e) => UdpOutcome::Other(e.kind()),
        }
    })
    .expect("run in netns")
}

/// A server thread that stops by itself (count and time bounded) or when dropped.
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl Server {
    /// Stops the server; returns how many connections or datagrams it served.
    pub(crate) fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How long a server lives at most.
const SERVER_LIFETIME: Duration = Duration::from_secs(60);

/// TCP listeners on `addrs` inside `ns` (bound before this returns) answering each
/// connection with a small HTTP response; serves at most `max` connections.
pub(crate) fn tcp_server(ns: &Netns, addrs: &[SocketAddr], max: usize) -> Server {
    let addrs = addrs.to_vec();
    let listeners = ns
        .run(move || {
            addrs
                .iter()
                .map(|a| TcpListener::bind(a).unwrap_or_else(|e| panic!("listen {a}: {e}")))
                .collect::<Vec<_>>()
        })
        .expect("run in netns");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let deadline = Instant::now() + SERVER_LIFETIME;
        let mut served = 0;
        while served < max && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
            let mut idle = true;
            for l in &listeners {
                if let Ok((mut s, _)) = l.accept() {
                    idle = false;
                    served += 1;
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                }
            }
            if idle {
                thread::sleep(Duration::from_millis(5));
            }
        }
        served
    });
    Server {
        stop,
        handle: Some(handle),
    }
}

/// UDP sockets on `addrs` inside `ns` that echo every datagram (at most `max`).
pub(crate) fn udp_echo(ns: &Netns, addrs: &[SocketAddr], max: usize) -> Server {
    let socks = udp_bind(ns, addrs);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        let deadline = Instant::now() + SERVER_LIFETIME;
        let mut served = 0;
        while served < max && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
            let mut idle = true;
            for s in &socks {
                let mut buf = [0u8; 1500];
                if let Ok((n, peer)) = s.recv_from(&mut buf) {
                    idle = false;
                    served += 1;
                    let _ = s.send_to(&buf[..n], peer);
                }
            }
            if idle {
                thread::sleep(Duration::from_millis(5));
            }
        }
        served
    });
    Server {
        stop,
        handle: Some(handle),
    }
}

/// UDP sockets bound on `addrs` inside `ns` that never answer (keep them alive).
pub(crate) fn udp_bind(ns: &Netns, addrs: &[SocketAddr]) -> Vec<UdpSocket> {
    let addrs = addrs.to_vec();
    ns.run(move || {
        addrs
            .iter()
            .map(|a| UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
            .collect()
    })
    .expect("run in netns")
}

/// `ip` address + port.
pub(crate) fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Runs `curl ARGS...` in `ns` (bounded) and returns (success, stdout, stderr).
pub(crate) fn curl(ns: &Netns, args: &[&str]) -> (bool, String, String) {
    let mut cmd = ns.command("curl");
    cmd.args(args);
    let out = output_with_timeout(cmd, Duration::from_secs(10)).expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
