//! node-monitor: an eBPF network flow monitor for the ports that protect a Kubernetes node.
//!
//! One straight path, one module per stage, in the order a packet takes it:
//!
//! ```text
//! config ─► datapath (load, attach, pin, maps, counters, ring buffer)
//!        ─► record (ring-buffer bytes → typed flow records)
//!        ─► answers (accepted / refused / no answer)
//!        ─► detect (rules, dedup, sweeps, floods → alerts)
//!        ─► render (ECS | OCSF | CEF lines)
//!        ─► sinks (stdout, file, syslog, HTTP)
//! metrics (Prometheus)   watch (config file, interfaces)   daemon (wires them together)
//! ```
pub mod config;
pub mod datapath;
pub mod record;

pub mod answers;
pub mod cluster;
pub mod detect;
pub mod render;
pub mod sinks;
pub mod tls;

pub mod daemon;
pub mod firewall;
pub mod metrics;
pub mod netif;
pub mod posture;
pub mod watch;
