//! Validation of `audit`.

use std::{path::PathBuf, time::Duration};

use super::{Bound, Validator};
use crate::config::{
    audit::{AuditSettings, FindingSeverity},
    raw::RawAudit,
};

const INTERVAL: Bound = Bound {
    field: "interval_s",
    min: 10,
    max: 604_800,
    note: " (or 0 to turn the periodic audit off)",
    power_of_two: false,
};
const TIMEOUT: Bound = Bound {
    field: "timeout_s",
    min: 5,
    max: 600,
    note: "",
    power_of_two: false,
};

impl Validator<'_> {
    pub(super) fn audit(&self, raw: Option<RawAudit>) -> AuditSettings {
        let d = AuditSettings::DEFAULT;
        let Some(raw) = raw else {
            return d;
        };
        let enabled = raw.enabled.is_none_or(|e| e.value);
        let interval_at = raw.interval_s.as_ref().map(|v| v.referenced);
        let interval = match raw.interval_s {
            Some(v) if v.value == 0 => None,
            v => Some(Duration::from_secs(self.opt_u64(
                "audit",
                &INTERVAL,
                v,
                AuditSettings::DEFAULT_INTERVAL.as_secs(),
            ))),
        };
        let timeout_at = raw.timeout_s.as_ref().map(|v| v.referenced);
        let timeout = Duration::from_secs(self.opt_u64(
            "audit",
            &TIMEOUT,
            raw.timeout_s,
            d.timeout.as_secs(),
        ));
        if let Some(i) = interval
            && enabled
            && timeout > i
        {
            self.report(self.error(
                timeout_at.or(interval_at),
                "audit.timeout_s",
                format!(
                    "{} s is longer than audit.interval_s ({} s): a run must end before the next is due",
                    timeout.as_secs(),
                    i.as_secs()
                ),
            ));
        }
        let min_severity = raw.min_severity.and_then(|s| {
            let sev = FindingSeverity::from_name(&s.value).ok_or_else(|| {
                self.error(
                    Some(s.referenced),
                    "audit.min_severity",
                    format!(
                        "unknown severity `{}`: expected one of {}",
                        s.value,
                        FindingSeverity::ALL.map(FindingSeverity::as_str).join(", ")
                    ),
                )
            });
            self.check(sev)
        });
        let path = |field: &str, v: Option<serde_saphyr::Spanned<String>>| -> Option<PathBuf> {
            let v = v?;
            let checked = if v.value.is_empty() {
                Err(self.error(
                    Some(v.referenced),
                    format!("audit.{field}"),
                    "an empty path: leave the field out to use the default",
                ))
            } else if !v.value.starts_with('/') {
                Err(self.error(
                    Some(v.referenced),
                    format!("audit.{field}"),
                    format!(
                        "`{}` is not an absolute path (the daemon's working directory is not the config's)",
                        v.value
                    ),
                ))
            } else {
                Ok(PathBuf::from(v.value))
            };
            self.check(checked)
        };
        AuditSettings {
            interval: interval.filter(|_| enabled),
            timeout,
            min_severity: min_severity.unwrap_or(d.min_severity),
            kubelet_config: path("kubelet_config", raw.kubelet_config),
            apiserver_manifest: path("apiserver_manifest", raw.apiserver_manifest),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{AuditSettings, Config, FindingSeverity};

    fn err(yaml: &str) -> String {
        Config::from_yaml(yaml, "t.yaml")
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn defaults_and_values() {
        let d = Config::from_yaml("", "t").expect("config");
        assert_eq!(d.audit, AuditSettings::DEFAULT);
        assert_eq!(d.audit.interval, Some(Duration::from_secs(3600)));
        let c = Config::from_yaml(
            "audit:\n  interval_s: 120\n  timeout_s: 30\n  min_severity: medium\n  kubelet_config: /etc/k/config.yaml\n  apiserver_manifest: /etc/k/apiserver.yaml\n",
            "t",
        )
        .expect("config");
        assert_eq!(c.audit.interval, Some(Duration::from_secs(120)));
        assert_eq!(c.audit.timeout, Duration::from_secs(30));
        assert_eq!(c.audit.min_severity, FindingSeverity::Medium);
        assert_eq!(
            c.audit.kubelet_config.as_deref(),
            Some(std::path::Path::new("/etc/k/config.yaml"))
        );
        assert_ne!(c.digest(), d.digest(), "the digest follows the section");
        assert_eq!(
            Config::from_yaml("audit: {}\n", "t").expect("c").digest(),
            d.digest(),
            "an empty section is the default"
        );
    }

    #[test]
    fn a_change_is_reloaded_in_place() {
        let a = Config::from_yaml("", "t").expect("config");
        let b = Config::from_yaml("audit:\n  min_severity: high\n", "t").expect("config");
        let plan = a.reload_plan(&b);
        assert!(plan.audit && plan.restart_required.is_empty(), "{plan:?}");
        assert!(!plan.datapath && !plan.sinks);
        assert!(a.reload_plan(&a.clone()).is_noop());
    }

    #[test]
    fn off_by_enabled_or_zero_interval() {
        for y in [
            "audit:\n  enabled: false\n",
            "audit:\n  interval_s: 0\n",
            "audit:\n  enabled: false\n  interval_s: 60\n  timeout_s: 600\n",
        ] {
            let c = Config::from_yaml(y, "t").expect("config");
            assert_eq!(c.audit.interval, None, "{y}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let e = err("audit:\n  interval_s: 5\n");
        assert!(
            e.contains("t.yaml:2:15")
                && e.contains("audit.interval_s")
                && e.contains("or 0 to turn"),
            "{e}"
        );
        let e = err("audit:\n  interval_s: 10\n  timeout_s: 30\n");
        assert!(
            e.contains("audit.timeout_s") && e.contains("longer than audit.interval_s"),
            "{e}"
        );
        let e = err("audit:\n  min_severity: severe\n");
        assert!(
            e.contains("audit.min_severity") && e.contains("info, low, medium, high, critical"),
            "{e}"
        );
        let e = err("audit:\n  kubelet_config: config.yaml\n");
        assert!(
            e.contains("audit.kubelet_config") && e.contains("not an absolute path"),
            "{e}"
        );
        let e = err("audit:\n  intervall_s: 60\n");
        assert!(e.contains("intervall_s"), "{e}");
        let e = err("audit:\n  enabled: maybe\n");
        assert!(e.contains("audit.enabled") || e.contains("enabled"), "{e}");
    }
}
