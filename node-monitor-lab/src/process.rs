//! Child processes with bounds: a command run to completion under a timeout
//! ([`output_with_timeout`], [`run_ok`]) and a spawned process that is ended on drop
//! ([`Child`]: SIGTERM, then SIGKILL after a bounded grace period).

use std::{
    fmt::Write as _,
    io::Read,
    process::{Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// `program args...` as one line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let _ = write!(s, " {}", a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with no stdin, capturing stdout and stderr; kills it and
/// fails if it takes longer than `timeout`. The exit status is not checked.
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{desc}`"))?;
    let (tx, rx) = mpsc::channel();
    for (idx, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send((idx, buf));
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("wait for `{desc}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{desc}` timed out after {timeout:?} and was killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    // A grandchild that outlives the command may keep a pipe open: wait a bounded time.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match rx.recv_timeout(left) {
            Ok((0, b)) => stdout = b,
            Ok((_, b)) => stderr = b,
            Err(_) => break,
        }
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` with a timeout and fails, with its stderr, unless it exits 0. Returns stdout.
pub fn run_ok(cmd: Command, timeout: Duration) -> anyhow::Result<String> {
    let desc = describe(&cmd);
    let out = output_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A spawned process that is ended on drop: SIGTERM, then SIGKILL if it has not exited
/// within a bounded grace period.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    desc: String,
    status: Option<ExitStatus>,
}

impl Child {
    /// Default grace period between SIGTERM and SIGKILL.
    pub const GRACE: Duration = Duration::from_secs(3);

    /// Spawns `cmd` (stdin closed unless the caller set it).
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
        let desc = describe(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{desc}`"))?;
        Ok(Child {
            child,
            desc,
            status: None,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn describe(&self) -> &str {
        &self.desc
    }

    /// The process's stdout if it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The process's stderr if it was piped (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("wait for `{}`", self.desc))?;
        }
        Ok(self.status)
    }

    /// Sends SIGTERM, waits up to `grace` for it to exit, then SIGKILLs it.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "lab: `{}` ignored SIGTERM for {grace:?}; killing it",
            self.desc
        );
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .with_context(|| format!("wait for `{}`", self.desc))?;
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.stop(Self::GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills_a_slow_command() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let t = Instant::now();
        let err = output_with_timeout(cmd, Duration::from_millis(200)).unwrap_err();
        assert!(format!("{err}").contains("timed out"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn child_guard_terminates() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut c = Child::spawn(&mut cmd).unwrap();
        let t = Instant::now();
        let st = c.stop(Duration::from_secs(2)).unwrap();
        assert!(!st.success());
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
