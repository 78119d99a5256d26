//! Live config reload: validate everything that can fail before anything changes, then
//! apply only what the reload plan says changed.

use tracing::{error, info, warn};

use super::{Daemon, sweep_groups};
use crate::{
    config::{AttachMode, Config},
    metrics,
};

impl Daemon {
    pub(super) async fn reload(&mut self, why: &str) {
        let Some(path) = self.opts.config_path.clone() else {
            warn!(
                why,
                "reload asked, but the daemon runs on the embedded config: nothing to re-read"
            );
            return;
        };
        let (new, text) = match Config::load_with_text(&path) {
            Ok(c) => c,
            Err(errors) => {
                self.stats.config_reloads_failed += 1;
                // One log line per error, each with its file:line:column and field.
                for e in &errors {
                    error!(why, error = %e, "config reload rejected; the running config stays");
                }
                return;
            }
        };
        let plan = self.cfg.reload_plan(&new);
        if plan.is_noop() {
            info!(why, "config unchanged");
            return;
        }
        // Everything that can fail is tried before anything changes: sinks first (they are
        // opened), then the data path (validated before any map is written).
        if plan.sinks
            && let Err(e) = self.sinks.reconfigure(&new.sinks).await
        {
            self.stats.config_reloads_failed += 1;
            error!(why, error = %e, "config reload rejected (sinks); the running config stays");
            return;
        }
        let sets = self.set_values(&new);
        if plan.datapath
            && let Err(e) = self.dp.apply_config_with(&new, &sets)
        {
            self.stats.config_reloads_failed += 1;
            error!(why, error = %e, "config reload rejected (data path); the running config stays");
            if plan.sinks {
                let _ = self.sinks.reconfigure(&self.cfg.sinks).await;
            }
            return;
        }
        if plan.answer_timeout {
            self.tracker.set_timeout(new.limits.answer_timeout_ms);
        }
        if plan.alerts {
            self.engine.set_settings(&new.alerts, sweep_groups(&new));
        }
        if plan.interfaces && !self.cli_ifaces {
            // The next housekeeping round attaches what now matches and detaches the rest.
            self.ifaces.set_patterns(new.interfaces.clone());
        }
        if plan.pod_interfaces {
            // The next housekeeping round attaches what now matches and detaches the rest.
            self.pod_ifaces.set_patterns(new.pod_interfaces.clone());
        }
        if plan.reattach && self.opts.attach.is_none() {
            self.reattach(new.attach.unwrap_or(AttachMode::Xdp));
        }
        let listen = self.opts.metrics_addr.unwrap_or(new.metrics.listen);
        if plan.metrics && listen == self.server.listen() {
            // Same address: new TLS and authentication settings for the next connections.
            if let Err(e) = self.server.protect(&new.metrics) {
                error!(error = %e, "cannot apply the new metrics endpoint settings; the old ones stay");
            }
        } else if plan.metrics {
            match metrics::Server::start(listen, &new.metrics, &self.metrics).await {
                Ok(server) => {
                    let old = std::mem::replace(&mut self.server, server);
                    info!(from = %old.listen(), to = %new.metrics.listen, "metrics endpoint moved");
                    // Off the event loop: the old server gives requests in flight its stop
                    // grace, then cuts them; nothing here waits on its clients.
                    tokio::spawn(old.stop());
                }
                Err(e) => {
                    error!(error = %e, "cannot move the metrics endpoint; it stays on {}", self.server.listen());
                }
            }
        }
        if plan.audit {
            self.audit.set_settings(new.audit.clone());
        }
        if !plan.restart_required.is_empty() {
            warn!(fields = ?plan.restart_required, "these settings take effect at the next restart; everything else is applied");
        }
        self.stats.config_reloads_ok += 1;
        info!(why, digest = %new.digest(), "config reloaded; maps rewritten in place, counters kept");
        self.cfg = new;
        self.cfg_text = Some(text);
        if plan.datapath {
            self.applied_sets = sets;
        }
        self.update_metrics(false);
    }

    /// Detaches every interface and attaches it again with `mode` (the `attach` setting
    /// changed). Each interface is unwatched for the moment between the two.
    fn reattach(&mut self, mode: AttachMode) {
        self.mode = mode;
        for iface in self.attached.clone() {
            self.dp.detach_iface(&iface);
            if let Err(e) = self.dp.attach(&iface, mode) {
                error!(iface, error = %e, "re-attaching with the new hook failed");
                self.attached.remove(&iface);
            }
        }
        info!(?mode, "re-attached with the new hook");
    }
}
