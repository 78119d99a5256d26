//! `serve` over loopback: routes, readiness, content negotiation and shutdown, through raw
//! HTTP/1.1 requests.

use std::{net::SocketAddr, time::Duration};

use node_monitor::metrics::{self, Metrics};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

use crate::{
    common::http::dechunk,
    fixture::{OPENMETRICS_ACCEPT, populated, snapshot},
};

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(m: Metrics) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve(listener, m, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let res = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task");
        res.expect("serve result");
    }
}

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection (`Connection: close`), bounded in time.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(a) = accept {
            req.push_str(&format!("Accept: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP GET timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[tokio::test]
async fn http_routes_readiness_and_negotiation() {
    let m = populated();
    let srv = Server::start(m.clone()).await;

    let r = http_get(srv.addr, "/healthz", None).await.expect("healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");

    let r = http_get(srv.addr, "/readyz", None).await.expect("readyz");
    assert_eq!(r.status, 503, "not ready before set_ready(true)");
    m.set_ready(true);
    let r = http_get(srv.addr, "/readyz", None).await.expect("readyz");
    assert_eq!(r.status, 200);

    // No Accept header, and Accept asking for the 0.0.4 text format: Prometheus text.
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let r = http_get(srv.addr, "/metrics", accept)
            .await
            .expect("metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "accept {accept:?}"
        );
        assert!(!r.body.contains("# EOF"));
        assert!(r.body.contains(
            "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 5\n"
        ));
        assert!(r.body.contains("node_monitor_ready 1\n"));
    }
    // What Prometheus sends: OpenMetrics.
    let r = http_get(srv.addr, "/metrics", Some(OPENMETRICS_ACCEPT))
        .await
        .expect("metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    assert!(r.body.contains("# TYPE node_monitor_packets counter\n"));

    let r = http_get(srv.addr, "/nope", None).await.expect("404");
    assert_eq!(r.status, 404);
    let r = http_get(srv.addr, "/metrics/extra", None)
        .await
        .expect("404");
    assert_eq!(r.status, 404);

    // Updates show up on the next scrape.
    let mut s = snapshot();
    s.pending_answers = 77;
    m.update(&s);
    let r = http_get(srv.addr, "/metrics", None).await.expect("metrics");
    assert!(r.body.contains("node_monitor_pending_answers 77\n"));

    let addr = srv.addr;
    srv.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}
