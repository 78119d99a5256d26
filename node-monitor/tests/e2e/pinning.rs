//! Pinning end to end: a restarted daemon adopts the pins of an earlier run (counters carry
//! over), replaces a map that no longer fits, takes adopted loss counters as history (no
//! flood alert for an earlier run's losses), and `unpin` removes everything.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use node_monitor_lab::{BpfPinDir, Lab};

use crate::{
    common::{
        counters::{GroupCounts, counts_minus},
        daemon::{self, Daemon, context, scrape},
        http::metric_value,
        temp::TempFile,
    },
    expect::{alerts_of, assert_same_records},
    readonly::{readonly, readonly_alert, readonly_attempts},
    setup::{setup, test_config},
};

fn link_pins(pin: &BpfPinDir) -> BTreeSet<String> {
    std::fs::read_dir(pin.path.join("links"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn eth0_link(lab: &Lab) -> String {
    context(lab.node.ip(&["link", "show", "eth0"]))
}

/// Waits (bounded) until the daemon's metrics count at least `n` suppressed NM-1002
/// repeats (the metrics are refreshed every 500 ms).
fn wait_suppressed(lab: &Lab, d: &Daemon, n: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let body = scrape(&lab.node, d);
        if metric_value(
            &body,
            "node_monitor_alerts_suppressed_total",
            &[("rule", "NM-1002")],
        )
        .unwrap_or(0.0)
            >= n
        {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("metrics:\n{body}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_delta(after: GroupCounts, before: GroupCounts, n: u64, what: &str) {
    let d = counts_minus(&after, &before);
    assert_eq!(
        (d.packets, d.new_conns, d.events, d.would_drop),
        (n, n, n, n),
        "{what}: counters must carry over and grow by {n}; before {before:?}, after {after:?}"
    );
}

/// Test 4: Pins keep the data path across restarts; a new daemon adopts them; a daemon with
/// another attach mode prunes the stale link; `unpin` removes everything.
#[test]
fn pin_adoption_across_restart() {
    let lab = setup();
    let pin = context(BpfPinDir::new("adopt"));
    let cfg = TempFile::new("adopt.yaml", &test_config(&[]));
    let args = ["--config", cfg.as_str()];

    // A: two attempts from one source to one group: a first alert, and the second folded
    // into the follow-up that shutdown emits.
    let a = context(Daemon::start(&lab.node, &pin.path, &args));
    let oa = readonly_attempts(&lab, &[42201, 42202]);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    assert!(wait_suppressed(&lab, &a, 1.0), "the repeat was not folded");
    let fin_a = context(a.stop());
    fin_a.counters.check_invariants();
    assert_same_records(
        &fin_a.records,
        vec![
            readonly_alert(oa[0], "xdp"),
            readonly_alert(oa[1], "xdp").folded(1),
        ],
    );
    let ca = readonly(&fin_a.counters);
    assert_eq!((ca.new_conns, ca.events, ca.packets), (2, 2, 2), "{ca:?}");
    let links = link_pins(&pin);
    for l in ["xdp@eth0", "tc-egress@eth0"] {
        assert!(links.contains(l), "{l} not pinned after exit: {links:?}");
    }
    let link = eth0_link(&lab);
    assert!(
        link.contains("xdp"),
        "XDP no longer attached after the daemon exited:\n{link}"
    );

    // Nobody runs: the pinned programs still count, and queue events in the pinned ring.
    let down = readonly_attempts(&lab, &[42203, 42204]);

    // B adopts.
    let b = context(Daemon::start(&lab.node, &pin.path, &args));
    let err_b = b.stderr();
    assert!(
        err_b.contains("adopted"),
        "B did not adopt the pinned links:\n{err_b}"
    );
    assert!(
        !err_b.contains("no longer fits") && !err_b.contains("start over"),
        "B replaced maps it should have adopted:\n{err_b}"
    );
    let up = readonly_attempts(&lab, &[42205]);
    // One source, one group: the first queued attempt alerts, the other two are folded.
    assert!(b.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    assert!(
        wait_suppressed(&lab, &b, 2.0),
        "B did not see all 3 attempts"
    );
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    assert_same_records(
        &fin_b.records,
        vec![
            readonly_alert(down[0], "xdp"),
            readonly_alert(up[0], "xdp").folded(2),
        ],
    );
    let cb = readonly(&fin_b.counters);
    assert_delta(cb, ca, 3, "A -> B (2 while down, 1 under B)");

    // C, tc mode: the XDP link is pruned and detached.
    let c = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str(), "--attach", "tc"],
    ));
    let links = link_pins(&pin);
    assert!(
        !links.contains("xdp@eth0"),
        "stale xdp link pin kept: {links:?}"
    );
    for l in ["tc-ingress@eth0", "tc-egress@eth0"] {
        assert!(links.contains(l), "{l} missing: {links:?}");
    }
    let link = eth0_link(&lab);
    assert!(
        !link.contains("xdp"),
        "XDP still attached under a tc-mode daemon:\n{link}"
    );
    let o = readonly_attempts(&lab, &[42206]);
    assert!(c.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_c = context(c.stop());
    fin_c.counters.check_invariants();
    assert!(
        fin_c.stderr.contains("removed a pinned link"),
        "{}",
        fin_c.stderr
    );
    assert_same_records(&fin_c.records, vec![readonly_alert(o[0], "tc")]);
    assert_delta(readonly(&fin_c.counters), cb, 1, "B -> C");
    let link = eth0_link(&lab);
    assert!(!link.contains("xdp"), "{link}");

    // unpin.
    let p = pin.path.to_str().unwrap().to_owned();
    let (st, _, err) = daemon::run_cli(Some(&lab.node), &["unpin", "--pin-dir", &p]);
    assert!(st.success(), "unpin failed: {err}");
    assert!(!pin.path.exists(), "unpin left {p}");
}

/// Pinned loss counters outlive a restart: a daemon that adopts them takes them as its
/// baseline and raises no flood alert (NM-1020) for an earlier run's losses.
#[test]
fn adopted_loss_counters_are_history_not_a_flood() {
    let lab = setup();
    let pin = context(BpfPinDir::new("floodbase"));
    let cfg = TempFile::new(
        "floodbase.yaml",
        &test_config(&[(
            "events_per_source_per_second: 20",
            "events_per_source_per_second: 5",
        )]),
    );
    let args = ["--config", cfg.as_str()];

    // A: 20 attempts from one source at once; its bucket lets about 5 through.
    let a = context(Daemon::start(&lab.node, &pin.path, &args));
    let ports: Vec<u16> = (42301..42321).collect();
    readonly_attempts(&lab, &ports);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_a = context(a.stop());
    fin_a.counters.check_invariants();
    let limited = fin_a.counters.total_rate_limited();
    assert!(
        limited > 0,
        "no event was rate limited: {:?}",
        fin_a.counters
    );
    assert_eq!(
        alerts_of(&fin_a.records, "NM-1020").len(),
        1,
        "A's own losses raise its flood alert"
    );

    // B adopts the counters (they still hold A's losses) and loses nothing itself: three
    // housekeeping rounds and a shutdown (which closes any open flood window) later, no
    // flood alert.
    let b = context(Daemon::start(&lab.node, &pin.path, &args));
    assert!(b.stderr().contains("adopted"), "{}", b.stderr());
    std::thread::sleep(Duration::from_millis(1600));
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    assert_eq!(
        fin_b.counters.total_rate_limited(),
        limited,
        "the pinned counters carry A's losses over"
    );
    assert!(
        alerts_of(&fin_b.records, "NM-1020").is_empty(),
        "B raised a flood alert for A's losses: {:?}",
        alerts_of(&fin_b.records, "NM-1020")
    );
}

/// Test 5: A pinned map whose shape no longer fits the config is replaced; the others (the
/// counters) are adopted.
#[test]
fn map_that_no_longer_fits_is_replaced() {
    let lab = setup();
    let pin = context(BpfPinDir::new("resize"));
    let cfg_a = TempFile::new("a.yaml", &test_config(&[]));
    let cfg_b = TempFile::new("b.yaml", &test_config(&[("flows: 65536", "flows: 4096")]));
    let a = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg_a.as_str()],
    ));
    let oa = readonly_attempts(&lab, &[42301, 42302]);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_a = context(a.stop());
    let ca = readonly(&fin_a.counters);
    assert_eq!(ca.new_conns, 2, "{ca:?}");
    assert_same_records(
        &fin_a.records,
        vec![
            readonly_alert(oa[0], "xdp"),
            readonly_alert(oa[1], "xdp").folded(1),
        ],
    );

    let b = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg_b.as_str()],
    ));
    let replaced: Vec<String> = b
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("no longer fits"))
        .collect();
    assert!(
        replaced.len() == 1 && replaced[0].contains("FLOWS") && replaced[0].contains("replacing"),
        "expected exactly FLOWS to be replaced:\n{}",
        b.stderr()
    );
    assert!(b.stderr().contains("adopted"), "{}", b.stderr());
    let o = readonly_attempts(&lab, &[42303]);
    assert!(b.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    assert_same_records(&fin_b.records, vec![readonly_alert(o[0], "xdp")]);
    assert_delta(
        readonly(&fin_b.counters),
        ca,
        1,
        "A -> B with a new FLOWS map",
    );
}

