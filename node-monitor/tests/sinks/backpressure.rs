//! Backpressure: a stopped receiver makes drops counted, not a stall; a blocked sink drops
//! exactly what does not fit its queue.

use std::time::{Duration, Instant};

use node_monitor::sinks::Sinks;

use crate::{
    common::{
        ports::RefusingPort,
        receivers::{HttpReceiver, Script},
        temp::{TempDir, lines_of},
        wait::wait_for_async,
    },
    fixture::{a, assert_accounted, dropped, file_spec, http_spec, render, stat, wait_sent},
};

/// A stopped receiver makes drops counted, not a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_receiver_makes_drops_counted_not_a_stall() {
    let dir = TempDir::new("dead-http");
    let path = dir.path().join("alerts.json");
    // Held until the test ends: nothing can start listening on it meanwhile.
    let refusing = RefusingPort::new();
    let dead = format!("http://127.0.0.1:{}/ingest", refusing.port);
    let specs = [
        http_spec("siem", &dead, 50, 2, 100),
        file_spec("file", &path, 0, 1, 20_000),
    ];
    let sinks = Sinks::start(&specs, render()).unwrap();
    let n = 10_000u64;
    let t0 = Instant::now();
    for i in 0..n {
        sinks.send(a(format!("d{i}")));
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "10,000 sends took {took:?}");
    // The file sink is not held back by the dead HTTP sink.
    wait_sent(&sinks, "file", n).await;
    // After max_retries (2: ~0.3-0.6 s of backoff) the first batch is dropped and counted.
    wait_for_async(
        Duration::from_secs(10),
        "a batch dropped after its retries",
        || (dropped(stat(&sinks.stats(), "siem"), "retries_exhausted") >= 50).then_some(()),
    )
    .await;
    let stats = sinks.shutdown(Duration::from_secs(3)).await;
    let (http, file) = (stat(&stats, "siem"), stat(&stats, "file"));
    assert_eq!(http.sent, 0);
    assert!(dropped(http, "queue_full") >= n - 100 - 50, "{http:?}");
    assert!(dropped(http, "retries_exhausted") >= 50, "{http:?}");
    assert!(http.retries >= 2, "{http:?}");
    assert_accounted(http, n);
    assert_eq!(file.sent, n);
    assert_accounted(file, n);
    assert_eq!(lines_of(&path).len() as u64, n);
}

/// queue 10 + one batch of 5 in flight (the receiver holds it): everything else is a
/// `queue_full` drop, exactly; `send` stays instant and the file sink gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_sink_drops_exactly_what_does_not_fit() {
    let rx = HttpReceiver::start(Script::Hang(Duration::from_secs(60))).await;
    let dir = TempDir::new("blocked");
    let path = dir.path().join("alerts.json");
    let specs = [
        http_spec("siem", &rx.url(), 5, 0, 10),
        file_spec("file", &path, 0, 1, 10_000),
    ];
    let sinks = Sinks::start(&specs, render()).unwrap();
    for i in 0..5 {
        sinks.send(a(format!("first{i}")));
    }
    wait_for_async(
        Duration::from_secs(5),
        "the receiver to hold the first batch",
        || (rx.seen() == 1).then_some(()),
    )
    .await;
    let more = 1000u64;
    let t0 = Instant::now();
    for i in 0..more {
        sinks.send(a(format!("more{i}")));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let total = 5 + more;
    let s = sinks.stats();
    let http = stat(&s, "siem");
    assert_eq!(dropped(http, "queue_full"), total - (10 + 5), "{http:?}");
    assert_eq!(http.queue_len, 10);
    assert_eq!(http.sent, 0);
    wait_sent(&sinks, "file", total).await;
    // The receiver still holds the batch: the deadline ends the wait, and what was left is
    // counted.
    let t0 = Instant::now();
    let stats = sinks.shutdown(Duration::from_millis(500)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let http = stat(&stats, "siem");
    assert_eq!(dropped(http, "shutdown"), 15, "{http:?}");
    assert_accounted(http, total);
    assert_eq!(stat(&stats, "file").sent, total);
}

/// What the dead peer above relies on: a [`RefusingPort`] refuses connections, and no other
/// socket can bind its port (a server's `SO_REUSEADDR` bind included) until it is released.
#[test]
fn a_refusing_port_refuses_and_is_handed_to_no_one_else() {
    let mut refusing = RefusingPort::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], refusing.port));
    let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect_err("a connection to a port nothing listens on");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let err = std::net::TcpListener::bind(addr).expect_err("a second bind to a reserved port");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    refusing.release();
    std::net::TcpListener::bind(addr).expect("the port is free once released");
}
