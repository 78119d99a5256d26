//! Syntax of the addresses a sink names: syslog `udp://`/`tcp://`/`unix://` addresses, HTTP
//! URLs and header names and values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::outputs::SyslogTransport;

/// `HOST:PORT` where HOST is an IP literal (IPv6 in brackets) or `localhost`.
fn parse_host_port(text: &str, whole: &str) -> Result<std::net::SocketAddr, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{whole}`: missing `]` after the IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| {
            format!("`{whole}` has no port: write HOST:PORT, such as udp://[::1]:514")
        })?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("`{whole}` has no port: write HOST:PORT, such as udp://127.0.0.1:514")
        })?;
        if host.contains(':') {
            return Err(format!(
                "`{whole}`: put an IPv6 address in brackets, such as udp://[2001:db8::1]:514"
            ));
        }
        (host, port)
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!(
                "`{host}` is not an IP address: host names are not resolved when the config is \
                 read, so use an IP address or `localhost`"
            )
        })?
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!("`{port}` in `{whole}` is not a port (1-65535)"));
        }
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH`.
pub(super) fn parse_syslog_address(text: &str) -> Result<SyslogTransport, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("udp://") {
        parse_host_port(rest, text).map(SyslogTransport::Udp)
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        parse_host_port(rest, text).map(SyslogTransport::Tcp)
    } else if let Some(rest) = text.strip_prefix("tls://") {
        parse_host_port(rest, text).map(SyslogTransport::Tls)
    } else if let Some(path) = text.strip_prefix("unix://") {
        if path.len() > 1 && path.starts_with('/') && !path.ends_with('/') {
            Ok(SyslogTransport::Unix(std::path::PathBuf::from(path)))
        } else {
            Err(format!(
                "`{text}`: a unix socket address is unix:// then an absolute path, such as \
                 unix:///dev/log"
            ))
        }
    } else {
        Err(format!(
            "`{text}` is not a syslog address: use udp://HOST:PORT, tcp://HOST:PORT, \
             tls://HOST:PORT or unix:///PATH (such as udp://127.0.0.1:514 or unix:///dev/log)"
        ))
    }
}

/// An `http://` or `https://` URL with a host, an optional port and an optional path.
pub(super) fn check_http_url(text: &str) -> Result<(), String> {
    let lower = text.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &text["http://".len()..]
    } else if lower.starts_with("https://") {
        &text["https://".len()..]
    } else {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` contains white space: percent-encode it (%20)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{text}` carries credentials: put them in `headers` (Authorization) instead"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{text}`: `{host}` is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{text}`: unexpected `{after}` after the host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    let host_ok = authority.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !host_ok {
        return Err(format!("`{text}`: `{host}` is not a valid host name"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("`{text}`: `{port}` is not a port (1-65535)")),
        }
    }
    Ok(())
}

/// An HTTP header name: an RFC 9110 token.
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.bytes().all(tchar) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
        ))
    }
}

/// An HTTP header value: visible ASCII, spaces and tabs; no line breaks.
pub(super) fn check_header_value(value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(
            "the header value may hold only visible ASCII characters, spaces and tabs (no line \
             breaks)"
                .to_owned(),
        )
    }
}
