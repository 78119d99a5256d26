//! The canonical text form of a config and its digest: two configs that mean the same thing
//! have the same form, whatever their YAML layout.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{
    model::{AttachMode, Config},
    outputs::{ClientTls, SinkKind},
};

impl Config {
    /// A canonical, line-oriented text form of the config: what [`Config::digest`] hashes.
    /// Two configs that mean the same thing (whatever their YAML layout, comments or quoting)
    /// have the same canonical form.
    #[must_use]
    pub fn canonical(&self) -> String {
        fn join<T: fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        let mut out = String::from("node-monitor-config/3\n");
        for g in &self.groups {
            out.push_str(&format!(
                "group {} {} protocols={} ports={} allow={} action={} detect_sweeps={}\n",
                g.id,
                g.name,
                join(&g.protocols),
                join(&g.ports),
                join(&g.allow),
                g.action,
                g.detect_sweeps
            ));
        }
        out.push_str(&format!(
            "sampling allowed_flows_one_in={}\n",
            self.sampling.allowed_flows_one_in
        ));
        let l = &self.limits;
        out.push_str(&format!(
            "limits flows={} events_per_source_per_second={} answer_timeout_ms={} \
             flow_idle_timeout_ms={} sources={} ring_buffer_bytes={} allow_entries={} \
             events_per_group_per_second={}\n",
            l.flows,
            l.events_per_source_per_second,
            l.answer_timeout_ms,
            l.flow_idle_timeout_ms,
            l.sources,
            l.ring_buffer_bytes,
            l.allow_entries,
            l.events_per_group_per_second
        ));
        out.push_str(&format!(
            "interfaces {}\n",
            if self.interfaces.is_empty() {
                "(default-route)".to_owned()
            } else {
                self.interfaces.join(",")
            }
        ));
        out.push_str(&format!(
            "pod_interfaces {}\n",
            if self.pod_interfaces.is_empty() {
                "(none)".to_owned()
            } else {
                self.pod_interfaces.join(",")
            }
        ));
        out.push_str(&format!(
            "attach {}\n",
            self.attach.map_or("(default)", AttachMode::name)
        ));
        let a = &self.alerts;
        out.push_str(&format!(
            "alerts dedup_window_s={} sweep_min_ports={} sweep_window_s={} flood_window_s={}\n",
            a.dedup_window.as_secs(),
            a.sweep_min_ports,
            a.sweep_window.as_secs(),
            a.flood_window.as_secs()
        ));
        out.push_str(&format!(
            "alerts scan_min_ports={} scan_window_s={} connection_alerts_per_group={}\n",
            a.scan_min_ports,
            a.scan_window.as_secs(),
            a.connection_alerts_per_group
        ));
        for s in &self.sinks {
            out.push_str(&format!(
                "sink {} type={} format={} queue={} flows={}",
                s.name,
                s.kind.type_name(),
                s.format,
                s.queue,
                s.flows
            ));
            match &s.kind {
                SinkKind::Stdout => {}
                SinkKind::File {
                    path,
                    max_size_bytes,
                    keep,
                } => out.push_str(&format!(
                    " path={} max_size_bytes={max_size_bytes} keep={keep}",
                    path.display()
                )),
                SinkKind::Syslog { transport, tls } => {
                    out.push_str(&format!(" address={transport}"));
                    push_client_tls(&mut out, tls);
                }
                SinkKind::Http {
                    url,
                    batch_max,
                    batch_interval,
                    timeout,
                    max_retries,
                    headers,
                    tls,
                    bearer_token_file,
                } => {
                    // Header values are often secrets: the canonical form carries a hash of
                    // each, which is enough for the digest to change when one does.
                    let headers: Vec<String> = headers
                        .iter()
                        .map(|(n, v)| {
                            let h = Sha256::digest(v.as_bytes());
                            let h: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
                            format!("{}:sha256:{h}", n.to_ascii_lowercase())
                        })
                        .collect();
                    out.push_str(&format!(
                        " url={url} batch_max={batch_max} batch_interval_ms={} timeout_ms={} \
                         max_retries={max_retries} headers={}",
                        batch_interval.as_millis(),
                        timeout.as_millis(),
                        headers.join(",")
                    ));
                    push_client_tls(&mut out, tls);
                    if let Some(f) = bearer_token_file {
                        out.push_str(&format!(" bearer_token_file={}", f.display()));
                    }
                }
            }
            out.push('\n');
        }
        // TLS and token files by path only: what they hold is secret, and is re-read when it
        // changes without being a config change.
        let m = &self.metrics;
        out.push_str(&format!("metrics listen={}", m.listen));
        if let Some(t) = &m.tls {
            out.push_str(&format!(
                " tls_cert_file={} tls_key_file={}",
                t.cert.display(),
                t.key.display()
            ));
            if let Some(ca) = &t.client_ca {
                out.push_str(&format!(" tls_client_ca_file={}", ca.display()));
            }
        }
        if let Some(f) = &m.bearer_token_file {
            out.push_str(&format!(" bearer_token_file={}", f.display()));
        }
        out.push('\n');
        let c = &self.cluster;
        out.push_str(&format!(
            "cluster enabled={} node_name={} resync_s={} stale_after_s={} node_port_also_allow={}\n",
            c.enabled,
            c.node_name.as_deref().unwrap_or("(env-or-hostname)"),
            c.resync.as_secs(),
            c.stale_after.as_secs(),
            c.node_port_also_allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
        // Only when set: the canonical form (and digest) of a config without `audit` is what
        // it always was.
        let a = &self.audit;
        if *a != super::AuditSettings::DEFAULT {
            out.push_str(&format!(
                "audit interval_s={} timeout_s={} min_severity={} kubelet_config={} apiserver_manifest={}\n",
                a.interval.map_or(0, |i| i.as_secs()),
                a.timeout.as_secs(),
                a.min_severity,
                a.kubelet_config.as_ref().map_or_else(|| "(default)".into(), |p| p.display().to_string()),
                a.apiserver_manifest.as_ref().map_or_else(|| "(default)".into(), |p| p.display().to_string()),
            ));
        }
        out
    }

    /// A short stable digest for logs: the first 16 hex digits of the SHA-256 of
    /// [`Config::canonical`].
    #[must_use]
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.canonical().as_bytes());
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// The TLS files of a sink, by path (nothing when none is set, so that the canonical form of
/// a sink without TLS is what it always was).
fn push_client_tls(out: &mut String, tls: &ClientTls) {
    if let Some(ca) = &tls.ca_file {
        out.push_str(&format!(" tls_ca_file={}", ca.display()));
    }
    if let Some((cert, key)) = &tls.cert_and_key {
        out.push_str(&format!(
            " tls_cert_file={} tls_key_file={}",
            cert.display(),
            key.display()
        ));
    }
    if let Some(name) = &tls.server_name {
        out.push_str(&format!(" tls_server_name={name}"));
    }
}
