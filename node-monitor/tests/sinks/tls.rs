//! Sinks over TLS: the HTTP sink against a receiver that requires a client certificate of
//! its CA and a bearer token (delivered with both; refused without the certificate, with a
//! wrong token, or when the sink does not trust the receiver's CA), and the syslog sink
//! against a real rsyslogd whose TLS input requires a client certificate (RFC 5425).

use std::{path::PathBuf, time::Duration};

use node_monitor::{
    config::{ClientTls, Format, SinkKind, SinkSpec, SyslogTransport},
    sinks::Sinks,
};

use crate::{
    common::{
        temp::TempDir,
        tls::{MtlsReceiver, RsyslogTls, TestPki},
        wait::wait_for_async,
    },
    fixture::{a, assert_accounted, dropped, id_of, render, stat, wait_sent},
};

const TOKEN: &str = "sink-token-0123456789";

fn https_spec(
    name: &str,
    url: &str,
    tls: ClientTls,
    token: Option<PathBuf>,
    max_retries: u32,
) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        kind: SinkKind::Http {
            url: url.into(),
            batch_max: 10,
            batch_interval: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
            max_retries,
            headers: vec![],
            tls,
            bearer_token_file: token,
        },
        format: Format::Ecs,
        queue: 1000,
        flows: false,
    }
}

