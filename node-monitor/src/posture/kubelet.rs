//! The kubelet's API probed for real, without credentials: the secure port must refuse
//! (401/403), the read-only port must not serve `/pods`.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use super::{Finding, Severity, listeners::Listener};
use crate::config::Protocol;

pub const KUBELET_PORT: u16 = 10250;
pub const KUBELET_READONLY_PORT: u16 = 10255;

/// How one unauthenticated request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing listens there.
    NotListening,
    /// An HTTP status, with the number of pods when the body was a pod list.
    Status { code: u16, pods: Option<usize> },
    /// The connection or the TLS handshake failed, or it timed out.
    Failed(String),
}

/// Where to reach a listener from this node: its own address, or loopback for a wildcard.
#[must_use]
pub fn reach(listeners: &[Listener], port: u16) -> Option<SocketAddr> {
    let l = listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Tcp && l.port == port)
        // A wildcard or loopback bind is reached on loopback; IPv4 first.
        .min_by_key(|l| (l.addr.is_ipv6(), !l.addr.is_unspecified()))?;
    let ip = match l.addr {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, port))
}

/// GET `/pods` at `addr` over HTTPS (`tls`, the kubelet's serving certificate is not
/// verified: the question is whether it answers, not who it is) or HTTP, no credentials.
/// Over HTTPS, also the end of validity of the serving certificate (Unix seconds).
pub async fn get_pods(
    addr: Option<SocketAddr>,
    tls: bool,
    timeout: Duration,
) -> (Probe, Option<i64>) {
    let Some(addr) = addr else {
        return (Probe::NotListening, None);
    };
    let client = match reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => return (Probe::Failed(format!("HTTP client: {e}")), None),
    };
    let url = format!("{}://{addr}/pods", if tls { "https" } else { "http" });
    match client.get(&url).send().await {
        Ok(resp) => {
            let not_after = resp
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(reqwest::tls::TlsInfo::peer_certificate)
                .and_then(not_after);
            let code = resp.status().as_u16();
            let pods = if code == 200 {
                resp.bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("items").and_then(|i| i.as_array()).map(Vec::len))
            } else {
                None
            };
            (Probe::Status { code, pods }, not_after)
        }
        Err(e) if e.is_connect() => (Probe::Failed(format!("{url}: cannot connect: {e}")), None),
        Err(e) => (Probe::Failed(format!("{url}: {e}")), None),
    }
}

/// The end of validity (Unix seconds) of a DER certificate.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A serving certificate expiring within this many days is a finding.
pub const CERT_WARN_DAYS: i64 = 30;

/// Findings on the serving certificate's validity at `now` (Unix seconds).
#[must_use]
pub fn certificate_findings(
    not_after: Option<i64>,
    at: Option<SocketAddr>,
    now: i64,
) -> Vec<Finding> {
    let Some(end) = not_after else {
        return Vec::new();
    };
    let days = (end - now).div_euclid(86_400);
    let at = at.map_or_else(String::new, |a| a.to_string());
    if end <= now {
        vec![Finding::new(
            "NM-2014",
            Severity::High,
            "kubelet serving certificate expired",
            format!("the certificate served on {at} expired {} days ago", -days),
            "renew it (serverTLSBootstrap: true with rotateCertificates, or a new --tls-cert-file)",
            None,
        )]
    } else if days < CERT_WARN_DAYS {
        vec![Finding::new(
            "NM-2014",
            Severity::Medium,
            "kubelet serving certificate expires soon",
            format!("the certificate served on {at} expires in {days} days"),
            "renew it (serverTLSBootstrap: true with rotateCertificates, or a new --tls-cert-file)",
            None,
        )]
    } else {
        Vec::new()
    }
}

