//! The soak's `## Soak` section of BENCHMARKS.md: what it ran, the memory and descriptor
//! spread per daemon life, the accounting identity, the sinks, the restart and what `unpin`
//! left; written in place of the file's previous one.

use std::{
    fmt::Write as _,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    thread,
};

use anyhow::Context as _;
use serde_json::Value;

use crate::{
    soak::{Options, Seen},
    soak_daemon::Daemon,
    soak_peers::Shared,
    soak_report::{self as report, Sample},
};

/// The outcome of `unpin`.
pub(crate) struct Unpinned {
    /// Its error, if it failed.
    pub(crate) ok: Option<String>,
    /// Kernel objects the pins held before it.
    pub(crate) objects: usize,
    /// Those still alive 10 s after it.
    pub(crate) left: Vec<report::BpfObject>,
    /// Entries left in the pin directory.
    pub(crate) pins_left: Vec<String>,
    /// Whether an XDP program is still attached in the node's namespace.
    pub(crate) xdp_left: bool,
}

fn pct_line(samples: &[Sample], life: u8, warmup: f64, what: &str) -> (String, bool) {
    let rss = report::spread(samples, life, warmup, |s| s.rss.total);
    let fds = report::spread(samples, life, warmup, |s| s.fds);
    let rss_drift = report::drift(samples, life, warmup, |s| s.rss.total).unwrap_or(0.0);
    let fds_drift = report::drift(samples, life, warmup, |s| s.fds).unwrap_or(0.0);
    // The fds without the churning veth's links (samples taken with it gone for 3 s).
    let settled: Vec<Sample> = samples
        .iter()
        .filter(|s| s.iface_settled_down)
        .copied()
        .collect();
    let fds_settled = report::spread(&settled, life, warmup, |s| s.fds);
    match (rss, fds) {
        (Some((rmin, rmax, rp)), Some((fmin, fmax, fp))) => (
            format!(
                "| {what} | {:.1}–{:.1} MiB | {rp:.1}% | {:+.2} MiB | {fmin}–{fmax} | {fp:.1}% | {} | {fds_drift:+.1} |\n",
                rmin as f64 / 1024.0,
                rmax as f64 / 1024.0,
                rss_drift / 1024.0,
                fds_settled.map_or_else(
                    || "no samples".to_owned(),
                    |(a, b, p)| format!("{a}–{b}, {p:.1}%")
                ),
            ),
            rp <= 5.0 && fds_settled.is_some_and(|(_, _, p)| p <= 5.0),
        ),
        _ => (format!("| {what} | no samples | | | | | | |\n"), false),
    }
}

/// Range, spread and drift of one kind of resident memory over a life past its warm-up: three
/// table cells.
fn kind_cells(samples: &[Sample], life: u8, warmup: f64, f: impl Fn(&Sample) -> u64) -> String {
    match report::spread(samples, life, warmup, &f) {
        Some((min, max, pct)) => format!(
            "{:.1}–{:.1} MiB | {pct:.1}% | {:+.2} MiB",
            min as f64 / 1024.0,
            max as f64 / 1024.0,
            report::drift(samples, life, warmup, &f).unwrap_or(0.0) / 1024.0
        ),
        None => "no samples | | ".to_owned(),
    }
}