fn mtls(pki: &TestPki) -> ClientTls {
    ClientTls {
        ca_file: Some(pki.ca.clone()),
        cert_and_key: Some((pki.client_cert.clone(), pki.client_key.clone())),
        server_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_sink_with_mtls_and_a_bearer_token_file() {
    let dir = TempDir::new("sink-mtls");
    let pki = TestPki::write(dir.path());
    let token = dir.file("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let wrong = dir.file("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let rx = MtlsReceiver::start(&pki, TOKEN).await;

    // Certificate and token: every record delivered, with the token as the bearer.
    let n = 25u64;
    let sinks = Sinks::start(
        &[https_spec(
            "siem",
            &rx.url(),
            mtls(&pki),
            Some(token.clone()),
            1,
        )],
        render(),
    )
    .unwrap();
    for i in 0..n {
        sinks.send(a(format!("m{i}")));
    }
    wait_sent(&sinks, "siem", n).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, n, "{stats:?}");
    assert_accounted(&stats[0], n);
    let got = rx.received();
    assert!(got.iter().all(|r| r.status == 200), "{got:?}");
    assert!(
        got.iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{got:?}"
    );
    let mut ids: Vec<String> = got
        .iter()
        .flat_map(|r| r.body.lines().map(id_of).collect::<Vec<_>>())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(ids, want);

    // The token file rotates (the receiver's token too): the sink reads the new one.
    let before = rx.received().len();
    let rx2 = MtlsReceiver::start(&pki, "rotated-token").await;
    let sinks = Sinks::start(
        &[https_spec(
            "siem",
            &rx2.url(),
            mtls(&pki),
            Some(token.clone()),
            0,
        )],
        render(),
    )
    .unwrap();
    std::fs::write(&token, "rotated-token\n").unwrap();
    sinks.send(a("after-rotation"));
    wait_sent(&sinks, "siem", 1).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 1, "{stats:?}");
    assert_eq!(rx.received().len(), before);
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    // A wrong token: 401, not retried, counted as http_status.
    let sinks = Sinks::start(
        &[https_spec(
            "wrong-token",
            &rx.url(),
            mtls(&pki),
            Some(wrong),
            3,
        )],
        render(),
    )
    .unwrap();
    for i in 0..3 {
        sinks.send(a(format!("w{i}")));
    }
    wait_for_async(Duration::from_secs(10), "the 401 to be counted", || {
        (dropped(stat(&sinks.stats(), "wrong-token"), "http_status") == 3).then_some(())
    })
    .await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 0);
    assert_accounted(&stats[0], 3);
    assert!(rx.received().iter().any(|r| r.status == 401));

    // No client certificate: the receiver ends the handshake; retried, then dropped.
    let no_cert = ClientTls {
        ca_file: Some(pki.ca.clone()),
        ..ClientTls::default()
    };
    let handshakes = rx.handshakes_failed().len();
    let posts = rx.received().len();
    let sinks = Sinks::start(
        &[https_spec(
            "no-cert",
            &rx.url(),
            no_cert,
            Some(token.clone()),
            1,
        )],
        render(),
    )
    .unwrap();
    sinks.send(a("refused"));
    wait_for_async(Duration::from_secs(10), "the batch to be given up", || {
        (dropped(stat(&sinks.stats(), "no-cert"), "retries_exhausted") == 1).then_some(())
    })
    .await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 0);
    assert_accounted(&stats[0], 1);
    assert_eq!(rx.received().len(), posts, "nothing got through");
    assert!(
        rx.handshakes_failed().len() > handshakes,
        "the receiver refused the handshake"
    );

    // A sink that does not trust the receiver's CA refuses it, client certificate or not.
    let other_ca = ClientTls {
        ca_file: Some(pki.other_ca.clone()),
        cert_and_key: Some((pki.client_cert.clone(), pki.client_key.clone())),
        server_name: None,
    };
    let sinks = Sinks::start(
        &[https_spec("untrusted", &rx.url(), other_ca, Some(token), 0)],
        render(),
    )
    .unwrap();
    sinks.send(a("untrusted"));
    wait_for_async(Duration::from_secs(10), "the batch to be given up", || {
        (dropped(stat(&sinks.stats(), "untrusted"), "retries_exhausted") == 1).then_some(())
    })
    .await;
    let _ = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(rx.received().len(), posts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syslog_over_tls_to_a_real_rsyslogd_with_client_certificates() {
    let dir = TempDir::new("rsyslog-tls");
    let pki = TestPki::write(dir.path());
    let (rsyslog, _rsyslog_dir) = tokio::task::spawn_blocking({
        let pki = pki.clone();
        move || {
            let run = TempDir::new("rsyslog-tls-run");
            (RsyslogTls::start(&run, &pki), run)
        }
    })
    .await
    .unwrap();
    let spec = |name: &str, tls: ClientTls| SinkSpec {
        name: name.into(),
        kind: SinkKind::Syslog {
            transport: SyslogTransport::Tls(rsyslog.addr),
            tls,
        },
        format: Format::Cef,
        queue: 1000,
        flows: false,
    };

    // A client certificate of the CA rsyslog trusts: every message arrives, framed whole.
    let n = 40usize;
    let sinks = Sinks::start(
        &[spec(
            "syslog-tls",
            ClientTls {
                ca_file: Some(pki.ca.clone()),
                cert_and_key: Some((pki.client_cert.clone(), pki.client_key.clone())),
                server_name: Some("localhost".into()),
            },
        )],
        render(),
    )
    .unwrap();
    for i in 0..n {
        sinks.send(a(format!("tls-{i:03}")));
    }
    wait_sent(&sinks, "syslog-tls", n as u64).await;
    let got = wait_for_async(
        Duration::from_secs(15),
        "rsyslogd to write every message",
        || {
            let got = rsyslog.lines();
            (got.len() >= n).then_some(got)
        },
    )
    .await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_accounted(&stats[0], n as u64);
    let mut ids: Vec<String> = got
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, '|').collect();
            assert_eq!(parts[..3], ["83", "node-monitor", "NM-1001"], "{l}");
            id_of(parts[3])
        })
        .collect();
    ids.sort();
    let want: Vec<String> = (0..n).map(|i| format!("tls-{i:03}")).collect();
    assert_eq!(ids, want);

    // A sink that does not trust rsyslog's CA never completes a handshake: nothing is
    // written, and its records are still queued (then counted) at shutdown.
    let sinks = Sinks::start(
        &[spec(
            "untrusted",
            ClientTls {
                ca_file: Some(pki.other_ca.clone()),
                cert_and_key: Some((pki.client_cert.clone(), pki.client_key.clone())),
                server_name: None,
            },
        )],
        render(),
    )
    .unwrap();
    sinks.send(a("never"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = stat(&sinks.stats(), "untrusted").clone();
    assert_eq!(s.sent, 0, "{s:?}");
    assert!(s.retries >= 1, "the handshake is retried: {s:?}");
    let stats = sinks.shutdown(Duration::from_millis(500)).await;
    assert_accounted(&stats[0], 1);
    assert_eq!(dropped(&stats[0], "shutdown"), 1, "{stats:?}");
    assert_eq!(rsyslog.lines().len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_sink_picks_up_a_renewed_client_certificate() {
    let dir = TempDir::new("sink-mtls-renew");
    let pki = TestPki::write(dir.path());
    let token = dir.file("token");
    std::fs::write(&token, TOKEN).unwrap();
    let rx = MtlsReceiver::start(&pki, TOKEN).await;
    // The sink's certificate files first hold one the receiver's CA did not sign.
    let (cert, key) = (dir.file("sink.pem"), dir.file("sink-key.pem"));
    std::fs::copy(&pki.other_client_cert, &cert).unwrap();
    std::fs::copy(&pki.other_client_key, &key).unwrap();
    let tls = ClientTls {
        ca_file: Some(pki.ca.clone()),
        cert_and_key: Some((cert.clone(), key.clone())),
        server_name: None,
    };
    let sinks = Sinks::start(
        &[https_spec("renew", &rx.url(), tls, Some(token), 0)],
        render(),
    )
    .unwrap();
    sinks.send(a("before"));
    wait_for_async(Duration::from_secs(10), "the refused batch", || {
        (dropped(stat(&sinks.stats(), "renew"), "retries_exhausted") == 1).then_some(())
    })
    .await;
    assert!(rx.received().is_empty());
    // Renewed in place (as cert-manager does): the next POST presents the new certificate.
    std::fs::copy(&pki.client_cert, &cert).unwrap();
    std::fs::copy(&pki.client_key, &key).unwrap();
    sinks.send(a("after"));
    wait_sent(&sinks, "renew", 1).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_accounted(&stats[0], 2);
    let got = rx.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(id_of(got[0].body.trim()), "after");
}