/// Findings from the two probes.
#[must_use]
pub fn findings(
    secure: &Probe,
    secure_at: Option<SocketAddr>,
    readonly: &Probe,
    readonly_at: Option<SocketAddr>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = |a: Option<SocketAddr>| a.map_or_else(String::new, |a| a.to_string());
    match secure {
        Probe::Status { code: 401 | 403, .. } | Probe::NotListening => {}
        Probe::Status { code: 200, pods } => out.push(Finding::new(
            "NM-2010",
            Severity::Critical,
            "kubelet API answers without authentication",
            format!(
                "GET https://{}/pods without credentials: 200, {}",
                at(secure_at),
                pods.map_or_else(|| "body not a pod list".to_owned(), |n| format!("{n} pods listed"))
            ),
            "set authentication.anonymous.enabled: false and authorization.mode: Webhook in the kubelet config",
            Some("4.2.1"),
        )),
        Probe::Status { code, .. } => out.push(Finding::new(
            "NM-2012",
            Severity::Medium,
            "kubelet API gave an unexpected answer to an unauthenticated request",
            format!("GET https://{}/pods without credentials: {code} (want 401 or 403)", at(secure_at)),
            "check the kubelet's authentication and authorization settings",
            None,
        )),
        Probe::Failed(e) => out.push(Finding::new(
            "NM-2013",
            Severity::Low,
            "kubelet API could not be probed",
            e.clone(),
            "check that the kubelet serves HTTPS on its port",
            None,
        )),
    }
    if let Probe::Status { code, pods } = readonly {
        let (sev, title) = if *code == 200 {
            (
                Severity::Critical,
                "kubelet read-only port serves the pod list to anyone",
            )
        } else {
            (Severity::High, "kubelet read-only port answers")
        };
        out.push(Finding::new(
            "NM-2011",
            sev,
            title,
            format!(
                "GET http://{}/pods: {code}{}",
                at(readonly_at),
                pods.map_or_else(String::new, |n| format!(", {n} pods listed"))
            ),
            "set readOnlyPort: 0 in the kubelet config (or --read-only-port=0)",
            Some("4.2.4"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, port: u16) -> Listener {
        Listener {
            protocol: Protocol::Tcp,
            addr: addr.parse().unwrap(),
            port,
            inode: 1,
            process: None,
        }
    }

    #[test]
    fn reach_prefers_ipv4_and_maps_wildcards_to_loopback() {
        assert_eq!(
            reach(&[listener("::", 10250)], 10250),
            Some("[::1]:10250".parse().unwrap())
        );
        assert_eq!(
            reach(&[listener("::", 10250), listener("0.0.0.0", 10250)], 10250),
            Some("127.0.0.1:10250".parse().unwrap())
        );
        assert_eq!(
            reach(&[listener("198.51.100.1", 10250)], 10250),
            Some("198.51.100.1:10250".parse().unwrap())
        );
        assert_eq!(reach(&[listener("0.0.0.0", 10255)], 10250), None);
    }

    #[test]
    fn certificate_expiry() {
        let now = 1_700_000_000;
        let ids = |end: Option<i64>| -> Vec<(&'static str, Severity)> {
            certificate_findings(end, None, now)
                .iter()
                .map(|f| (f.id, f.severity))
                .collect()
        };
        assert!(ids(None).is_empty());
        assert!(ids(Some(now + 31 * 86_400)).is_empty());
        assert_eq!(
            ids(Some(now + 29 * 86_400)),
            [("NM-2014", Severity::Medium)]
        );
        assert_eq!(ids(Some(now - 1)), [("NM-2014", Severity::High)]);
    }

    #[test]
    fn findings_by_answer() {
        let a = Some("127.0.0.1:10250".parse().unwrap());
        let ids = |s: Probe, r: Probe| -> Vec<&'static str> {
            findings(&s, a, &r, a).iter().map(|f| f.id).collect()
        };
        assert!(
            ids(
                Probe::Status {
                    code: 401,
                    pods: None
                },
                Probe::NotListening
            )
            .is_empty()
        );
        assert!(
            ids(
                Probe::Status {
                    code: 403,
                    pods: None
                },
                Probe::NotListening
            )
            .is_empty()
        );
        assert_eq!(
            ids(
                Probe::Status {
                    code: 200,
                    pods: Some(3)
                },
                Probe::NotListening
            ),
            ["NM-2010"]
        );
        assert_eq!(
            ids(
                Probe::Status {
                    code: 404,
                    pods: None
                },
                Probe::NotListening
            ),
            ["NM-2012"]
        );
        assert_eq!(
            ids(Probe::Failed("x".into()), Probe::NotListening),
            ["NM-2013"]
        );
        assert_eq!(
            ids(
                Probe::NotListening,
                Probe::Status {
                    code: 200,
                    pods: Some(1)
                }
            ),
            ["NM-2011"]
        );
        let f = findings(
            &Probe::Status {
                code: 200,
                pods: Some(3),
            },
            a,
            &Probe::NotListening,
            None,
        );
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].evidence.contains("3 pods listed"), "{}", f[0].evidence);
    }
}
