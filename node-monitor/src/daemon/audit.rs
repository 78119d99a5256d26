//! The periodic posture audit (`audit:` in the config): at start, then every `interval_s`,
//! the checks of `node-monitor audit` run in a process of their own (the daemon's binary,
//! re-executed: `posture::child`), never on the event loop: the data path and the alert
//! pipeline go on while a kubelet probe waits. A run is bounded by `timeout_s` inside that
//! process; one still going `timeout_s` plus a grace after it started (stuck in a blocking
//! read no timeout reaches: a hung NFS or FUSE path, a FIFO) is killed with its whole
//! process group and reaped, counted as failed, and the next is scheduled as usual: no
//! thread, process or descriptor is left behind per stuck run. One run at a time.
//!
//! Each completed run sends every finding at or above `min_severity` to the sinks, again on
//! every run (a SIEM keeps the node's current state; a finding that is no longer sent has
//! been fixed), and sets the `node_monitor_audit_*` metrics.
use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use tokio::{
    sync::mpsc,
    time::{Duration, Instant},
};
use tracing::{info, warn};

use super::Daemon;
use crate::{
    config::AuditSettings,
    detect::OutputItem,
    metrics::AuditSnapshot,
    posture::{self, FindingEvent, Report, child, child::Job, identity::Identity},
};

/// How long past `timeout_s` a run's process may take to report before it is killed.
const GRACE: Duration = Duration::from_secs(5);
/// The event loop's own bound past [`GRACE`]: the run's task reports a killed process at
/// once; this gives up on a task that never reports at all.
const BACKSTOP: Duration = Duration::from_secs(5);

/// What a run's thread reports.
pub(super) struct Done {
    no: u64,
    result: Result<Report, String>,
    took: Duration,
}

struct Running {
    no: u64,
    give_up_at: Instant,
}

/// The audit's schedule and the metrics of its runs.
pub(super) struct Auditor {
    settings: AuditSettings,
    /// When the next run is due.
    next: Instant,
    running: Option<Running>,
    runs: u64,
    tx: mpsc::Sender<Done>,
    metrics: AuditSnapshot,
}

impl Auditor {
    /// The first run is due now.
    pub(super) fn new(settings: AuditSettings) -> (Auditor, mpsc::Receiver<Done>) {
        let (tx, rx) = mpsc::channel(2);
        (
            Auditor {
                settings,
                next: Instant::now(),
                running: None,
                runs: 0,
                tx,
                metrics: AuditSnapshot::default(),
            },
            rx,
        )
    }

    /// Whether the event loop has anything to wait for: a run due or one to give up on.
    pub(super) fn active(&self) -> bool {
        self.settings.interval.is_some() || self.running.is_some()
    }

    /// When the event loop should call [`Daemon::audit_due`].
    pub(super) fn wake_at(&self) -> Instant {
        self.running.as_ref().map_or(self.next, |r| r.give_up_at)
    }

    /// New settings (a reload): the next run, with them, is due now.
    pub(super) fn set_settings(&mut self, settings: AuditSettings) {
        self.settings = settings;
        self.next = Instant::now();
    }

    fn schedule_next(&mut self, from: Instant) {
        if let Some(i) = self.settings.interval {
            self.next = from + i;
        }
    }
}

