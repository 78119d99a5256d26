//! The daemon's audit runs in a process of its own, so that a run stuck where no timeout
//! reaches (a blocking read of a hung NFS or FUSE path, a FIFO, a stalled /proc entry) can be
//! killed, with everything it started, instead of leaving a blocked thread behind per run.
//!
//! The daemon re-executes its own binary (`/proc/self/exe`) as
//! `node-monitor audit --format json --daemon-job` ([`DAEMON_JOB_FLAG`], hidden from `--help`)
//! in a process group of its own, writes a [`Job`] as JSON on its stdin, and reads the
//! report (`--format json`, [`parse_report`]) from its stdout. The job carries what the
//! daemon's audit saw in-process: its config (the text in force, not the file as it is now,
//! and its digest), `node-subnets`, the pin
//! directory, the `audit:` paths, and the identity checks' [`Facts`](super::identity::Facts)
//! taken from the daemon's own cluster cache.
use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Mutex, PoisonError},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use super::{Check, Finding, Options, Report, Severity, identity::WireIdentity};
use crate::config::Config;

/// The hidden flag of `node-monitor audit` that makes it read a [`Job`] on stdin.
pub const DAEMON_JOB_FLAG: &str = "--daemon-job";

/// Exit status of the audit process when the run failed (its reason on stderr, one line).
pub const EXIT_RUN_FAILED: u8 = 3;

/// What the daemon's audit process is to do: the daemon's view of the node, as
/// [`Options`] hold it in-process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The daemon's config file (`None`: the embedded default), named in errors.
    pub config_path: Option<PathBuf>,
    /// The text of the config the daemon runs, as it read it from `config_path` when it
    /// last loaded or reloaded it (`None`: the embedded default). The file itself is not
    /// read again: once changed on disk, or broken, it is not what the daemon runs.
    pub config_yaml: Option<String>,
    /// The digest of the config the daemon runs ([`Config::digest`]): the process checks
    /// that it parsed the same one (the embedded default with or without the cluster
    /// defaults).
    pub config_digest: String,
    pub node_subnets: Vec<ipnet::IpNet>,
    pub pin_dir: Option<PathBuf>,
    pub kubelet_config: Option<PathBuf>,
    pub apiserver_manifest: Option<PathBuf>,
    pub identity: WireIdentity,
    /// The run's bound: `audit.timeout_s`.
    pub timeout_s: u64,
}

/// The audit process's options for `job`.
///
/// # Errors
///
/// The config cannot be loaded, or is not the one the daemon runs.
pub fn options(job: Job) -> Result<Options, String> {
    let origin = job.config_path.as_ref().map_or_else(
        || "embedded default".to_owned(),
        |p| p.display().to_string(),
    );
    let loaded = match &job.config_yaml {
        Some(text) => Config::from_yaml(text, &origin)
            .map_err(|e| format!("the daemon's config ({origin}) does not parse: {e}"))?,
        None => Config::default_config(),
    };
    let digest = loaded.digest();
    let config = if digest == job.config_digest {
        loaded
    } else {
        let with_defaults = loaded.with_cluster_defaults();
        if with_defaults.digest() != job.config_digest {
            return Err(format!(
                "the config {origin} as handed over (digest {}) is not the one the daemon runs (digest {})",
                digest, job.config_digest
            ));
        }
        with_defaults
    };
    Ok(Options {
        kubelet_config: job.kubelet_config,
        apiserver_manifest: job.apiserver_manifest,
        config,
        node_subnets: job.node_subnets,
        pin_dir: job.pin_dir,
        identity: job.identity.into(),
        // The daemon kills this process's group on timeout: the tools stay in it.
        tool_groups: false,
        ..Options::default()
    })
}

