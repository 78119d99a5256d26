//! Syslog sinks against a real rsyslogd over UDP, TCP (octet-counted frames) and a unix
//! socket; a TCP sink waits for its peer and reconnects.

use std::time::Duration;

use node_monitor::{
    config::{ClientTls, Format, SinkKind, SinkSpec, SyslogTransport},
    sinks::Sinks,
};

use crate::{
    common::{ports::RefusingPort, receivers::Rsyslog, wait::wait_for_async},
    fixture::{SEVERITIES, a, alert, assert_accounted, render},
};

/// Rule ids the syslog tests cycle through.
const RULES: [&str; 7] = [
    "NM-1000", "NM-1001", "NM-1002", "NM-1003", "NM-1004", "NM-1005", "NM-1006",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_to_a_real_rsyslogd_over_udp_tcp_and_unix() {
    let rsyslog = tokio::task::spawn_blocking(Rsyslog::start).await.unwrap();
    let n = 200usize;
    let transports = [
        ("udp", SyslogTransport::Udp(rsyslog.udp)),
        ("tcp", SyslogTransport::Tcp(rsyslog.tcp)),
        ("unix", SyslogTransport::Unix(rsyslog.unix.clone())),
    ];
    // Every record: its id, rule and severity, and the exact message we expect.
    let mut expected = Vec::new();
    for (tag, transport) in transports {
        let spec = SinkSpec {
            name: format!("syslog-{tag}"),
            kind: SinkKind::Syslog {
                transport,
                tls: ClientTls::default(),
            },
            format: Format::Cef,
            queue: 10_000,
            flows: false,
        };
        let sinks = Sinks::start(&[spec], render()).unwrap();
        for i in 0..n {
            let sev = SEVERITIES[i % 4];
            let rule = RULES[i % 7];
            let id = format!("{tag}-{i:04} é|x");
            sinks.send(alert(&id, rule, sev));
            let pri = 80 + [2, 3, 4, 5][i % 4];
            expected.push(format!(
                "{pri}|node-monitor|{rule}|{{\"id\":\"{id}\",\"format\":\"Cef\"}}"
            ));
        }
        let stats = sinks.shutdown(Duration::from_secs(10)).await;
        assert_eq!(stats[0].sent, n as u64, "{stats:?}");
        assert_accounted(&stats[0], n as u64);
    }
    let got = wait_for_async(
        Duration::from_secs(15),
        "rsyslogd to write every message",
        || {
            let got: Vec<String> = rsyslog
                .lines()
                .into_iter()
                .filter(|l| !l.contains("|probe|"))
                .collect();
            (got.len() >= expected.len()).then_some(got)
        },
    )
    .await;
    // rsyslog's inputs run in their own threads: compare per transport, as multisets.
    for tag in ["udp", "tcp", "unix"] {
        let of = |v: &[String]| -> Vec<String> {
            let mut v: Vec<String> = v
                .iter()
                .filter(|l| l.contains(&format!("\"id\":\"{tag}-")))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let (want, got) = (of(&expected), of(&got));
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(3).collect();
        let unexpected: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(3).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "{tag}: missing {missing:?}, unexpected {unexpected:?}"
        );
        assert_eq!(got.len(), n, "{tag}: duplicates");
    }
    assert_eq!(got.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_waits_for_its_peer_and_reconnects() {
    // Nothing listens yet: records stay queued while the sink retries the connection. The port
    // stays reserved (refusing) until the peer starts on it, so no other test's server takes it.
    let mut refusing = RefusingPort::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], refusing.port));
    let spec = SinkSpec {
        name: "syslog".into(),
        kind: SinkKind::Syslog {
            transport: SyslogTransport::Tcp(addr),
            tls: ClientTls::default(),
        },
        format: Format::Ecs,
        queue: 100,
        flows: false,
    };
    let sinks = Sinks::start(&[spec], render()).unwrap();
    for i in 0..10 {
        sinks.send(a(format!("t{i}")));
    }
    wait_for_async(Duration::from_secs(5), "reconnect attempts", || {
        (sinks.stats()[0].retries >= 2).then_some(())
    })
    .await;
    assert_eq!(sinks.stats()[0].sent, 0);
    refusing.release();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(15), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        loop {
            let k = conn.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..k]);
            if k == 0 || frames(&got).len() >= 10 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    let msgs = frames(&got);
    assert_eq!(msgs.len(), 10);
    for (i, m) in msgs.iter().enumerate() {
        assert!(m.starts_with("<83>1 "), "{m}");
        assert!(
            m.ends_with(&format!(
                " node-monitor {} NM-1001 - {{\"id\":\"t{i}\",\"format\":\"Ecs\"}}",
                std::process::id()
            )),
            "{m}"
        );
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 10);
}

/// Splits RFC 6587 octet-counted frames.
fn frames(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(sp) = b.iter().position(|&c| c == b' ') {
        let len: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().unwrap();
        if b.len() < sp + 1 + len {
            break;
        }
        out.push(String::from_utf8(b[sp + 1..sp + 1 + len].to_vec()).unwrap());
        b = &b[sp + 1 + len..];
    }
    out
}
