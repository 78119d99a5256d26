//! The metrics endpoint against real peers: Debian's `promtool` lints the exposition, a
//! real `prometheus` scrapes `serve` over loopback, and raw HTTP requests check routes,
//! readiness and content negotiation; the endpoint over TLS with a client CA and a bearer
//! token, scraped by Prometheus with and without credentials. Servers bind to 127.0.0.1 only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a test fails loudly on what it did not expect"
)]

#[path = "../common"]
mod common {
    #[allow(
        dead_code,
        reason = "this binary uses only the chunked-body decoder of the HTTP helpers"
    )]
    pub(crate) mod http;
    #[allow(dead_code, reason = "this binary needs a free TCP port only")]
    pub(crate) mod ports;
    #[allow(dead_code, reason = "this binary needs temporary directories only")]
    pub(crate) mod temp;
}

mod fixture;
mod serve;

mod bpf_stats;
mod exposition;
mod limits;
mod prometheus;
mod tls;
