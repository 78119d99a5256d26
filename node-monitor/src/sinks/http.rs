//! The HTTP sink: batches of records POSTed as NDJSON (`Content-Type: application/x-ndjson`).
//!
//! A batch closes at `batch_max` records, or `batch_interval` after its first record. A
//! failed POST (connection error, timeout, 5xx, 408, 429) is retried with exponential backoff
//! (200 ms doubling, capped 10 s, equal jitter; a longer `Retry-After` in seconds is honoured
//! up to the cap) at most `max_retries` times, then the batch is dropped and each of its
//! records counted as `retries_exhausted`. Any other 4xx is not retried (`http_status`).
//! Redirects are never followed: a 3xx is a failure, not retried, counted as `redirect` (a
//! receiver, or whoever answers in its name, must not steer the alerts and the headers that
//! authenticate them to another URL).
//! While a batch is retried, new records wait in the sink's bounded queue; overflow counts as
//! `queue_full`.
use std::{sync::Arc, time::Duration};

use reqwest::{
    StatusCode, Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use tokio::sync::mpsc;

use super::{
    SinkError,
    accounting::{DropReason, Health},
    worker::{Ctx, backoff},
};
use crate::{
    config::{ClientTls, SinkKind, SinkSpec},
    detect::OutputItem,
    tls::{self, Reloading, TlsError, TokenFile},
};

pub(crate) const RETRY_BASE: Duration = Duration::from_millis(200);
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(10);
pub const NDJSON: &str = "application/x-ndjson";

pub(crate) struct HttpSender {
    client: Reloading<reqwest::Client>,
    /// `Authorization: Bearer` from this file, re-read when it changes.
    token: Option<TokenFile>,
    url: Url,
    batch_max: usize,
    batch_interval: Duration,
    max_retries: u32,
}

/// What became of one POST.
enum Outcome {
    Delivered,
    /// Worth another try, after at least this long (from `Retry-After`).
    Retry(String, Option<Duration>),
    /// Not worth another try.
    Rejected(String),
    /// A 3xx: not followed, not retried.
    Redirected(String),
}

impl HttpSender {
    /// Checks the URL and headers and builds the client: errors name the sink.
    pub(crate) fn new(spec: &SinkSpec) -> Result<HttpSender, SinkError> {
        let name = spec.name.as_str();
        let SinkKind::Http {
            url,
            batch_max,
            batch_interval,
            timeout,
            max_retries,
            headers,
            tls,
            bearer_token_file,
        } = &spec.kind
        else {
            return Err(SinkError::invalid(name, "not an http sink"));
        };
        let url = Url::parse(url)
            .map_err(|e| SinkError::invalid(name, format!("invalid url {url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(SinkError::invalid(
                name,
                format!("url {url} is not http(s)://HOST/..."),
            ));
        }
        if *batch_max == 0 {
            return Err(SinkError::invalid(name, "batch_max must be at least 1"));
        }
        if timeout.is_zero() {
            return Err(SinkError::invalid(name, "timeout must be above 0"));
        }
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let hk = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| SinkError::invalid(name, format!("invalid header name {k:?}: {e}")))?;
            let mut hv = HeaderValue::from_str(v).map_err(|e| {
                SinkError::invalid(name, format!("invalid value for header {k}: {e}"))
            })?;
            if hk == reqwest::header::AUTHORIZATION || k.to_ascii_lowercase().contains("key") {
                hv.set_sensitive(true);
            }
            if hk == CONTENT_TYPE {
                return Err(SinkError::invalid(
                    name,
                    "Content-Type is always application/x-ndjson",
                ));
            }
            map.append(hk, hv);
        }
        if !tls.is_empty() && url.scheme() != "https" {
            return Err(SinkError::invalid(
                name,
                "tls settings need an https:// URL",
            ));
        }
        let token = bearer_token_file
            .as_deref()
            .map(TokenFile::open)
            .transpose()
            .map_err(|e| SinkError::invalid(name, e.to_string()))?;
        // The client is built again when its CA or client certificate files change (a renewed
        // certificate applies to the next POST, without a reload).
        let files: Vec<std::path::PathBuf> = tls
            .ca_file
            .iter()
            .chain(tls.cert_and_key.iter().flat_map(|(c, k)| [c, k]))
            .cloned()
            .collect();
        let (tls, timeout) = (tls.clone(), *timeout);
        let client = Reloading::new("http sink TLS files", files, move || {
            build_client(&tls, map.clone(), timeout)
        })
        .map_err(|e| SinkError::invalid(name, e.to_string()))?;
        Ok(HttpSender {
            client,
            token,
            url,
            batch_max: *batch_max,
            batch_interval: *batch_interval,
            max_retries: *max_retries,
        })
    }

    /// Collects one batch: waits for a first record, then for more until `batch_max` records
    /// or `batch_interval` since the first (or the queue closes).
    async fn next_batch(
        &self,
        rx: &mut mpsc::Receiver<Arc<OutputItem>>,
        ctx: &Ctx,
    ) -> Option<Vec<Arc<OutputItem>>> {
        let first = rx.recv().await?;
        ctx.counters.taken(1);
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + self.batch_interval;
        while batch.len() < self.batch_max {
            // Take what is already queued without waiting.
            match rx.try_recv() {
                Ok(item) => {
                    ctx.counters.taken(1);
                    batch.push(item);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(item)) => {
                    ctx.counters.taken(1);
                    batch.push(item);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    async fn post(&self, body: &bytes_body::Body) -> Outcome {
        let mut req = self.client.current().post(self.url.clone());
        if let Some(token) = &self.token {
            // Marked sensitive by reqwest: never in its logs or debug output.
            req = req.bearer_auth(token.current().expose());
        }
        let res = req
            .header(CONTENT_TYPE, NDJSON)
            .body(body.clone())
            .send()
            .await;
        match res {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Outcome::Delivered;
                }
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let what = format!("{} answered {status}", self.url);
                if status.is_redirection() {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    return Outcome::Redirected(match to {
                        Some(to) => format!("{what} (to {to:?}; redirects are not followed)"),
                        None => format!("{what} (redirects are not followed)"),
                    });
                }
                if status.is_client_error()
                    && status != StatusCode::REQUEST_TIMEOUT
                    && status != StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::Rejected(what)
                } else {
                    Outcome::Retry(what, retry_after)
                }
            }
            Err(e) => Outcome::Retry(
                format!("POST {} failed: {}", self.url, error_chain(&e)),
                None,
            ),
        }
    }

    pub(crate) async fn run(self, mut rx: mpsc::Receiver<Arc<OutputItem>>, ctx: Ctx) {
        let mut health = Health::default();
        while let Some(batch) = self.next_batch(&mut rx, &ctx).await {
            let mut body = Vec::with_capacity(batch.len() * 512);
            for item in &batch {
                ctx.render_into(item, &mut body);
                body.push(b'\n');
            }
            let n = batch.len() as u64;
            drop(batch);
            let body = bytes_body::Body::from(body);
            let mut attempt = 0u32;
            loop {
                match self.post(&body).await {
                    Outcome::Delivered => {
                        health.ok(&ctx.name);
                        ctx.counters.sent(n);
                        break;
                    }
                    Outcome::Rejected(what) => {
                        health.fail(&ctx.name, &what);
                        ctx.counters.dropped(DropReason::HttpStatus, n);
                        break;
                    }
                    Outcome::Redirected(what) => {
                        health.fail(&ctx.name, &what);
                        ctx.counters.dropped(DropReason::Redirect, n);
                        break;
                    }
                    Outcome::Retry(what, retry_after) => {
                        health.fail(&ctx.name, &what);
                        if attempt >= self.max_retries {
                            ctx.counters.dropped(DropReason::RetriesExhausted, n);
                            break;
                        }
                        attempt += 1;
                        ctx.counters.retry();
                        let wait = backoff(attempt, RETRY_BASE, RETRY_CAP)
                            .max(retry_after.unwrap_or_default().min(RETRY_CAP));
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
}

/// The HTTP client: the sink's TLS files (checked again, with errors that name the files and
/// never quote them), headers, timeouts, and no redirects.
fn build_client(
    tls: &ClientTls,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &tls.ca_file {
        // Only this CA: the system's roots are not trusted besides it.
        builder = builder.tls_built_in_root_certs(false);
        for cert in tls::load_certs(ca)? {
            let cert = reqwest::Certificate::from_der(&cert).map_err(|e| TlsError::Invalid {
                path: ca.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &tls.cert_and_key {
        // Checked as a pair first, for the clearer error.
        tls::load_identity(cert, key)?;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|_| TlsError::Invalid {
            path: cert.clone(),
            message: format!("cannot be used with the key `{}`", key.display()),
        })?;
        builder = builder.identity(identity);
    }
    builder
        .default_headers(headers)
        .user_agent(concat!("node-monitor/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TlsError::Config(format!("cannot build the HTTP client: {e}")))
}

/// The error and its causes on one line ("error sending request: ... Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A request body that is cheap to clone for retries.
mod bytes_body {
    use std::sync::Arc;

    #[derive(Clone)]
    pub(crate) struct Body(Arc<[u8]>);

    impl From<Vec<u8>> for Body {
        fn from(b: Vec<u8>) -> Body {
            Body(b.into())
        }
    }

    impl From<Body> for reqwest::Body {
        fn from(b: Body) -> reqwest::Body {
            // One copy per attempt; reqwest wants owned bytes.
            reqwest::Body::from(b.0.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;

    fn spec(url: &str, headers: Vec<(String, String)>) -> SinkSpec {
        SinkSpec {
            name: "siem".into(),
            kind: SinkKind::Http {
                url: url.into(),
                batch_max: 10,
                batch_interval: Duration::from_millis(100),
                timeout: Duration::from_secs(1),
                max_retries: 1,
                headers,
                tls: crate::config::ClientTls::default(),
                bearer_token_file: None,
            },
            format: Format::Ecs,
            queue: 10,
            flows: false,
        }
    }

    fn err(url: &str, headers: Vec<(String, String)>) -> String {
        match HttpSender::new(&spec(url, headers)) {
            Ok(_) => panic!("accepted {url}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_sink() {
        assert!(err("ftp://x/", vec![]).starts_with("sink siem: url ftp://x/ is not http(s)"));
        assert!(err("not a url", vec![]).starts_with("sink siem: invalid url \"not a url\""));
        assert!(
            err("http://x/", vec![("bad header".into(), "v".into())])
                .starts_with("sink siem: invalid header name \"bad header\"")
        );
        assert!(
            err("http://x/", vec![("X-A".into(), "a\nb".into())])
                .starts_with("sink siem: invalid value for header X-A")
        );
        assert!(
            HttpSender::new(&spec(
                "https://siem.example:8443/ingest",
                vec![("Authorization".into(), "Bearer x".into())]
            ))
            .is_ok()
        );
    }
}
