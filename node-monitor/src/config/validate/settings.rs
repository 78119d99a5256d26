//! Validation of `interfaces`, `pod_interfaces`, `attach`, `alerts` and `metrics`.

use serde_saphyr::Spanned;

use super::{Bound, Validator};
use crate::config::{
    iface::{check_iface_pattern, check_pod_iface_pattern},
    model::{AlertSettings, AttachMode, DEFAULT_POD_INTERFACES, MetricsSettings},
    raw::{RawAlerts, RawMetrics},
};

const ALERT_DEDUP_WINDOW: Bound = Bound {
    field: "dedup_window_s",
    min: 1,
    max: 86_400,
    note: "",
    power_of_two: false,
};
const SWEEP_MIN_PORTS: Bound = Bound {
    field: "min_ports",
    min: 2,
    max: 65_535,
    note: "",
    power_of_two: false,
};
const SWEEP_WINDOW: Bound = Bound {
    field: "window_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};
/// At most 64: the scan detector keeps up to `min_ports` ports per tracked source, so this
/// bounds its memory (see `detect::scan`).
const SCAN_MIN_PORTS: Bound = Bound {
    field: "min_ports",
    min: 2,
    max: 64,
    note: " (the scan detector keeps this many ports per source)",
    power_of_two: false,
};
const SCAN_WINDOW: Bound = Bound {
    field: "window_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};
const FLOOD_WINDOW: Bound = Bound {
    field: "flood_window_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};

const CONNECTION_ALERTS_PER_GROUP: Bound = Bound {
    field: "connection_alerts_per_group",
    min: 0,
    max: 1_000_000,
    note: "",
    power_of_two: false,
};

impl Validator<'_> {
    /// The patterns, each bad one reported.
    pub(super) fn interfaces(&self, raw: Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
        raw.map_or_else(Vec::new, |raw| {
            self.iface_patterns("interfaces", raw, check_iface_pattern)
        })
    }

    /// The pods' interface patterns, each bad one reported (`default-route` among them: the
    /// uplinks are `interfaces`); absent: the CNI defaults.
    pub(super) fn pod_interfaces(&self, raw: Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
        raw.map_or_else(
            || DEFAULT_POD_INTERFACES.map(str::to_owned).to_vec(),
            |raw| self.iface_patterns("pod_interfaces", raw, check_pod_iface_pattern),
        )
    }

    fn iface_patterns(
        &self,
        field: &str,
        raw: Spanned<Vec<Spanned<String>>>,
        check: fn(&str) -> Result<(), String>,
    ) -> Vec<String> {
        raw.value
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let checked = check(&p.value)
                    .map_err(|m| self.error(Some(p.referenced), format!("{field}[{i}]"), m));
                self.check(checked).map(|()| p.value)
            })
            .collect()
    }

    pub(super) fn attach(&self, raw: Option<Spanned<String>>) -> Option<AttachMode> {
        let a = raw?;
        let mode = AttachMode::from_name(&a.value).ok_or_else(|| {
            self.error(
                Some(a.referenced),
                "attach",
                format!(
                    "unknown attach mode `{}`: expected one of {}",
                    a.value,
                    AttachMode::ALL.map(AttachMode::name).join(", ")
                ),
            )
        });
        self.check(mode)
    }

    pub(super) fn alerts(&self, raw: Option<RawAlerts>) -> AlertSettings {
        let d = AlertSettings::DEFAULT;
        let Some(raw) = raw else {
            return d;
        };
        let secs = std::time::Duration::from_secs;
        let (min_ports, window_s) = match raw.sweep {
            None => (None, None),
            Some(s) => (s.min_ports, s.window_s),
        };
        let (scan_min_ports, scan_window_s) = match raw.scan {
            None => (None, None),
            Some(s) => (s.min_ports, s.window_s),
        };
        AlertSettings {
            dedup_window: secs(self.opt_u64(
                "alerts",
                &ALERT_DEDUP_WINDOW,
                raw.dedup_window_s,
                d.dedup_window.as_secs(),
            )),
            sweep_min_ports: self.opt_u32(
                "alerts.sweep",
                &SWEEP_MIN_PORTS,
                min_ports,
                d.sweep_min_ports,
            ),
            sweep_window: secs(self.opt_u64(
                "alerts.sweep",
                &SWEEP_WINDOW,
                window_s,
                d.sweep_window.as_secs(),
            )),
            scan_min_ports: self.opt_u32(
                "alerts.scan",
                &SCAN_MIN_PORTS,
                scan_min_ports,
                d.scan_min_ports,
            ),
            scan_window: secs(self.opt_u64(
                "alerts.scan",
                &SCAN_WINDOW,
                scan_window_s,
                d.scan_window.as_secs(),
            )),
            flood_window: secs(self.opt_u64(
                "alerts",
                &FLOOD_WINDOW,
                raw.flood_window_s,
                d.flood_window.as_secs(),
            )),
            connection_alerts_per_group: self.opt_u32(
                "alerts",
                &CONNECTION_ALERTS_PER_GROUP,
                raw.connection_alerts_per_group,
                d.connection_alerts_per_group,
            ),
        }
    }

    pub(super) fn metrics(&self, raw: Option<RawMetrics>) -> MetricsSettings {
        let Some(raw) = raw else {
            return MetricsSettings::DEFAULT;
        };
        let listen = raw.listen.and_then(|listen| {
            let text = listen.value.trim();
            let addr = text.parse::<std::net::SocketAddr>().map_err(|_| {
                self.error(
                    Some(listen.referenced),
                    "metrics.listen",
                    format!(
                        "`{text}` is not a socket address: write IP:PORT, such as 127.0.0.1:9630, \
                         0.0.0.0:9630 or [::]:9630 (host names are not resolved)"
                    ),
                )
            });
            self.check(addr)
        });
        MetricsSettings {
            listen: listen.unwrap_or(MetricsSettings::DEFAULT.listen),
            tls: raw.tls.and_then(|t| self.server_tls(t)),
            bearer_token_file: raw
                .bearer_token_file
                .and_then(|f| self.token_file("metrics.bearer_token_file", &f)),
        }
    }
}