/// The report that `node-monitor audit --format json` printed, read back.
///
/// # Errors
///
/// Not that document: what is wrong with it.
pub fn parse_report(text: &str) -> Result<Report, String> {
    #[derive(Deserialize)]
    struct WireCheck {
        name: String,
        status: String,
        detail: String,
    }
    #[derive(Deserialize)]
    struct WireFinding {
        id: String,
        severity: Severity,
        title: String,
        evidence: String,
        fix: String,
        cis: Option<String>,
    }
    #[derive(Deserialize)]
    struct WireReport {
        time: String,
        checks: Vec<WireCheck>,
        findings: Vec<WireFinding>,
    }
    let w: WireReport = serde_json::from_str(text).map_err(|e| {
        format!(
            "the audit process's report is not JSON of the expected shape: {e} (first bytes: {:?})",
            text.chars().take(120).collect::<String>()
        )
    })?;
    let time: SystemTime = humantime::parse_rfc3339(&w.time).map_err(|e| {
        format!(
            "the audit process's report has a bad time {:?}: {e}",
            w.time
        )
    })?;
    let checks = w
        .checks
        .into_iter()
        .map(|c| {
            Ok(Check {
                name: intern(c.name)?,
                status: intern(c.status)?,
                detail: c.detail,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let findings = w
        .findings
        .into_iter()
        .map(|f| {
            Ok(Finding {
                id: intern(f.id)?,
                severity: f.severity,
                title: intern(f.title)?,
                evidence: f.evidence,
                fix: intern(f.fix)?,
                cis: f.cis.map(intern).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Report {
        time,
        checks,
        findings,
    })
}

/// How many distinct strings [`intern`] keeps: the audit's ids, titles, fixes, CIS items
/// and check names are constants of the binary (about a hundred); a report naming more is
/// refused rather than grow the daemon.
const INTERNED_MAX: usize = 1024;

/// A finding's constant text (its id, title, fix, CIS item; a check's name and status) as
/// the `&'static str` the in-process audit has: each distinct text is leaked once, and at
/// most [`INTERNED_MAX`] of them.
fn intern(s: String) -> Result<&'static str, String> {
    static TABLE: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashSet::new);
    if let Some(known) = table.get(s.as_str()) {
        return Ok(known);
    }
    if table.len() >= INTERNED_MAX || s.len() > 4096 {
        return Err(format!(
            "the audit process's report names more distinct ids, titles and fixes than the audit has ({INTERNED_MAX}), or one longer than 4096 bytes"
        ));
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    table.insert(leaked);
    Ok(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Observer, audit};

    fn report() -> Report {
        Report {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            checks: vec![Check {
                name: "listeners",
                status: "findings",
                detail: "2 listening sockets".into(),
            }],
            findings: vec![
                Finding::new(
                    "NM-2001",
                    Severity::High,
                    "kubelet read-only port open",
                    "listening: 0.0.0.0:10255/tcp".into(),
                    "set readOnlyPort: 0",
                    Some("4.2.4"),
                ),
                Finding::new(
                    "NM-2040",
                    Severity::Low,
                    "port open",
                    "tcp/10250".into(),
                    "load rules",
                    None,
                ),
            ],
        }
    }

    #[test]
    fn the_json_report_reads_back_as_it_was() {
        let r = report();
        let text = audit::render(&r, audit::Format::Json, &Observer::local());
        let back = parse_report(&text).unwrap();
        assert_eq!(back.time, r.time);
        assert_eq!(back.checks, r.checks);
        assert_eq!(back.findings, r.findings);
    }

    #[test]
    fn malformed_reports_are_errors() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"time":"x","checks":[],"findings":[]}"#,
            r#"{"time":"2026-01-01T00:00:00Z","checks":[],"findings":[{"id":"NM-2001"}]}"#,
            r#"{"time":"2026-01-01T00:00:00Z","checks":[],"findings":[{"id":"NM-2001","severity":"dire","title":"t","evidence":"e","fix":"f"}]}"#,
        ] {
            assert!(parse_report(bad).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"time":"2026-01-01T00:00:00Z","checks":[{{"name":"{}","status":"ok","detail":""}}],"findings":[]}}"#,
            "x".repeat(5000)
        );
        assert!(parse_report(&long).unwrap_err().contains("4096"));
    }

    #[test]
    fn a_job_loads_the_daemons_config_or_refuses() {
        let cfg = Config::default_config();
        let job = |digest: String| Job {
            config_path: None,
            config_yaml: None,
            config_digest: digest,
            node_subnets: vec!["198.51.100.0/24".parse().unwrap()],
            pin_dir: None,
            kubelet_config: Some("/nonexistent/kubelet.yaml".into()),
            apiserver_manifest: None,
            identity: WireIdentity::Unavailable("none".into()),
            timeout_s: 5,
        };
        let o = options(job(cfg.digest())).unwrap();
        assert_eq!(o.config.digest(), cfg.digest());
        assert!(!o.tool_groups);
        assert_eq!(o.node_subnets, vec!["198.51.100.0/24".parse().unwrap()]);
        let with = cfg.clone().with_cluster_defaults();
        assert_eq!(
            options(job(with.digest())).unwrap().config.digest(),
            with.digest()
        );
        let e = options(job("0".repeat(64))).unwrap_err();
        assert!(e.contains("not the one the daemon runs"), "{e}");
        // Through JSON, as the daemon writes it.
        let j = job(cfg.digest());
        let back: Job = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn a_job_uses_the_text_in_force_not_the_file_on_disk() {
        let yaml = crate::config::DEFAULT_CONFIG_YAML
            .replace("answer_timeout_ms: 1000", "answer_timeout_ms: 1500");
        assert_ne!(
            yaml,
            crate::config::DEFAULT_CONFIG_YAML,
            "the default config changed: pick another field"
        );
        let cfg = Config::from_yaml(&yaml, "test").unwrap();
        let path = std::env::temp_dir().join(format!("nm-child-{}.yaml", uuid::Uuid::new_v4()));
        // The file on disk is broken since the daemon loaded it.
        std::fs::write(&path, "groups: [").unwrap();
        let job = Job {
            config_path: Some(path.clone()),
            config_yaml: Some(yaml.clone()),
            config_digest: cfg.digest(),
            node_subnets: Vec::new(),
            pin_dir: None,
            kubelet_config: None,
            apiserver_manifest: None,
            identity: WireIdentity::Unavailable("none".into()),
            timeout_s: 5,
        };
        let o = options(job.clone()).unwrap();
        assert_eq!(o.config.digest(), cfg.digest());
        assert_eq!(o.config.limits.answer_timeout_ms, 1500);
        // Text that does not parse (never what a daemon hands over) is a failed run that
        // names the file.
        let e = options(Job {
            config_yaml: Some("groups: [".into()),
            ..job
        })
        .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            e.contains(&path.display().to_string()) && e.contains("does not parse"),
            "{e}"
        );
    }
}
