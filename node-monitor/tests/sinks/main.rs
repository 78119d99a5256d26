//! Output sinks against real peers on loopback: files with rotation, a real rsyslogd over
//! UDP, TCP, TLS and a unix socket, an axum HTTP receiver (and an HTTPS one that requires a
//! client certificate and a bearer token) that accepts, fails, hangs or is gone.
//! A trivial renderer (the alert id, the format) keeps these tests off the SIEM formats.
//! Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a test fails loudly on what it did not expect"
)]

#[path = "../common"]
mod common {
    pub(crate) mod ports;
    pub(crate) mod receivers;
    #[allow(dead_code, reason = "this binary needs temporary directories only")]
    pub(crate) mod temp;
    pub(crate) mod tls;
    pub(crate) mod wait;
}

mod fixture;

mod backpressure;
mod file;
mod http;
mod lifecycle;
mod syslog;
mod tls;
