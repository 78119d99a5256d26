//! The tests step's output, kept as it streams by, and the short account of its failures
//! that `cargo xtask test` prints last: a CI log is often read from its tail, and the
//! failing tests' names and panic messages would otherwise sit thousands of lines above it.

use std::{
    io::{BufRead as _, BufReader, Read, Write as _},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use anyhow::Context as _;
use node_monitor_lab as lab;

/// Lines kept of one failing test's output: those from its panic on (or its first ones).
const LINES_PER_FAILURE: usize = 24;
/// Characters kept of one line.
const LINE_CHARS: usize = 400;

/// Runs `cmd`, copying its stdout and stderr line by line to ours as they come, and
/// returns its exit status with everything it printed (both streams, in arrival order).
pub fn run_teed(cmd: &mut Command) -> anyhow::Result<(ExitStatus, String)> {
    let desc = lab::describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{desc}`"))?;
    let log = Arc::new(Mutex::new(String::new()));
    let copy = |r: Box<dyn Read + Send>, to_stderr: bool| {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(r).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                // Our own stdout/stderr going away must not stop the copy (the child
                // would block on a full pipe).
                if to_stderr {
                    let _ = writeln!(std::io::stderr(), "{line}");
                } else {
                    let _ = writeln!(std::io::stdout(), "{line}");
                }
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let out = child.stdout.take().map(|r| copy(Box::new(r), false));
    let err = child.stderr.take().map(|r| copy(Box::new(r), true));
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{desc}`"))?;
    for t in [out, err].into_iter().flatten() {
        let _ = t.join();
    }
    let log = std::mem::take(
        &mut *log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok((status, log))
}

/// The account of the failures in a `cargo test` log: for each failing test its name and
/// the lines from its panic on (bounded), then each binary's failed-test list and result
/// line, and cargo's own error lines (a binary that crashed or was killed says so only
/// there). Empty when the log shows no failure.
pub fn failure_summary(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(name) = failure_header(line) {
            let end = lines[i + 1..]
                .iter()
                .position(|l| failure_header(l).is_some() || *l == "failures:")
                .map_or(lines.len(), |p| i + 1 + p);
            let body = &lines[i + 1..end];
            let from = body
                .iter()
                .position(|l| l.contains("panicked at"))
                .unwrap_or(0);
            out.push(format!("---- {name}"));
            let kept: Vec<&str> = body[from..]
                .iter()
                .copied()
                .take_while(|l| !l.starts_with("stack backtrace:"))
                .filter(|l| !l.trim().is_empty())
                .collect();
            for l in kept.iter().take(LINES_PER_FAILURE) {
                out.push(format!("    {}", clip(l)));
            }
            if kept.len() > LINES_PER_FAILURE {
                out.push(format!(
                    "    ... {} more lines above, in the test's output",
                    kept.len() - LINES_PER_FAILURE
                ));
            }
            i = end;
            continue;
        }
        if line == "failures:"
            && lines
                .get(i + 1)
                .is_some_and(|l| l.starts_with("    ") && !l.starts_with("    ----"))
        {
            out.push("failed:".to_owned());
            i += 1;
            while i < lines.len() && lines[i].starts_with("    ") {
                out.push(lines[i].to_owned());
                i += 1;
            }
            continue;
        }
        if line.starts_with("test result: FAILED")
            || line.starts_with("error: test failed")
            || line.contains("process didn't exit successfully")
            || line.starts_with("error: ") && line.contains("target") && line.contains("failed")
        {
            out.push(clip(line));
            // cargo's "error: N targets failed:" is followed by the targets, indented.
            while lines.get(i + 1).is_some_and(|l| l.starts_with("    `")) {
                i += 1;
                out.push(lines[i].to_owned());
            }
        }
        i += 1;
    }
    out
}

/// `---- NAME stdout ----` (libtest's header of one failing test's captured output) → NAME.
fn failure_header(line: &str) -> Option<&str> {
    line.strip_prefix("---- ")?.strip_suffix(" stdout ----")
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(LINE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILING: &str = "\
running 3 tests
test a::one ... ok
test a::two ... FAILED
test a::three ... FAILED

failures:

---- a::two stdout ----
some setup line

thread 'a::two' (123) panicked at node-monitor/tests/e2e/a.rs:10:5:
assertion `left == right` failed: the alert never came
  left: 0
 right: 1
stack backtrace:
   0: frame
---- a::three stdout ----
thread 'a::three' (124) panicked at x.rs:1:1:
boom


failures:
    a::two
    a::three

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s

error: test failed, to rerun pass `-p node-monitor --test e2e`
     Running tests/metrics/main.rs (target/debug/deps/metrics-1)
error: test failed, to rerun pass `-p node-monitor --test metrics`

Caused by:
  process didn't exit successfully: `target/debug/deps/metrics-1` (signal: 9, SIGKILL: kill)
error: 2 targets failed:
    `-p node-monitor --test e2e`
    `-p node-monitor --test metrics`
";

    #[test]
    fn names_each_failure_with_its_panic_and_the_crashed_binaries() {
        let s = failure_summary(FAILING);
        let text = s.join("\n");
        assert!(
            text.contains("---- a::two\n    thread 'a::two' (123) panicked at"),
            "{text}"
        );
        assert!(text.contains("the alert never came"), "{text}");
        assert!(text.contains(" right: 1"), "{text}");
        assert!(
            !text.contains("some setup line"),
            "lines before the panic are left out: {text}"
        );
        assert!(!text.contains("frame"), "the backtrace is left out: {text}");
        assert!(
            text.contains("---- a::three\n    thread 'a::three'"),
            "{text}"
        );
        assert!(text.contains("failed:\n    a::two\n    a::three"), "{text}");
        assert!(
            text.contains("test result: FAILED. 1 passed; 2 failed"),
            "{text}"
        );
        assert!(text.contains("(signal: 9, SIGKILL: kill)"), "{text}");
        assert!(
            text.contains("error: 2 targets failed:\n    `-p node-monitor --test e2e`\n    `-p node-monitor --test metrics`"),
            "{text}"
        );
    }

    #[test]
    fn a_passing_log_has_no_summary() {
        let log = "running 1 test\ntest a::one ... ok\n\ntest result: ok. 1 passed; 0 failed\n";
        assert!(failure_summary(log).is_empty());
    }

    #[test]
    fn a_long_failure_is_bounded() {
        let mut log = String::from("---- t stdout ----\nthread 't' panicked at a.rs:1:1:\n");
        for n in 0..100 {
            log.push_str(&format!("line {n} {}\n", "x".repeat(1000)));
        }
        log.push_str("\nfailures:\n    t\n");
        let s = failure_summary(&log);
        assert!(s.len() < LINES_PER_FAILURE + 6, "{}", s.len());
        assert!(s.iter().all(|l| l.chars().count() <= LINE_CHARS + 8));
        assert!(s.iter().any(|l| l.contains("more lines above")));
    }

    #[test]
    fn run_teed_keeps_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let (status, log) = run_teed(&mut cmd).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(log.contains("out\n") && log.contains("err\n"), "{log}");
    }
}
