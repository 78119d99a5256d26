//! The soak's peers, each a thread inside a lab namespace, every loop bounded by a stop flag
//! and a hard deadline: the node's listeners (kubelet, a NodePort), the traffic from cp
//! (allowed) and outside (denied TCP from eight addresses, UDP to NodePorts, hping3 SYN
//! bursts), an HTTP sink receiver that goes away and comes back, and a syslog receiver that
//! stalls (accepts, and reads nothing for a while).

use std::{
    fs::File,
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::sys::{
    socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, setsockopt,
        socket, sockopt,
    },
    time::TimeVal,
};
use node_monitor_lab::{Netns, addr};

/// The HTTP sink receiver and the syslog receiver (node namespace, loopback).
pub(crate) const HTTP_PORT: u16 = 18080;
pub(crate) const SYSLOG_PORT: u16 = 18514;
/// A NodePort with a listener (allowed TCP from cp completes its handshake).
pub(crate) const NODE_PORT_TCP: u16 = 30080;
/// The outside host's extra addresses (203.0.113.N, 2001:db8:2::N): the denied sources.
pub(crate) const OUTSIDE_HOSTS: std::ops::RangeInclusive<u8> = 10..=17;

/// Moves the calling thread into `ns`'s network namespace.
pub(crate) fn enter(ns: &Netns) -> anyhow::Result<()> {
    let path = format!("/run/netns/{}", ns.name);
    let f = File::open(&path).with_context(|| format!("open {path}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {}", ns.name))?;
    Ok(())
}