impl Daemon {
    /// A run is due, or the running one is past its time.
    pub(super) fn audit_due(&mut self) {
        let now = Instant::now();
        if let Some(r) = &self.audit.running {
            if now >= r.give_up_at {
                let no = r.no;
                self.audit.running = None;
                self.audit_failed(
                    no,
                    &format!(
                        "still running {}s after its timeout and its task never reported",
                        (GRACE + BACKSTOP).as_secs()
                    ),
                    self.audit.settings.timeout + GRACE + BACKSTOP,
                );
            }
            return;
        }
        if self.audit.settings.interval.is_none() || now < self.audit.next {
            return;
        }
        self.audit.runs += 1;
        let no = self.audit.runs;
        let timeout = self.audit.settings.timeout;
        self.audit.running = Some(Running {
            no,
            give_up_at: now + timeout + GRACE + BACKSTOP,
        });
        self.audit.schedule_next(now);
        let identity = match &self.cluster {
            None => Identity::Unavailable(
                "the daemon watches no cluster (cluster.enabled: off, or no credentials found)"
                    .to_owned(),
            ),
            Some(c) => Identity::Cluster {
                snapshot: c.snapshot(),
                node: c.node().map(str::to_owned),
            },
        };
        let job = Job {
            config_path: self.opts.config_path.clone(),
            config_yaml: self.cfg_text.clone(),
            config_digest: self.cfg.digest(),
            node_subnets: self.subnets.clone(),
            pin_dir: self.opts.pin_dir.clone(),
            kubelet_config: self.audit.settings.kubelet_config.clone(),
            apiserver_manifest: self.audit.settings.apiserver_manifest.clone(),
            identity: identity.facts(&self.cfg, &crate::netif::local_addrs()),
            timeout_s: timeout.as_secs(),
        };
        let tx = self.audit.tx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = run_process(&job, timeout).await;
            // The event loop may have given up on this run, or stopped: then nobody listens.
            let _ = tx
                .send(Done {
                    no,
                    result,
                    took: started.elapsed(),
                })
                .await;
        });
    }

    /// A run's process reported (or was killed).
    pub(super) fn audit_done(&mut self, done: Done) {
        if self.audit.running.as_ref().is_none_or(|r| r.no != done.no) {
            return; // given up on already
        }
        self.audit.running = None;
        match done.result {
            Err(why) => self.audit_failed(done.no, &why, done.took),
            Ok(report) => {
                let m = &mut self.audit.metrics;
                m.runs_completed += 1;
                m.last_run_ok = true;
                m.last_run_unix_s = unix_s(report.time);
                m.last_run_duration_s = done.took.as_secs_f64();
                let skipped: Vec<String> = report
                    .checks
                    .iter()
                    .filter(|c| c.status == "skipped")
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect();
                m.checks_skipped = skipped.len() as u64;
                let mut by: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
                for f in &report.findings {
                    *by.entry((f.id, f.severity.as_str())).or_default() += 1;
                }
                m.findings = by;
                self.metrics.set_audit(m.clone());
                let min = self.audit.settings.min_severity;
                let mut sent = 0;
                for e in FindingEvent::of_report(&report) {
                    if e.finding.severity >= min {
                        sent += 1;
                        self.sinks.send(Arc::new(OutputItem::Finding(e)));
                    }
                }
                info!(
                    run = done.no,
                    findings = report.findings.len(),
                    sent,
                    worst = report.worst().map_or("none", posture::Severity::as_str),
                    took_ms = done.took.as_millis() as u64,
                    ?skipped,
                    "posture audit done"
                );
            }
        }
    }

    fn audit_failed(&mut self, no: u64, why: &str, took: Duration) {
        let m = &mut self.audit.metrics;
        m.runs_failed += 1;
        m.last_run_ok = false;
        m.last_run_unix_s = unix_s(SystemTime::now());
        m.last_run_duration_s = took.as_secs_f64();
        self.metrics.set_audit(m.clone());
        warn!(run = no, error = %why, "posture audit failed; the findings of the last completed run stay in the metrics");
    }
}

/// The largest report read from the audit process (a report is a few kilobytes).
const REPORT_MAX: usize = 8 << 20;
/// How much of the audit process's stderr is kept for the log.
const STDERR_MAX: usize = 4096;
/// How long a killed audit process may take to be reaped before it is left to tokio's
/// orphan reaping (a process in uninterruptible sleep dies when its I/O ends).
const REAP_WAIT: Duration = Duration::from_secs(2);

