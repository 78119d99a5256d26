//! The `audit:` section: the node posture audit (`crate::posture`) that the daemon runs at
//! start and then every `interval_s`, its findings sent through the sinks and counted in the
//! metrics. `node-monitor audit` runs the same checks once, from the command line.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// How bad a finding is; ordered. The posture audit's severity (`crate::posture::Severity`),
/// defined here so that the config can name a minimum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl FindingSeverity {
    pub const ALL: [FindingSeverity; 5] = [
        FindingSeverity::Info,
        FindingSeverity::Low,
        FindingSeverity::Medium,
        FindingSeverity::High,
        FindingSeverity::Critical,
    ];

    /// The one spelling: YAML, metrics labels, and every output format.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingSeverity::Info => "info",
            FindingSeverity::Low => "low",
            FindingSeverity::Medium => "medium",
            FindingSeverity::High => "high",
            FindingSeverity::Critical => "critical",
        }
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<FindingSeverity> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for FindingSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated `audit:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Run at start and then this often; `None`: the daemon does not audit (`enabled: false`
    /// or `interval_s: 0`). Default 1 h; `10..=604_800` s.
    pub interval: Option<Duration>,
    /// One run at most: a run still going after this is abandoned and counted as failed.
    /// Default 60 s; `5..=600`, and no longer than the interval.
    pub timeout: Duration,
    /// Findings below this severity are not sent to the sinks (the metrics count every
    /// finding). Default `info` (all).
    pub min_severity: FindingSeverity,
    /// The kubelet config file; `None`: the running kubelet's `--config`, else
    /// `/var/lib/kubelet/config.yaml` when present.
    pub kubelet_config: Option<PathBuf>,
    /// The API server's static-pod manifest; `None`:
    /// `/etc/kubernetes/manifests/kube-apiserver.yaml` when present.
    pub apiserver_manifest: Option<PathBuf>,
}

impl AuditSettings {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

    pub const DEFAULT: AuditSettings = AuditSettings {
        interval: Some(Self::DEFAULT_INTERVAL),
        timeout: Duration::from_secs(60),
        min_severity: FindingSeverity::Info,
        kubelet_config: None,
        apiserver_manifest: None,
    };
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}
