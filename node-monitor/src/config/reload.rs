//! Reload plans: what applying a new config over the running one involves.

use super::model::{AttachMode, Config};

/// What applying a new config over the running one involves: see [`Config::reload_plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Changed fields that only take effect at the next restart (kernel map sizes: the maps
    /// are created at load). The running values stay in force; report these as
    /// "restart required" in the reload result.
    pub restart_required: Vec<&'static str>,
    /// Groups, sampling or the runtime limits changed: rewrite the maps
    /// (`Datapath::apply_config`); programs stay attached.
    pub datapath: bool,
    /// `limits.answer_timeout_ms` changed: the userspace answer tracker takes the new value.
    pub answer_timeout: bool,
    /// `attach` changed: detach and re-attach every interface with the new hook.
    pub reattach: bool,
    /// `interfaces` changed: give the new patterns to the interface watcher.
    pub interfaces: bool,
    /// `pod_interfaces` changed: give the new patterns to the pods' interface watcher.
    pub pod_interfaces: bool,
    /// `alerts` changed (or a group's `detect_sweeps`, which is also in `datapath`).
    pub alerts: bool,
    /// `sinks` changed: reconfigure the outputs.
    pub sinks: bool,
    /// `metrics` changed: rebind the endpoint (a new `listen`), or give the next connections
    /// its new TLS and authentication settings (same address).
    pub metrics: bool,
    /// `audit` changed: the next run follows the new settings (a new interval starts now).
    pub audit: bool,
}

impl ReloadPlan {
    /// Nothing differs.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        *self == ReloadPlan::default()
    }
}

impl Config {
    /// The fields of `limits` that size kernel maps: a change needs a restart.
    pub const RESTART_REQUIRED_FIELDS: [&'static str; 4] = [
        "limits.flows",
        "limits.sources",
        "limits.ring_buffer_bytes",
        "limits.allow_entries",
    ];

    /// How to go from the running config (`self`) to `next`. Everything is reloadable in
    /// place except the map sizes in [`Config::RESTART_REQUIRED_FIELDS`].
    #[must_use]
    pub fn reload_plan(&self, next: &Config) -> ReloadPlan {
        let (a, b) = (&self.limits, &next.limits);
        let mut restart_required = Vec::new();
        for (field, changed) in Config::RESTART_REQUIRED_FIELDS.into_iter().zip([
            a.flows != b.flows,
            a.sources != b.sources,
            a.ring_buffer_bytes != b.ring_buffer_bytes,
            a.allow_entries != b.allow_entries,
        ]) {
            if changed {
                restart_required.push(field);
            }
        }
        let sweeps = |c: &Config| {
            c.groups
                .iter()
                .map(|g| (g.name.clone(), g.detect_sweeps))
                .collect::<Vec<_>>()
        };
        // The watches and their credentials are set up at start.
        if self.cluster != next.cluster {
            restart_required.push("cluster");
        }
        ReloadPlan {
            restart_required,
            datapath: self.groups != next.groups
                || self.sampling != next.sampling
                || a.events_per_source_per_second != b.events_per_source_per_second
                || a.events_per_group_per_second != b.events_per_group_per_second
                || a.flow_idle_timeout_ms != b.flow_idle_timeout_ms,
            answer_timeout: a.answer_timeout_ms != b.answer_timeout_ms,
            reattach: self.attach.unwrap_or(AttachMode::Xdp)
                != next.attach.unwrap_or(AttachMode::Xdp),
            interfaces: self.interfaces != next.interfaces,
            pod_interfaces: self.pod_interfaces != next.pod_interfaces,
            alerts: self.alerts != next.alerts || sweeps(self) != sweeps(next),
            sinks: self.sinks != next.sinks,
            metrics: self.metrics != next.metrics,
            audit: self.audit != next.audit,
        }
    }
}