/// One audit in a process of its own (`posture::child`): `/proc/self/exe audit --format json
/// --daemon-job`, `job` on its stdin, in a process group of its own. Its report is read from
/// its stdout; when it has not ended `timeout` + [`GRACE`] after it started, its whole group
/// (it and the tools it runs) is killed and reaped. Nothing it started outlives the call,
/// however the call ends: a guard kills the group if the call itself is dropped.
async fn run_process(job: &Job, timeout: Duration) -> Result<Report, String> {
    let input =
        serde_json::to_vec(job).map_err(|e| format!("cannot write the audit's job: {e}"))?;
    // The running binary itself, not a PATH lookup.
    let mut cmd = tokio::process::Command::new("/proc/self/exe");
    cmd.args(["audit", "--format", "json", child::DAEMON_JOB_FLAG]);
    run_in_group(
        cmd,
        input,
        timeout + GRACE,
        format!(
            "still running {}s after its timeout; its process group was killed",
            GRACE.as_secs()
        ),
    )
    .await
}

/// Runs `cmd` in a process group of its own, with `input` on its stdin and none of the
/// caller's descriptors; its report from its stdout. Past `within`, the group is killed and
/// reaped and the result is `Err(late)`; it is killed whatever the outcome once the output
/// has ended, and if this future is dropped.
async fn run_in_group(
    mut cmd: tokio::process::Command,
    input: Vec<u8>,
    within: Duration,
    late: String,
) -> Result<Report, String> {
    use std::process::Stdio;

    use tokio::io::AsyncWriteExt as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: `cloexec_from_3` makes async-signal-safe system calls only, as a `pre_exec`
    // hook must.
    unsafe { cmd.pre_exec(cloexec_from_3) };
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the audit process: {e}"))?;
    let mut group = KillGroup(child.id().and_then(|p| i32::try_from(p).ok()));
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let write = async move {
        if let Some(mut w) = stdin {
            // A process that died first says why on stderr and in its exit status.
            let _ = w.write_all(&input).await;
        }
        Ok::<(), String>(())
    };
    let io = async {
        tokio::try_join!(
            write,
            read_bounded(stdout, REPORT_MAX, true),
            read_bounded(stderr, STDERR_MAX, false)
        )
    };
    let read = tokio::time::timeout(within, io).await;
    // Its output ended (it exited: it is a zombie until reaped, its group id still its own),
    // it sent too much, or it is past its time: whatever is left of the group goes now.
    group.kill();
    let status = tokio::time::timeout(REAP_WAIT, child.wait()).await;
    let (out, err) = match read {
        Err(_) => return Err(late),
        Ok(Err(why)) => return Err(why),
        Ok(Ok(((), out, err))) => (out, err),
    };
    let err = String::from_utf8_lossy(&err);
    let err = err.trim();
    match status {
        Ok(Ok(s)) if s.success() => child::parse_report(&String::from_utf8_lossy(&out)),
        Ok(Ok(s)) if s.code() == Some(i32::from(child::EXIT_RUN_FAILED)) && !err.is_empty() => {
            Err(err.to_owned())
        }
        Ok(Ok(s)) => Err(format!(
            "the audit process ended with {s} and no report{}",
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        )),
        Ok(Err(e)) => Err(format!("cannot wait for the audit process: {e}")),
        Err(_) => Err(format!(
            "the audit process was killed but not reaped within {}s",
            REAP_WAIT.as_secs()
        )),
    }
}

/// In the audit process, between fork and exec: every descriptor but stdin, stdout and
/// stderr is marked close-on-exec, so that the process holds none of the daemon's (the maps,
/// links and ring buffer the daemon opened are close-on-exec already; this also covers what
/// the daemon itself inherited without the flag, a jobserver's pipe, a `/dev/null`).
/// `close_range(2)` (Linux 5.11), else `fcntl` on each descriptor up to the limit.
fn cloexec_from_3() -> std::io::Result<()> {
    // SAFETY: system calls on integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20)
    } else {
        1 << 16
    };
    for fd in 3..i32::try_from(max).unwrap_or(1 << 16) {
        // SAFETY: fcntl on a descriptor number; EBADF for one that is not open.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Everything `r` gives, up to `max` bytes: past it, an error (`fail`) or the rest ignored.
async fn read_bounded(
    r: Option<impl tokio::io::AsyncRead + Unpin>,
    max: usize,
    fail: bool,
) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt as _;
    let Some(r) = r else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut r = r.take(max as u64 + 1);
    r.read_to_end(&mut out)
        .await
        .map_err(|e| format!("reading the audit process's output: {e}"))?;
    if out.len() > max {
        if fail {
            return Err(format!(
                "the audit process's report is larger than {max} bytes; refused"
            ));
        }
        out.truncate(max);
        // Not read on: the rest is dropped with the pipe (a writer gets EPIPE).
    }
    Ok(out)
}

