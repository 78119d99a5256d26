//! Sockets that listen on the node, from `/proc/net/{tcp,tcp6,udp,udp6}`, with the process
//! that owns each (from `/proc/<pid>/fd`), read under a chosen proc root so tests can point
//! it at fixtures.
use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use crate::config::Protocol;

/// One listening TCP socket or bound, unconnected UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// The owning process `(pid, comm)`, when it could be found.
    pub process: Option<(u32, String)>,
}

impl Listener {
    /// Bound to a loopback address only (127.0.0.0/8, ::1, or an IPv4-mapped loopback).
    #[must_use]
    pub fn loopback_only(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        }
    }

    /// `addr:port/proto (comm pid)`, for evidence.
    #[must_use]
    pub fn describe(&self) -> String {
        let addr = match self.addr {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        };
        match &self.process {
            Some((pid, comm)) => format!("{addr}/{} ({comm}, pid {pid})", self.protocol.name()),
            None => format!("{addr}/{} (process unknown)", self.protocol.name()),
        }
    }
}

/// TCP state LISTEN in `/proc/net/tcp*`.
const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: the state of a UDP socket that is not connected.
const UDP_UNCONNECTED: u8 = 0x07;

/// Every listener under `proc_root` (normally `/proc`). A table that cannot be read (an
/// IPv6-less kernel has no `tcp6`) is skipped; lines that do not parse are skipped and
/// counted in the second value.
#[must_use]
pub fn read(proc_root: &Path) -> (Vec<Listener>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for (file, protocol, v6) in [
        ("tcp", Protocol::Tcp, false),
        ("tcp6", Protocol::Tcp, true),
        ("udp", Protocol::Udp, false),
        ("udp6", Protocol::Udp, true),
    ] {
        let Ok(text) = fs::read_to_string(proc_root.join("net").join(file)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            match parse_line(line, protocol, v6) {
                Some(Some(l)) => out.push(l),
                Some(None) => {}
                None => bad += 1,
            }
        }
    }
    let owners = socket_owners(proc_root);
    for l in &mut out {
        l.process = owners.get(&l.inode).cloned();
    }
    out.sort_by_key(|l| (l.port, l.protocol, l.addr));
    out.dedup_by(|a, b| a.port == b.port && a.protocol == b.protocol && a.addr == b.addr);
    (out, bad)
}

/// One table line: `None` when it does not parse, `Some(None)` when it is not a listener.
fn parse_line(line: &str, protocol: Protocol, v6: bool) -> Option<Option<Listener>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let (addr, port) = parse_endpoint(f[1], v6)?;
    let (_, rem_port) = parse_endpoint(f[2], v6)?;
    let state = u8::from_str_radix(f[3], 16).ok()?;
    let inode = f[9].parse().ok()?;
    let listening = match protocol {
        Protocol::Tcp => state == TCP_LISTEN,
        Protocol::Udp => state == UDP_UNCONNECTED && rem_port == 0,
    };
    Some(listening.then_some(Listener {
        protocol,
        addr,
        port,
        inode,
        process: None,
    }))
}

/// `0100007F:2801` (IPv4) or 32 hex digits (IPv6) and a port: the kernel prints each 32-bit
/// word of the address as the host reads it, so the word's native bytes are the address's
/// network-order bytes.
fn parse_endpoint(s: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = a.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let addr = if v6 {
        if a.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        if a.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some((addr, port))
}

/// Socket inode → (pid, comm), from the `socket:[N]` links in `/proc/<pid>/fd`.
fn socket_owners(proc_root: &Path) -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
    let Ok(dir) = fs::read_dir(proc_root) else {
        return owners;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let comm = fs::read_to_string(entry.path().join("comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            owners.entry(inode).or_insert_with(|| (pid, comm.clone()));
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn host_word(bytes: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(bytes))
    }

    #[test]
    fn parses_listeners_of_both_families_and_protocols() {
        let dir = tempdir();
        let net = dir.join("net");
        fs::create_dir_all(&net).unwrap();
        let lo = host_word([127, 0, 0, 1]);
        let any = host_word([0, 0, 0, 0]);
        let node = host_word([198, 51, 100, 1]);
        fs::write(
            net.join("tcp"),
            format!(
                "{HEADER}   0: {lo}:2800 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
                 1: {any}:280A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n\
                 2: {node}:280A {lo}:A000 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n\
                 garbage\n"
            ),
        )
        .unwrap();
        let mut v6 = String::new();
        for w in [
            [0x20, 0x01, 0x0d, 0xb8],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 1],
        ] {
            v6.push_str(&host_word(w));
        }
        fs::write(
            net.join("tcp6"),
            format!("{HEADER}   0: {v6}:0949 {}:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0\n", "0".repeat(32)),
        )
        .unwrap();
        fs::write(
            net.join("udp"),
            format!("{HEADER}   0: {any}:7530 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0\n"),
        )
        .unwrap();
        let (ls, bad) = read(&dir);
        assert_eq!(bad, 1, "the garbage line");
        let got: Vec<(Protocol, String, u16, u64)> = ls
            .iter()
            .map(|l| (l.protocol, l.addr.to_string(), l.port, l.inode))
            .collect();
        assert_eq!(
            got,
            vec![
                (Protocol::Tcp, "2001:db8::1".to_owned(), 2377, 444),
                (Protocol::Tcp, "127.0.0.1".to_owned(), 10240, 111),
                (Protocol::Tcp, "0.0.0.0".to_owned(), 10250, 222),
                (Protocol::Udp, "0.0.0.0".to_owned(), 30000, 555),
            ]
        );
        assert!(ls[1].loopback_only());
        assert!(!ls[2].loopback_only());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn finds_its_own_listener_and_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (ls, _) = read(Path::new("/proc"));
        let me = ls
            .iter()
            .find(|x| x.port == port && x.protocol == Protocol::Tcp)
            .expect("our own listener");
        assert!(me.loopback_only());
        assert_eq!(me.process.as_ref().map(|p| p.0), Some(std::process::id()));
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nm-listeners-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
