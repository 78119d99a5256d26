//! HTTP sinks against an axum receiver: NDJSON batches delivered once, 503 retried, client
//! errors not retried.

use std::time::{Duration, Instant};

use node_monitor::sinks::Sinks;

use crate::{
    common::{
        receivers::{HttpReceiver, Script},
        wait::wait_for_async,
    },
    fixture::{a, assert_accounted, dropped, http_spec, id_of, render, wait_sent},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_batches_ndjson_and_delivers_each_record_once() {
    let rx = HttpReceiver::start(Script::Ok).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 7, 3, 1000)], render()).unwrap();
    let n = 200u64;
    for i in 0..n {
        sinks.send(a(format!("h{i}")));
    }
    wait_sent(&sinks, "siem", n).await;
    // A partial batch goes out after batch_interval (100 ms), as one request.
    let before = rx.received().len();
    for i in 0..3 {
        sinks.send(a(format!("late{i}")));
    }
    wait_sent(&sinks, "siem", n + 3).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_accounted(&stats[0], n + 3);
    assert_eq!(stats[0].sent, n + 3);
    assert_eq!(stats[0].retries, 0);

    let reqs = rx.received();
    assert_eq!(
        reqs.len(),
        before + 1,
        "the 3 late records came in one request"
    );
    assert!(reqs.len() as u64 > n.div_ceil(7));
    let mut ids = Vec::new();
    for r in &reqs {
        assert_eq!(r.content_type.as_deref(), Some("application/x-ndjson"));
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "x-token" && v == "t0k3n"),
            "{:?}",
            r.headers
        );
        assert!(r.body.ends_with('\n'));
        let lines: Vec<&str> = r.body.lines().collect();
        assert!((1..=7).contains(&lines.len()), "batch of {}", lines.len());
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["format"], "Ocsf");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    let want: Vec<String> = (0..n)
        .map(|i| format!("h{i}"))
        .chain((0..3).map(|i| format!("late{i}")))
        .collect();
    assert_eq!(ids, want, "every record exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_retries_503_then_delivers_once() {
    let rx = HttpReceiver::start(Script::FailFirst { n: 2, status: 503 }).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 5, 3, 100)], render()).unwrap();
    let t0 = Instant::now();
    for i in 0..5 {
        sinks.send(a(format!("r{i}")));
    }
    wait_sent(&sinks, "siem", 5).await;
    let backoff = t0.elapsed();
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 5);
    assert_eq!(stats[0].retries, 2);
    assert_accounted(&stats[0], 5);
    // 200 ms doubling with equal jitter: at least 100 + 200 ms before the third attempt.
    assert!(backoff >= Duration::from_millis(300), "{backoff:?}");
    let reqs = rx.received();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "the same batch is retried"
    );
    let delivered: Vec<String> = reqs[2].body.lines().map(id_of).collect();
    assert_eq!(delivered, ["r0", "r1", "r2", "r3", "r4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_client_errors_are_not_retried() {
    let rx = HttpReceiver::start(Script::FailFirst { n: 1, status: 400 }).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 3, 5, 100)], render()).unwrap();
    for i in 0..3 {
        sinks.send(a(format!("bad{i}")));
    }
    wait_for_async(
        Duration::from_secs(5),
        "the rejected batch to be counted",
        || (dropped(&sinks.stats()[0], "http_status") == 3).then_some(()),
    )
    .await;
    for i in 0..3 {
        sinks.send(a(format!("good{i}")));
    }
    wait_sent(&sinks, "siem", 3).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].retries, 0);
    assert_eq!(dropped(&stats[0], "http_status"), 3);
    assert_accounted(&stats[0], 6);
    assert_eq!(rx.received().len(), 2);
}

/// A 3xx is a failure, counted as `redirect`, never followed: a receiver (or whoever answers
/// in its name) must not steer the alerts, and the headers that authenticate them, elsewhere.
/// 307 and 308 keep the method and the body, so a client that follows them re-POSTs the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_redirects_are_not_followed_but_counted() {
    for status in [301u16, 302, 303, 307, 308] {
        let rx = HttpReceiver::start(Script::Redirect(status)).await;
        let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 3, 3, 100)], render()).unwrap();
        for i in 0..3 {
            sinks.send(a(format!("moved{i}")));
        }
        wait_for_async(
            Duration::from_secs(5),
            "the redirected batch to be counted",
            || (sinks.stats()[0].dropped_total() == 3).then_some(()),
        )
        .await;
        let stats = sinks.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            dropped(&stats[0], "redirect"),
            3,
            "{status}: {:?}",
            stats[0]
        );
        assert_eq!(stats[0].sent, 0, "{status}");
        assert_eq!(stats[0].retries, 0, "{status}: a redirect is not retried");
        assert_accounted(&stats[0], 3);
        assert_eq!(rx.received().len(), 1, "{status}");
        assert!(
            rx.captured().is_empty(),
            "{status}: the batch followed the redirect: {:?}",
            rx.captured()
        );
    }
}