/// SIGKILL to the audit process's group: when told, and on drop.
struct KillGroup(Option<i32>);

impl KillGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH when the group is already gone: nothing to do.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        posture::{Check, Finding, Severity},
        render::{Observer, audit as render_audit},
    };

    fn sh(script: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    async fn run(script: &str, within: Duration) -> Result<Report, String> {
        run_in_group(sh(script), b"{}".to_vec(), within, "late".to_owned()).await
    }

    /// Processes whose command line contains `marker`.
    fn with_marker(marker: &str) -> usize {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
            .count()
    }

    #[tokio::test]
    async fn a_report_is_read_and_anything_else_is_a_failed_run() {
        let report = Report {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            checks: vec![Check {
                name: "listeners",
                status: "ok",
                detail: "0 listening sockets".into(),
            }],
            findings: vec![Finding::new(
                "NM-2001",
                Severity::High,
                "kubelet read-only port open",
                "listening: 0.0.0.0:10255/tcp".into(),
                "set readOnlyPort: 0",
                Some("4.2.4"),
            )],
        };
        let json = render_audit::render(&report, render_audit::Format::Json, &Observer::local());
        // The job arrives on stdin; the report goes out on stdout.
        let got = run(
            &format!(
                "read -r job; [ \"$job\" = '{{}}' ] && printf '%s' '{}'",
                json.trim()
            ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(got.findings, report.findings);
        assert_eq!(got.time, report.time);

        let e = run("echo not json", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.contains("not JSON of the expected shape"), "{e}");
        // The process's own failure (exit 3): its stderr is the reason, as it said it.
        let e = run(
            "echo 'timed out after 5s' >&2; exit 3",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e, "timed out after 5s");
        let e = run("echo boom >&2; exit 7", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.contains("exit status: 7") && e.ends_with(": boom"), "{e}");
        let e = run("kill -9 $$", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.contains("signal: 9"), "{e}");
        // Too much output: refused without reading it all.
        let e = run(
            &format!("head -c {} /dev/zero", REPORT_MAX + 1),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    /// A process stuck past its time is killed with everything in its group (a child that
    /// sleeps on, as a tool would), and reaped: nothing is left.
    #[tokio::test]
    async fn a_process_past_its_time_is_killed_with_its_group() {
        let marker = format!("nm-audit-test-{}", std::process::id());
        let sleeper = std::env::temp_dir().join(&marker);
        let _ = std::fs::remove_file(&sleeper);
        std::os::unix::fs::symlink("/bin/sleep", &sleeper).unwrap();
        let script = format!("{} 60 & {} 61", sleeper.display(), sleeper.display());
        let started = std::time::Instant::now();
        let e = run(&script, Duration::from_millis(500)).await.unwrap_err();
        assert_eq!(e, "late");
        assert!(started.elapsed() < Duration::from_secs(5));
        let gone = (0..20).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            with_marker(&marker) == 0
        });
        let _ = std::fs::remove_file(&sleeper);
        assert!(gone, "the process group outlived its run");
    }

    /// The process gets stdin, stdout and stderr, and none of the caller's descriptors, even
    /// one opened without close-on-exec.
    #[tokio::test]
    async fn the_process_inherits_no_descriptor() {
        let keep = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&keep);
        // Clear its close-on-exec flag, as a descriptor the daemon inherited would be.
        // SAFETY: fcntl on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let e = run(
            &format!(
                "[ -e /proc/self/fd/{fd} ] && echo 'fd {fd} open' >&2 || echo 'closed' >&2; exit 3"
            ),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e, "closed");
        drop(keep);
    }
}