/// Issue 13: a daemon started with `ip netns exec` gets a fresh `/sys` in a private mount
/// namespace, with no bpffs at `/sys/fs/bpf`: it mounts one, and its pins die with it. It
/// must say so at start-up (and still run). Nothing of this reaches the host: the mount and
/// the pins live in that private namespace, gone when the daemon exits.
#[test]
fn a_private_bpffs_is_warned_about() {
    use std::{
        io::{BufRead, BufReader},
        process::Stdio,
        sync::mpsc,
    };

    use node_monitor_lab::Child;

    let lab = setup();
    let cfg = TempFile::new("private-bpffs.yaml", &test_config(&[]));
    let pin = format!("/sys/fs/bpf/{}", node_monitor_lab::NAME_PREFIX);
    let mut cmd = lab.node.command(daemon::BIN);
    cmd.args([
        "run",
        "--iface",
        "eth0",
        "--config",
        cfg.as_str(),
        "--pin-dir",
        &pin,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = context(Child::spawn(&mut cmd));
    let stderr = child.take_stderr().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut warned, mut started, mut seen) = (false, false, Vec::new());
    while Instant::now() < deadline && !(warned && started) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        warned |= line.contains("not shared with the host's mount namespace")
            && line.contains("a restart adopts nothing");
        started |= line.contains("ready") && line.contains("attachments");
        seen.push(line);
    }
    let _ = child.stop(Duration::from_secs(5));
    assert!(
        warned,
        "no warning about the private bpffs: {}",
        seen.join("\n")
    );
    assert!(started, "the daemon did not run on: {}", seen.join("\n"));
}