pub(crate) fn section(
    opts: &Options,
    daemons: &mut [Daemon],
    seen: &mut Seen,
    counters: &Value,
    sh: &Shared,
    u: Unpinned,
) -> String {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let acc = report::accounting(counters);
    let sinks = report::sinks(counters);
    let user = &counters["userspace"];
    let lives: Vec<f64> = (0..daemons.len())
        .map(|i| {
            seen.samples
                .iter()
                .filter(|s| usize::from(s.life) == i)
                .map(|s| s.age)
                .fold(0.0, f64::max)
        })
        .collect();
    // Warm-up: the first minute of each daemon's life, or its first third if shorter.
    let warm: Vec<f64> = lives.iter().map(|l| (l / 3.0).min(60.0)).collect();
    let mut md = String::new();
    let when = report::now_utc();
    let _ = writeln!(
        md,
        "## Soak (`cargo xtask soak --minutes {}`, {when})\n",
        opts.minutes
    );
    let _ = writeln!(
        md,
        "The release daemon in a lab of namespaces for {} minutes (machine: {} CPUs, load {} at the end), \
         under mixed traffic: allowed TCP from cp to the kubelet and a NodePort, denied TCP from eight \
         outside addresses to the kubelet (accepted), the API server (refused) and etcd (watched in one \
         config of two), IPv4 and IPv6 in turn, UDP to NodePorts from both, and a 300-SYN hping3 burst \
         every 30 s. Faults: a config reload every 10 s alternating two configs ({} written), a watched \
         veth (`soak0`) added and deleted every 5 s ({} changes{}), the HTTP sink's receiver gone 15 s in \
         every minute, the syslog receiver stalled (connected, not reading; the node's TCP buffers at most 32 KiB, \
         the syslog sink's queue 200 records) 30 s in every minute, and one `kill -9` halfway with a restart 3 s later on the same pins. \
         Samples and both daemons' logs: `target/soak/`.\n",
        opts.minutes,
        thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default(),
        seen.reloads_written,
        seen.iface_changes,
        if seen.iface_errors.is_empty() {
            String::new()
        } else {
            format!(
                ", {} failed: {}",
                seen.iface_errors.len(),
                seen.iface_errors[0]
            )
        },
    );
    md.push_str(
        "| daemon | resident memory after warm-up | max − min | drift (mean of the last third − first third) | open fds after warm-up | max − min | the same with `soak0` gone 3 s | drift |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut all_ok = true;
    for (i, w) in warm.iter().enumerate() {
        let what = format!(
            "{} ({:.0} s, first {:.0} s warm-up)",
            if i == 0 {
                "A (killed)"
            } else {
                "B (restarted)"
            },
            lives[i],
            w
        );
        let (line, ok) = pct_line(&seen.samples, u8::try_from(i).unwrap_or(1), *w, &what);
        all_ok &= ok;
        md.push_str(&line);
    }
    let _ = writeln!(
        md,
        "\nThe open fds include two links for each of `soak0` and `soak1` while the veth exists (XDP and tc \
         egress), four fds that come and go with it by design; the target is checked on memory and on the fds \
         sampled with the veth gone. Target ≤ 5% for both: **{}**.\n",
        if all_ok { "met" } else { "not met" }
    );
    md.push_str(
        "The same resident memory by kind: anonymous (`RssAnon`: heap, stacks, the allocator's arenas) and \
         file-backed (`RssFile` + `RssShmem`: pages of the binary and its libraries, mapped as code paths first \
         run, and which the kernel may drop again).\n\n\
         | daemon | anonymous after warm-up | max − min | drift | file-backed after warm-up | max − min | drift |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (i, w) in warm.iter().enumerate() {
        let life = u8::try_from(i).unwrap_or(1);
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            if i == 0 { "A" } else { "B" },
            kind_cells(&seen.samples, life, *w, |s| s.rss.anon),
            kind_cells(&seen.samples, life, *w, |s| s.rss.file),
        );
    }
    md.push('\n');
    let a_alerts = load(&daemons[0].alerts);
    let b_alerts = daemons.get(1).map_or(0, |d| load(&d.alerts));
    let b = daemons.last();
    let _ = writeln!(
        md,
        "| | |\n|---|---|\n\
         | traffic sent | {} allowed TCP, {} denied TCP attempts, {} UDP datagrams, {} SYN bursts ({} peer errors{}) |\n\
         | kernel counters, whole run (pinned, so across the kill) | {} packets, {} new connections ({} denied), {} events, {} sampled out, lost: {} rate-limited, {} group budget, {} ring buffer full |\n\
         | accounting identity (every group entry: new connections = events + sampled out + losses) | **{}** |\n\
         | alerts on stdout | A {a_alerts}, B {b_alerts} (A's own metric: {:.0}) |\n\
         | B's userspace | {} events read, {} malformed, {} reloads applied, {} rejected |\n\
         | restart | B ready {:.2} s after its start, first alert {} after its start (the gap's events wait in the pinned ring) |\n\
         | metrics scrapes (every 5 s) | {} ok, {} failed{} |\n\
         | attached interfaces (metric) | {:.0} to {:.0} |\n\
         | sinks (B) | {} |\n\
         | receivers (whole run) | HTTP {} records in {} POSTs; syslog {} records over {} connections |\n\
         | highest sink queue (sum, metric) | {:.0} |\n\
         | `unpin` | {}; {} kernel objects behind the pins (maps, links, programs), {} alive 10 s later{}; {} pin entries left; XDP left attached: {} |\n",
        load(&sh.tcp_allowed),
        load(&sh.tcp_denied),
        load(&sh.udp_sent),
        load(&sh.syn_bursts),
        load(&sh.peer_errors),
        {
            let e = sh
                .errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if e.is_empty() {
                String::new()
            } else {
                format!(": {}", e.join("; "))
            }
        },
        acc.packets,
        acc.new_conns,
        acc.denied_conns,
        acc.events,
        acc.sampled_out,
        acc.lost_rate_limited,
        acc.lost_group_budget,
        acc.lost_ringbuf_full,
        if acc.broken.is_empty() {
            "holds".to_owned()
        } else {
            format!("BROKEN in {}: {}", acc.broken.len(), acc.broken.join("; "))
        },
        seen.alerts_metric_a,
        user["events_read"].as_u64().unwrap_or(0),
        user["events_malformed"].as_u64().unwrap_or(0),
        user["config_reloads_ok"].as_u64().unwrap_or(0),
        user["config_reloads_failed"].as_u64().unwrap_or(0),
        b.map_or(0.0, |d| d.ready_after.as_secs_f64()),
        b.and_then(Daemon::first_alert_after).map_or_else(
            || "never".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64())
        ),
        seen.scrapes_ok,
        seen.scrape_errors.len(),
        seen.scrape_errors
            .first()
            .map_or_else(String::new, |e| format!(" (first: {e})")),
        if seen.min_attached == f64::MAX {
            0.0
        } else {
            seen.min_attached
        },
        seen.max_attached,
        sinks
            .iter()
            .map(|(n, s, d)| format!("{n}: {s} sent, {d} dropped"))
            .collect::<Vec<_>>()
            .join("; "),
        load(&sh.http_records),
        load(&sh.http_posts),
        load(&sh.syslog_records),
        load(&sh.syslog_conns),
        seen.max_sink_queue,
        u.ok.map_or_else(|| "ok".to_owned(), |e| format!("FAILED: {e}")),
        u.objects,
        u.left.len(),
        if u.left.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", u.left)
        },
        u.pins_left.len(),
        if u.xdp_left { "yes" } else { "no" },
    );
    for (i, d) in daemons.iter().enumerate() {
        let err = d.stderr();
        let errors = err.iter().filter(|l| l.contains(" ERROR ")).count();
        let warns = err.iter().filter(|l| l.contains(" WARN ")).count();
        let reloads = err.iter().filter(|l| l.contains("config reloaded")).count();
        let rejected = err
            .iter()
            .filter(|l| l.contains("config reload rejected"))
            .count();
        let _ = writeln!(
            md,
            "Daemon {}: {reloads} reloads applied, {rejected} rejected; {errors} ERROR and {warns} WARN log lines{}.",
            if i == 0 { "A" } else { "B" },
            err.iter()
                .find(|l| l.contains(" ERROR "))
                .map_or_else(String::new, |l| format!(" (first ERROR: `{}`)", l.trim()))
        );
    }
    md.push('\n');
    md
}