/// What every peer shares: the stop flag, the hard deadline, and the phases the main loop
/// sets (HTTP receiver up, syslog receiver reading).
pub(crate) struct Shared {
    /// Stops the traffic.
    pub(crate) stop: AtomicBool,
    /// Stops the node's listeners and the receivers (after the daemon's last records).
    pub(crate) stop_receivers: AtomicBool,
    pub(crate) deadline: Instant,
    pub(crate) http_up: AtomicBool,
    pub(crate) syslog_reading: AtomicBool,
    /// Counts for the report.
    pub(crate) http_posts: AtomicU64,
    pub(crate) http_records: AtomicU64,
    pub(crate) syslog_conns: AtomicU64,
    pub(crate) syslog_records: AtomicU64,
    pub(crate) tcp_allowed: AtomicU64,
    pub(crate) tcp_denied: AtomicU64,
    pub(crate) udp_sent: AtomicU64,
    pub(crate) syn_bursts: AtomicU64,
    pub(crate) peer_errors: AtomicU64,
    /// The first few peer errors, for the report.
    pub(crate) errors: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn new(deadline: Instant) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            stop_receivers: AtomicBool::new(false),
            deadline,
            http_up: AtomicBool::new(true),
            syslog_reading: AtomicBool::new(true),
            http_posts: AtomicU64::new(0),
            http_records: AtomicU64::new(0),
            syslog_conns: AtomicU64::new(0),
            syslog_records: AtomicU64::new(0),
            tcp_allowed: AtomicU64::new(0),
            tcp_denied: AtomicU64::new(0),
            udp_sent: AtomicU64::new(0),
            syn_bursts: AtomicU64::new(0),
            peer_errors: AtomicU64::new(0),
            errors: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// The receivers outlive the traffic: they stop after the daemon has drained its sinks.
    pub(crate) fn receiving(&self) -> bool {
        !self.stop_receivers.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a peer error and keeps the first five.
    fn error(&self, what: String) {
        Shared::add(&self.peer_errors, 1);
        let mut e = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.len() < 5 {
            e.push(what);
        }
    }
}

/// Sleeps `d` in steps of at most 100 ms, returning early once the peers are told to stop.
fn nap(sh: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while sh.running() && Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
}

/// The node's listeners: the kubelet port (IPv4 and IPv6) and one NodePort; every accepted
/// connection is closed at once (an accepted attempt).
pub(crate) fn node_listeners(node: &Netns, sh: &Shared) -> anyhow::Result<()> {
    enter(node)?;
    let mut ls = Vec::new();
    for port in [10250, NODE_PORT_TCP] {
        for ip in [IpAddr::V4(addr::NODE_V4), IpAddr::V6(addr::NODE_V6)] {
            let l = TcpListener::bind((ip, port)).with_context(|| format!("bind {ip}:{port}"))?;
            l.set_nonblocking(true)?;
            ls.push(l);
        }
    }
    while sh.receiving() {
        let mut idle = true;
        for l in &ls {
            while let Ok((s, _)) = l.accept() {
                idle = false;
                drop(s);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// One TCP attempt from `src` to `dst` (bound source address), given up after 300 ms.
fn attempt_from(src: IpAddr, dst: SocketAddr) -> anyhow::Result<()> {
    let fam = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(0, 300_000))?;
    match (src, dst) {
        (IpAddr::V4(s), SocketAddr::V4(d)) => {
            bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(std::net::SocketAddrV4::new(s, 0)),
            )?;
            let _ = connect(fd.as_raw_fd(), &SockaddrIn::from(d));
        }
        (IpAddr::V6(s), SocketAddr::V6(d)) => {
            bind(
                fd.as_raw_fd(),
                &SockaddrIn6::from(std::net::SocketAddrV6::new(s, 0, 0, 0)),
            )?;
            let _ = connect(fd.as_raw_fd(), &SockaddrIn6::from(d));
        }
        _ => anyhow::bail!("address families differ: {src} -> {dst}"),
    }
    Ok(())
}

/// Allowed traffic from cp: TCP to the kubelet and to a NodePort, UDP to NodePorts, IPv4
/// and IPv6 in turn, every 50 ms.
pub(crate) fn cp_traffic(cp: &Netns, sh: &Shared) -> anyhow::Result<()> {
    enter(cp)?;
    let udp4 = UdpSocket::bind((addr::CP_V4, 0))?;
    let udp6 = UdpSocket::bind((addr::CP_V6, 0))?;
    let mut i: u64 = 0;
    while sh.running() {
        let v6 = i % 2 == 1;
        let node: IpAddr = if v6 {
            addr::NODE_V6.into()
        } else {
            addr::NODE_V4.into()
        };
        let port = if i.is_multiple_of(3) {
            NODE_PORT_TCP
        } else {
            10250
        };
        match TcpStream::connect_timeout(&(node, port).into(), Duration::from_millis(500)) {
            Ok(s) => {
                Shared::add(&sh.tcp_allowed, 1);
                drop(s);
            }
            Err(e) => sh.error(format!("cp -> [{node}]:{port}: {e}")),
        }
        let udp = if v6 { &udp6 } else { &udp4 };
        let dport = 30000 + u16::try_from(i % 64).unwrap_or(0);
        if udp.send_to(b"soak", (node, dport)).is_ok() {
            Shared::add(&sh.udp_sent, 1);
        }
        i += 1;
        nap(sh, Duration::from_millis(50));
    }
    Ok(())
}

/// Denied traffic from outside: TCP to the kubelet (accepted), the API server (refused) and
/// etcd (watched in one of the two configs) from eight addresses in turn, and UDP to
/// NodePorts (a sweep), every 50 ms.
pub(crate) fn outside_traffic(outside: &Netns, sh: &Shared) -> anyhow::Result<()> {
    enter(outside)?;
    let udp4 = UdpSocket::bind((addr::OUTSIDE_V4, 0))?;
    let udp6 = UdpSocket::bind((addr::OUTSIDE_V6, 0))?;
    let hosts: Vec<u8> = OUTSIDE_HOSTS.collect();
    let mut i: usize = 0;
    while sh.running() {
        let h = hosts[i % hosts.len()];
        let v6 = (i / hosts.len()) % 2 == 1;
        let (src, node): (IpAddr, IpAddr) = if v6 {
            (
                Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(h)).into(),
                addr::NODE_V6.into(),
            )
        } else {
            (Ipv4Addr::new(203, 0, 113, h).into(), addr::NODE_V4.into())
        };
        let port = [10250, 6443, 2379][i % 3];
        match attempt_from(src, (node, port).into()) {
            Ok(()) => Shared::add(&sh.tcp_denied, 1),
            Err(e) => sh.error(format!("{src} -> [{node}]:{port}: {e:#}")),
        }
        let udp = if v6 { &udp6 } else { &udp4 };
        let dport = 31000 + u16::try_from(i % 200).unwrap_or(0);
        if udp.send_to(b"soak", (node, dport)).is_ok() {
            Shared::add(&sh.udp_sent, 1);
        }
        i += 1;
        nap(sh, Duration::from_millis(50));
    }
    Ok(())
}

/// SYN bursts from outside: 300 SYNs to the kubelet port (hping3, 2 ms apart, new source
/// port each) every 30 s; each burst bounded in count and by a 15 s timeout.
pub(crate) fn syn_bursts(outside: &Netns, sh: &Shared) {
    nap(sh, Duration::from_secs(7));
    while sh.running() {
        let node = addr::NODE_V4.to_string();
        let out = outside.exec_timeout(
            Duration::from_secs(15),
            "hping3",
            &["-q", "-S", "-p", "10250", "-c", "300", "-i", "u2000", &node],
        );
        match out {
            Ok(_) => Shared::add(&sh.syn_bursts, 1),
            Err(e) => sh.error(format!("hping3: {e:#}")),
        }
        nap(sh, Duration::from_secs(30));
    }
}

/// Reads one HTTP request (headers, then `Content-Length` bytes) from `s`; its body.
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

/// The HTTP sink's receiver on the node's loopback: answers every POST `200` and counts its
/// NDJSON lines; while `http_up` is false it is gone (connections are refused).
pub(crate) fn http_receiver(node: &Netns, sh: &Shared) -> anyhow::Result<()> {
    enter(node)?;
    let mut listener: Option<TcpListener> = None;
    while sh.receiving() {
        if !sh.http_up.load(Ordering::Relaxed) {
            listener = None;
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => {
                let l = TcpListener::bind(("127.0.0.1", HTTP_PORT))
                    .with_context(|| format!("bind 127.0.0.1:{HTTP_PORT}"))?;
                l.set_nonblocking(true)?;
                listener.insert(l)
            }
        };
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                if let Some(body) = read_request(&mut s) {
                    let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
                    Shared::add(&sh.http_records, lines.count() as u64);
                    Shared::add(&sh.http_posts, 1);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => sh.error(format!("HTTP receiver accept: {e}")),
        }
    }
    Ok(())
}

/// The syslog sink's receiver (TCP, octet-counted frames) on the node's loopback, with a
/// small receive buffer. It always accepts; while `syslog_reading` is false it reads
/// nothing, so the daemon's sends back up into the socket buffers and then its queue.
pub(crate) fn syslog_receiver(node: &Netns, sh: &Shared) -> anyhow::Result<()> {
    enter(node)?;
    let l = TcpListener::bind(("127.0.0.1", SYSLOG_PORT))
        .with_context(|| format!("bind 127.0.0.1:{SYSLOG_PORT}"))?;
    setsockopt(&l, sockopt::RcvBuf, &4096)?;
    l.set_nonblocking(true)?;
    let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    let mut chunk = [0u8; 16384];
    while sh.receiving() {
        while let Ok((s, _)) = l.accept() {
            s.set_nonblocking(true)?;
            Shared::add(&sh.syslog_conns, 1);
            conns.push((s, Vec::new()));
        }
        if sh.syslog_reading.load(Ordering::Relaxed) {
            conns.retain_mut(|(s, buf)| {
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) => return false,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            Shared::add(&sh.syslog_records, take_frames(buf));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Removes the complete octet-counted frames (`LEN SP MSG`) from the front of `buf`; their
/// number.
fn take_frames(buf: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while let Some(sp) = buf[at..].iter().position(|b| *b == b' ') {
        let Some(len) = std::str::from_utf8(&buf[at..at + sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            // Not octet counting: drop what we have rather than loop on it.
            buf.clear();
            return n;
        };
        if buf.len() < at + sp + 1 + len {
            break;
        }
        at += sp + 1 + len;
        n += 1;
    }
    buf.drain(..at);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_and_partial_ones_kept() {
        let mut b = b"5 hello3 abc4 de".to_vec();
        assert_eq!(take_frames(&mut b), 2);
        assert_eq!(b, b"4 de");
        b.extend_from_slice(b"fg");
        assert_eq!(take_frames(&mut b), 1);
        assert!(b.is_empty());
    }
}
