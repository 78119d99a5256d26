//! The test data path's configuration: four groups (monitor, drop, UDP, a per-group
//! allowlist), the knobs the tests vary, and the harness built from them.

use node_monitor::config::Protocol;
use node_monitor_common::{VERDICT_ALLOWED, VERDICT_DENIED};

use crate::common::progrun::Harness;

/// TCP, monitor, allows the ALLOWED_* /24 and /64.
pub(crate) const KUBELET: u16 = 10250;
/// TCP and UDP, action: drop, allows the ALLOWED_* /24 and /64.
pub(crate) const ENFORCED: u16 = 2379;
/// UDP, monitor, allows the ALLOWED_* /24 and /64.
pub(crate) const UDP_SVC: u16 = 4789;
/// TCP, monitor, allows the DENIED_* /24 and /64 (and not ALLOWED_*): per-group lists.
pub(crate) const STRICT: u16 = 6443;
/// Watched by no group.
pub(crate) const UNWATCHED: u16 = 8080;

pub(crate) const TCP: Protocol = Protocol::Tcp;
pub(crate) const UDP: Protocol = Protocol::Udp;
pub(crate) const A: u8 = VERDICT_ALLOWED;
pub(crate) const D: u8 = VERDICT_DENIED;

/// Knobs the tests vary.
#[derive(Clone, Copy)]
pub(crate) struct Knobs {
    pub(crate) sample_one_in: u32,
    pub(crate) events_per_sec: u32,
    pub(crate) ring_bytes: u32,
    pub(crate) idle_ms: u64,
    /// `limits.events_per_group_per_second`.
    pub(crate) events_per_group: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        // Every allowed flow sampled, no rate limit, no group budget: each new connection
        // yields one event.
        Knobs {
            sample_one_in: 1,
            events_per_sec: 0,
            ring_bytes: 1 << 20,
            idle_ms: 30_000,
            events_per_group: 0,
        }
    }
}

pub(crate) fn yaml(k: Knobs) -> String {
    format!(
        r#"
groups:
  kubelet:
    protocols: [tcp]
    ports: ["{KUBELET}"]
    allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]
    action: monitor
  enforced:
    protocols: [tcp, udp]
    ports: ["{ENFORCED}"]
    allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]
    action: drop
  udp-svc:
    protocols: [udp]
    ports: ["{UDP_SVC}"]
    allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]
    action: monitor
  strict:
    protocols: [tcp]
    ports: ["{STRICT}"]
    allow: ["198.51.100.0/24", "2001:db8:0:100::/64"]
    action: monitor
sampling:
  allowed_flows_one_in: {}
limits:
  flows: 4096
  sources: 256
  allow_entries: 64
  events_per_source_per_second: {}
  ring_buffer_bytes: {}
  flow_idle_timeout_ms: {}
  events_per_group_per_second: {}
"#,
        k.sample_one_in, k.events_per_sec, k.ring_bytes, k.idle_ms, k.events_per_group
    )
}

pub(crate) fn harness() -> Harness {
    Harness::yaml(&yaml(Knobs::default()))
}

pub(crate) fn harness_with(k: Knobs) -> Harness {
    Harness::yaml(&yaml(k))
}
