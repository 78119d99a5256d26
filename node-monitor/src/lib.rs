//! node-monitor: an eBPF network flow monitor for the ports that protect a Kubernetes node.
//!
//! One straight path, one module each: `config` → `datapath` (load, attach, pin, write maps,
//! read counters, ring buffer) → `flows` (answer tracking) → `output` (JSON lines).
pub mod alerts;
pub mod config;
pub mod datapath;
pub mod events;
pub mod flows;
pub mod metrics;
pub mod netif;
pub mod daemon;
pub mod sinks;
pub mod watch;
