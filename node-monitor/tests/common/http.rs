//! The daemon's HTTP endpoints seen from inside its namespace: a bounded `GET`, chunked
//! bodies, and sample values of the Prometheus text format.

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use node_monitor_lab::Netns;

/// `GET path` on `addr` from inside `ns` (HTTP/1.1, `Connection: close`), at most 5 s.
/// Returns (status, body).
pub(crate) fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_owned();
    ns.run(move || -> anyhow::Result<(u16, String)> {
        let t = Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&addr, t)
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(t))?;
        s.set_write_timeout(Some(t))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).context("read the response")?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("no header end in {text:?}"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })?
}

/// The body of a `Transfer-Encoding: chunked` response, chunk extensions ignored.
pub(crate) fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The sum of the samples of `name` (Prometheus text format) whose labels include every
/// `(key, value)` of `labels`; None when no sample matches.
pub(crate) fn metric_value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if ok && let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
