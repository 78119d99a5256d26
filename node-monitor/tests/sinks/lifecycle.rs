//! Sinks as a set: start errors name the sink, flow records go only to sinks that take flows,
//! a reconfigure keeps unchanged sinks and their counters, and never waits on a removed one.

use std::time::{Duration, Instant};

use node_monitor::sinks::Sinks;

use crate::{
    common::{
        receivers::{HttpReceiver, Script},
        temp::{TempDir, lines_of},
        wait::wait_for_async,
    },
    fixture::{a, file_spec, flow, http_spec, id_of, render, stat, wait_sent},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_name_the_sink() {
    let dir = TempDir::new("errors");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let err = Sinks::start(
        &[file_spec("audit-file", &blocker.join("x.json"), 0, 1, 10)],
        render(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("sink audit-file: cannot open "), "{err}");
    let err = Sinks::start(&[http_spec("siem", "ftp://x/", 10, 1, 10)], render())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("sink siem: "), "{err}");
    let mut zero = file_spec("q0", &dir.path().join("q0"), 0, 1, 0);
    zero.queue = 0;
    let err = Sinks::start(&[zero], render()).unwrap_err().to_string();
    assert_eq!(err, "sink q0: queue must hold at least 1 record");
    let dup = file_spec("same", &dir.path().join("a"), 0, 1, 10);
    let err = Sinks::start(&[dup.clone(), dup], render())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "sink name \"same\" is used more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_records_go_only_to_sinks_that_take_flows() {
    let dir = TempDir::new("flows");
    let (p1, p2) = (dir.path().join("alerts"), dir.path().join("all"));
    let mut all = file_spec("all", &p2, 0, 1, 100);
    all.flows = true;
    let sinks = Sinks::start(&[file_spec("alerts", &p1, 0, 1, 100), all], render()).unwrap();
    sinks.send(a("x1"));
    sinks.send(flow(4242));
    sinks.send(a("x2"));
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stat(&stats, "alerts").sent, 2);
    assert_eq!(stat(&stats, "all").sent, 3);
    assert_eq!(
        lines_of(&p1).iter().map(|l| id_of(l)).collect::<Vec<_>>(),
        ["x1", "x2"]
    );
    assert_eq!(
        lines_of(&p2).iter().map(|l| id_of(l)).collect::<Vec<_>>(),
        ["x1", "flow-4242", "x2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_keeps_unchanged_sinks_and_their_counters() {
    let dir = TempDir::new("reconf");
    let p = |n: &str| dir.path().join(n);
    let keep = file_spec("keep", &p("keep"), 0, 1, 100);
    let change = file_spec("change", &p("change-a"), 0, 1, 100);
    let remove = file_spec("remove", &p("remove"), 0, 1, 100);
    let mut sinks =
        Sinks::start(&[keep.clone(), change.clone(), remove.clone()], render()).unwrap();
    for i in 0..10 {
        sinks.send(a(format!("a{i}")));
    }
    for name in ["keep", "change", "remove"] {
        wait_sent(&sinks, name, 10).await;
    }

    // A bad new set changes nothing.
    let bad = http_spec("bad", "not a url", 1, 1, 1);
    let err = sinks.reconfigure(&[keep.clone(), bad]).await.unwrap_err();
    assert!(err.to_string().starts_with("sink bad: "), "{err}");
    assert_eq!(sinks.names(), ["keep", "change", "remove"]);

    let changed = file_spec("change", &p("change-b"), 0, 1, 100);
    let added = file_spec("added", &p("added"), 0, 1, 100);
    sinks
        .reconfigure(&[added.clone(), keep.clone(), changed.clone()])
        .await
        .unwrap();
    assert_eq!(sinks.names(), ["added", "keep", "change"]);
    let s = sinks.stats();
    assert_eq!(
        stat(&s, "keep").sent,
        10,
        "unchanged sink keeps its counters"
    );
    assert_eq!(stat(&s, "change").sent, 0, "a changed sink starts afresh");
    for i in 0..5 {
        sinks.send(a(format!("b{i}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stat(&stats, "keep").sent, 15);
    assert_eq!(stat(&stats, "change").sent, 5);
    assert_eq!(stat(&stats, "added").sent, 5);
    assert_eq!(lines_of(&p("keep")).len(), 15);
    assert_eq!(lines_of(&p("change-a")).len(), 10);
    assert_eq!(lines_of(&p("change-b")).len(), 5);
    assert_eq!(lines_of(&p("remove")).len(), 10);
    assert_eq!(lines_of(&p("added")).len(), 5);
}

/// A reload never waits on a slow sink: a removed sink whose receiver holds every request
/// drains on its own task, and `reconfigure` returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_does_not_wait_on_a_removed_sink_that_hangs() {
    let dir = TempDir::new("reconf-hang");
    let rx = HttpReceiver::start(Script::Hang(Duration::from_secs(30))).await;
    let keep = file_spec("keep", &dir.path().join("keep"), 0, 1, 100);
    let mut sinks = Sinks::start(
        &[http_spec("siem", &rx.url(), 1, 0, 100), keep.clone()],
        render(),
    )
    .unwrap();
    for i in 0..3 {
        sinks.send(a(format!("h{i}")));
    }
    wait_for_async(Duration::from_secs(5), "a request to be held", || {
        (rx.seen() >= 1).then_some(())
    })
    .await;
    let t = Instant::now();
    sinks
        .reconfigure(std::slice::from_ref(&keep))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "reconfigure waited {took:?} on the removed sink"
    );
    assert_eq!(sinks.names(), ["keep"]);
    sinks.send(a("after"));
    wait_sent(&sinks, "keep", 4).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stat(&stats, "keep").sent, 4);
}
