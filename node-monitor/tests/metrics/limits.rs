//! The endpoint under abuse, with raw TCP clients on loopback: a slowloris client is cut
//! after the header timeout, connections past the cap are closed at once (and scrapes work
//! again once the idle ones are cut), and a stop never waits on a client that never
//! finishes. Every loop is bounded in count and time.

use std::{net::SocketAddr, time::Duration};

use node_monitor::metrics::{self, Metrics, ServeLimits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
    time::Instant,
};

use crate::{fixture::populated, serve::http_get};

const LIMITS: ServeLimits = ServeLimits {
    max_connections: 16,
    max_per_peer: 4,
    header_read_timeout: Duration::from_millis(500),
    connection_lifetime: Duration::from_secs(30),
    stop_grace: Duration::from_millis(300),
};

struct Limited {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(m: Metrics, limits: ServeLimits) -> Limited {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(metrics::serve_with(listener, m, limits, async move {
        let _ = rx.await;
    }));
    Limited { addr, stop, task }
}

/// Reads until the server closes the connection (EOF or reset), for at most `within`.
/// True if it closed.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_after_the_header_timeout() {
    let srv = start(populated(), LIMITS).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("start line");
    // One header byte every 100 ms: the headers never end. At most 50 bytes (5 s).
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(4), rd.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    trickle.abort();
    assert!(closed, "a client trickling its headers held the connection");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The endpoint still answers.
    assert_eq!(
        http_get(srv.addr, "/healthz", None).await.unwrap().status,
        200
    );
    let _ = srv.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), srv.task).await;
}

#[tokio::test]
async fn idle_connections_past_the_cap_are_closed_and_scrapes_recover() {
    let srv = start(populated(), LIMITS).await;
    // 400 clients that connect and say nothing.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(srv.addr).await.expect("connect"));
    }
    // Those past the cap are closed at once; the rest when their header timeout passes.
    let mut closed_at_once = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(20)).await {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 400 - LIMITS.max_per_peer,
        "only {closed_at_once} of 400 idle connections from one peer closed at once (cap {})",
        LIMITS.max_per_peer
    );
    let mut all_closed = true;
    for s in &mut idle {
        all_closed &= closed_within(s, Duration::from_secs(3)).await;
    }
    assert!(all_closed, "idle connections outlived the header timeout");
    // Many peers (127.0.0.2 to .9, loopback) with their share each: the total is capped.
    let mut many = Vec::new();
    for host in 2..10u8 {
        for _ in 0..LIMITS.max_per_peer {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind(SocketAddr::from(([127, 0, 0, host], 0)))
                .expect("bind a loopback address");
            many.push(sock.connect(srv.addr).await.expect("connect"));
        }
    }
    let mut held = 0;
    for s in &mut many {
        if !closed_within(s, Duration::from_millis(20)).await {
            held += 1;
        }
    }
    assert_eq!(held, LIMITS.max_connections, "connections held by 8 peers");
    drop(many);
    // A scrape works again.
    let r = http_get(srv.addr, "/metrics", None).await.expect("scrape");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("node_monitor_"), "{}", r.body);
    let _ = srv.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), srv.task).await;
}

/// One peer holding its share of connections (idle, within their header timeout) leaves
/// the endpoint to the others: a scrape from another address is served at once.
#[tokio::test]
async fn one_peer_cannot_take_every_slot() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        ..LIMITS
    };
    let srv = start(populated(), limits).await;
    // 100 idle connections from 127.0.0.1: it keeps at most `max_per_peer` of them.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(srv.addr).await.expect("connect"));
    }
    let mut held = 0;
    for s in &mut idle {
        if !closed_within(s, Duration::from_millis(20)).await {
            held += 1;
        }
    }
    assert_eq!(held, LIMITS.max_per_peer, "connections one peer holds");
    // A scrape from 127.0.0.2 (loopback, another peer) is served.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut s = tokio::time::timeout(Duration::from_secs(2), sock.connect(srv.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the scrape from another peer was not answered"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    drop(idle);
    let _ = srv.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), srv.task).await;
}

#[tokio::test]
async fn a_stop_does_not_wait_on_a_client_that_never_finishes() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        ..LIMITS
    };
    let srv = start(populated(), limits).await;
    // A request whose headers never end, and one whose body never comes.
    let mut hang = TcpStream::connect(srv.addr).await.expect("connect");
    hang.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial request");
    let mut body = TcpStream::connect(srv.addr).await.expect("connect");
    body.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab")
        .await
        .expect("partial body");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let _ = srv.stop.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), srv.task).await;
    let took = t.elapsed();
    assert!(res.is_ok(), "stop waited on the clients for 5 s");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(closed_within(&mut hang, Duration::from_secs(1)).await);
    assert!(closed_within(&mut body, Duration::from_secs(1)).await);
}
