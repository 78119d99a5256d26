//! Tier 3: the real daemon in a lab network namespace, real traffic from other namespaces
//! over veth, real peers (std sockets with explicit source ports, curl, nmap, Prometheus and
//! promtool).
//!
//! The daemon's stdout carries what its sinks render: with the test configs, one stdout sink
//! in ECS (alerts with `event.kind: alert`, sampled allowed flows with `event.kind: event`).
//! Alerts are deduplicated per (rule, source address, group) within `alerts.dedup_window_s`:
//! tests that expect one alert per attempt use a distinct source address per attempt of a
//! group; the others assert the follow-up's `suppressed_count`. The final counters line is
//! the last line of stderr.
//!
//! Needs root, iproute2, util-linux (nsenter), iputils-ping, curl, nmap, prometheus and
//! promtool, hping3; fails (never skips) without them. Every test builds its own lab, pin directory
//! and metrics port, removed by guards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a test fails loudly on what it did not expect"
)]

#[path = "../common"]
mod common {
    pub(crate) mod config;
    pub(crate) mod counters;
    pub(crate) mod daemon;
    pub(crate) mod http;
    pub(crate) mod peers;
    #[allow(
        dead_code,
        reason = "these tests name files in their temp dirs, never the dir itself"
    )]
    pub(crate) mod temp;
}

mod expect;
mod fake_cluster;
mod poll;
mod readonly;
mod setup;

mod cli;
mod deploy;
mod enforcement;
mod evasion;
mod floods;
mod formats;
mod hotplug;
mod identity;
mod integrity;
mod metrics_tls;
mod modes;
mod node_port_ranges;
mod opener;
mod pinning;
mod posture;
mod posture_daemon;
mod prometheus;
mod reload;
mod rules;
mod scans;