/// Replaces the `## Soak` section of the Markdown file `path` (up to the next `## ` heading
/// or the end) with `section`, or appends it.
pub(crate) fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = replace_section(&old, section);
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

/// Where the `## Soak` section of `md` lies: from its heading to the next `## ` heading or the
/// end.
fn span(md: &str) -> Option<(usize, usize)> {
    let s = md
        .match_indices("## Soak")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || md.as_bytes()[i - 1] == b'\n')?;
    let rest = &md[s + 2..];
    let end = rest
        .match_indices("\n## ")
        .next()
        .map_or(md.len(), |(i, _)| s + 2 + i + 1);
    Some((s, end))
}

fn replace_section(old: &str, section: &str) -> String {
    match span(old) {
        Some((s, end)) => format!("{}{section}{}", &old[..s], &old[end..]),
        None => {
            let sep = if old.is_empty() || old.ends_with("\n\n") {
                ""
            } else if old.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{old}{sep}{section}")
        }
    }
}

/// `new` (a report the benchmark just wrote over `old`) with `old`'s Soak section put back,
/// when the report has none of its own: the benchmark writes BENCHMARKS.md whole, and the
/// soak's section is the soak's to replace. None: nothing to put back.
pub(crate) fn keep_soak(old: &str, new: &str) -> Option<String> {
    if span(new).is_some() {
        return None;
    }
    let (s, end) = span(old)?;
    let section = old[s..end].trim_end_matches('\n');
    Some(replace_section(new, &format!("{section}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_section_is_replaced_or_appended() {
        let s = "## Soak\nnew\n";
        assert_eq!(replace_section("# A\n", s), "# A\n\n## Soak\nnew\n");
        assert_eq!(
            replace_section("# A\n\n## Soak\nold\nold\n\n## B\nb\n", s),
            "# A\n\n## Soak\nnew\n## B\nb\n"
        );
        assert_eq!(
            replace_section("# A\n## Soak\nold\n", s),
            "# A\n## Soak\nnew\n"
        );
        // A subsection is part of the section.
        assert_eq!(
            replace_section("## Soak\nx\n### sub\ny\n## C\n", s),
            "## Soak\nnew\n## C\n"
        );
    }

    #[test]
    fn a_report_written_over_the_file_keeps_its_soak_section() {
        let old = "# Data-path benchmark\nold\n\n## Live\nl\n\n## Soak (x)\ns1\n### sub\ns2\n\n## After\na\n";
        let new = "# Data-path benchmark\nnew\n\n## Live\nm\n";
        assert_eq!(
            keep_soak(old, new).as_deref(),
            Some("# Data-path benchmark\nnew\n\n## Live\nm\n\n## Soak (x)\ns1\n### sub\ns2\n")
        );
        // A Soak section at the end of the old file, without a trailing newline.
        assert_eq!(
            keep_soak("# A\n## Soak\ns", "# B\n").as_deref(),
            Some("# B\n\n## Soak\ns\n")
        );
        // Nothing to keep, or the new report has a Soak section of its own.
        assert_eq!(keep_soak("# A\n## Live\nl\n", "# B\n"), None);
        assert_eq!(keep_soak("## Soak\nold\n", "# B\n## Soak\nnew\n"), None);
        // "## Soak" inside a line is not a heading.
        assert_eq!(keep_soak("# A\nsee ## Soak\n", "# B\n"), None);
    }
}