/// Issue 13: `kill -9` with pins under the host's bpffs. The programs stay attached and keep
/// counting while nobody reads; the events of the gap wait in the pinned ring buffer; the
/// restarted daemon adopts everything, delivers the gap's alert and its follow-up, and the
/// accounting identity holds over the whole run (the counters are the pinned ones: 3 + 5 + 2
/// attempts). What the killed daemon held in memory is lost with it: here the follow-up of
/// its open dedup series (its first alert had gone out).
#[test]
fn kill_9_keeps_counting_and_the_restart_delivers_the_gap() {
    use nix::{
        sys::signal::{Signal, kill},
        unistd::Pid,
    };

    let lab = setup();
    let pin = context(BpfPinDir::new("kill9"));
    let cfg = TempFile::new("kill9.yaml", &test_config(&[]));
    let args = ["--config", cfg.as_str()];
    let mut a = context(Daemon::start(&lab.node, &pin.path, &args));
    let first = readonly_attempts(&lab, &[43001, 43002, 43003]);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    assert!(
        wait_suppressed(&lab, &a, 2.0),
        "A did not see all 3 attempts"
    );
    assert_same_records(&a.records(), vec![readonly_alert(first[0], "xdp")]);
    kill(Pid::from_raw(a.pid() as i32), Signal::SIGKILL).expect("kill -9");
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!a.is_running(), "A survived kill -9");
    let link = eth0_link(&lab);
    assert!(
        link.contains("xdp"),
        "XDP detached with the daemon:\n{link}"
    );

    // Nobody reads: five more attempts, counted and queued in the pinned ring.
    let gap = readonly_attempts(&lab, &[43011, 43012, 43013, 43014, 43015]);

    let b = context(Daemon::start(&lab.node, &pin.path, &args));
    assert!(
        b.stderr().contains("adopted"),
        "B did not adopt the pins:\n{}",
        b.stderr()
    );
    let after = readonly_attempts(&lab, &[43021, 43022]);
    assert!(
        wait_suppressed(&lab, &b, 6.0),
        "B did not see the gap's and its own attempts"
    );
    let fin = context(b.stop());
    fin.counters.check_invariants();
    // The gap's first attempt alerts; the other four and B's two fold into its follow-up.
    assert_same_records(
        &fin.records,
        vec![
            readonly_alert(gap[0], "xdp"),
            readonly_alert(after[1], "xdp").folded(6),
        ],
    );
    let c = readonly(&fin.counters);
    assert_eq!(
        (c.packets, c.new_conns, c.events),
        (10, 10, 10),
        "the pinned counters went on across the kill: {c:?}"
    );
    drop(a);
}
