//! The HTTP endpoint: `/metrics` (Prometheus text or OpenMetrics, by `Accept`), `/healthz`,
//! `/readyz`; over TLS when configured, and with client authentication (a client certificate
//! that chains to a client CA, a bearer token, or both) for every path but `/healthz` and
//! `/readyz`, which stay open to the kubelet's probes: they tell only whether the daemon is up
//! and ready.
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{sync::Semaphore, task::JoinSet};

use super::Metrics;
use crate::{
    config::MetricsSettings,
    tls::{ReloadingServer, TlsError, TokenFile},
};

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of the OpenMetrics text format 1.0.0.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// True when the `Accept` header asks for OpenMetrics (any media range
/// `application/openmetrics-text` whose q is not 0).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/openmetrics-text")
            && !parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            })
    })
}

/// The HTTP routes, for embedding or testing without a socket.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// What one client may hold of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections served at once from one peer address, so that one client cannot take
    /// every slot (Prometheus holds one or two).
    pub max_per_peer: usize,
    /// A request's headers must arrive within this (slowloris; idle keep-alive).
    pub header_read_timeout: Duration,
    /// Longest a connection is served; then it is closed (after `stop_grace`).
    pub connection_lifetime: Duration,
    /// At stop (and at the end of a connection's lifetime), how long a request in flight
    /// gets to finish before its connection is cut.
    pub stop_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 64,
            max_per_peer: 8,
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            stop_grace: Duration::from_secs(1),
        }
    }
}

/// [`serve_with`] under the default [`ServeLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, metrics, ServeLimits::default(), shutdown).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
///
/// Its own accept loop, so that no client can hold the endpoint: at most
/// `limits.max_connections` connections at once and `limits.max_per_peer` from one address
/// (one more is closed as soon as it is accepted), headers within `limits.header_read_timeout` (slowloris, idle keep-alive), a
/// connection lives at most `limits.connection_lifetime` (a body or a reader that never
/// finishes), and a stop waits at most `limits.stop_grace` for requests in flight.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let open = Arc::new(Mutex::new(Arc::new(Protection::open())));
    serve_protected(listener, metrics, limits, open, shutdown).await
}

/// Who may see what, and over what: TLS (with an optional client CA) and a bearer token.
/// `/healthz` and `/readyz` need neither credential; every other path needs each one that
/// is configured (a client certificate that chains to the client CA, and the token).
#[derive(Debug, Default)]
pub struct Protection {
    tls: Option<ReloadingServer>,
    token: Option<TokenFile>,
}

impl Protection {
    /// Plain HTTP, every path open.
    pub fn open() -> Protection {
        Protection::default()
    }

    /// From the config's `metrics` section: the files are read now (an unusable one is an
    /// error, naming the file and never its contents) and re-read when they change.
    pub fn from_settings(settings: &MetricsSettings) -> Result<Protection, TlsError> {
        Ok(Protection {
            tls: settings
                .tls
                .as_ref()
                .map(ReloadingServer::open)
                .transpose()?,
            token: settings
                .bearer_token_file
                .as_deref()
                .map(TokenFile::open)
                .transpose()?,
        })
    }

    /// Whether a request for `path` with `authorization` may pass, on a connection whose
    /// client certificate was (or was not) verified; the refusal otherwise.
    fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        client_verified: bool,
    ) -> Option<Response> {
        if matches!(path, "/healthz" | "/readyz") {
            return None;
        }
        if self.tls.as_ref().is_some_and(ReloadingServer::client_auth) && !client_verified {
            return Some(
                (
                    StatusCode::FORBIDDEN,
                    "a client certificate signed by the configured client CA is required\n",
                )
                    .into_response(),
            );
        }
        if let Some(token) = &self.token {
            let given = authorization.and_then(|a| {
                let (scheme, rest) = a.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
            });
            if !given.is_some_and(|g| token.current().matches(g)) {
                return Some(
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                        "a valid bearer token is required\n",
                    )
                        .into_response(),
                );
            }
        }
        None
    }
}

/// The protection in force; a reload swaps it for the next connections.
pub type SharedProtection = Arc<Mutex<Arc<Protection>>>;

/// [`serve_with`] under `protection`, read again for every new connection (so that a reload
/// that changes it applies without a rebind).
pub async fn serve_protected(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    limits: ServeLimits,
    protection: SharedProtection,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(metrics);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers: Peers = Arc::default();
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, or an aborted handshake: try again
                        // shortly rather than spin.
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // At either cap: closed at once, never queued.
                let Some(peer_slot) = PeerSlot::take(&peers, peer.ip(), limits.max_per_peer)
                else {
                    drop(stream);
                    continue;
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                let protection = Arc::clone(
                    &protection.lock().unwrap_or_else(PoisonError::into_inner),
                );
                conns.spawn(async move {
                    serve_protected_connection(stream, service, protection, limits).await;
                    drop((slot, peer_slot));
                });
            }
        }
    }
    drop(listener);
    // Requests in flight get the grace; then every connection left is cut (JoinSet aborts
    // its tasks when dropped).
    let _ = tokio::time::timeout(limits.stop_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

/// Connections served now, by peer address.
type Peers = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place in its peer's count; given back on drop.
struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl PeerSlot {
    /// A place for one more connection from `ip`, unless it already has `max`.
    fn take(peers: &Peers, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = peers.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_default();
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: Arc::clone(peers),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// One connection: the TLS handshake first when configured (within the header timeout, so
/// that a client that never finishes it holds its slot no longer than a slow request), then
/// HTTP/1.1 with every request checked against `protection`.
async fn serve_protected_connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<Router>,
    protection: Arc<Protection>,
    limits: ServeLimits,
) {
    let Some(tls) = &protection.tls else {
        let service = guarded(service, Arc::clone(&protection), false);
        serve_connection(stream, service, limits).await;
        return;
    };
    let accepted = match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
    {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics endpoint: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("metrics endpoint: TLS handshake timed out");
            return;
        }
    };
    let service = guarded(service, Arc::clone(&protection), accepted.client_verified);
    serve_connection(accepted.stream, service, limits).await;
}

/// `service`, behind the checks of `protection`.
fn guarded(
    service: TowerToHyperService<Router>,
    protection: Arc<Protection>,
    client_verified: bool,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let refused = protection.check(
            req.uri().path(),
            req.headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            client_verified,
        );
        let service = service.clone();
        async move {
            match refused {
                Some(r) => Ok(r),
                None => hyper::service::Service::call(&service, req).await,
            }
        }
    })
}

/// One connection, HTTP/1.1, under `limits`.
async fn serve_connection<IO, S>(stream: IO, service: S, limits: ServeLimits)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_BUF);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    if tokio::time::timeout(limits.connection_lifetime, conn.as_mut())
        .await
        .is_err()
    {
        // Lived long enough: finish the request in flight (if any), then close.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(limits.stop_grace, conn).await;
    }
}

/// Largest request buffer (headers) a connection may fill: the endpoint's requests are a
/// GET and a few headers.
const MAX_REQUEST_BUF: usize = 16 * 1024;

async fn metrics_handler(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (body, content_type) = if wants_openmetrics(&accept) {
        (metrics.try_render_openmetrics(), CONTENT_TYPE_OPENMETRICS)
    } else {
        (metrics.try_render_text(), CONTENT_TYPE_TEXT)
    };
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::VARY, HeaderValue::from_static("Accept")),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(metrics): State<Metrics>) -> (StatusCode, &'static str) {
    if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// The endpoint's task, stoppable, so that a reload can bind a new address before the old
/// one is let go.
#[derive(Debug)]
pub struct Server {
    listen: SocketAddr,
    /// Where the socket is bound: `listen` with the port the kernel chose for port 0.
    bound: SocketAddr,
    protection: SharedProtection,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Server {
    /// Binds `listen` and serves `metrics` there on a task of its own, protected as
    /// `settings` says (its TLS and token files are read now).
    pub async fn start(
        listen: SocketAddr,
        settings: &MetricsSettings,
        metrics: &Metrics,
    ) -> io::Result<Server> {
        let protection = protection_of(settings)?;
        warn_if_exposed(listen, settings);
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the metrics endpoint on {listen}: {e}"),
            )
        })?;
        let bound = listener.local_addr()?;
        let protection: SharedProtection = Arc::new(Mutex::new(Arc::new(protection)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_protected(
            listener,
            metrics.clone(),
            ServeLimits::default(),
            Arc::clone(&protection),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Server {
            listen,
            bound,
            protection,
            stop,
            task,
        })
    }

    /// The address it was asked to serve on (the config's `metrics.listen`).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The address it serves on: [`Server::listen`], with the port the kernel chose when
    /// that asked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// New TLS and authentication settings for the connections to come, on the same
    /// address. On error nothing changes.
    pub fn protect(&self, settings: &MetricsSettings) -> io::Result<()> {
        let p = Arc::new(protection_of(settings)?);
        warn_if_exposed(self.listen, settings);
        *self
            .protection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = p;
        Ok(())
    }

    /// Stops serving and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Beyond loopback, an endpoint without client authentication shows the node's posture to
/// its network, and a token over plain HTTP crosses it in clear: say so at start.
fn warn_if_exposed(listen: SocketAddr, settings: &MetricsSettings) {
    if listen.ip().is_loopback() {
        return;
    }
    let client_ca = settings.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if settings.bearer_token_file.is_none() && !client_ca {
        tracing::warn!(%listen, "the metrics endpoint is reachable beyond localhost without client authentication (metrics.tls.client_ca_file or metrics.bearer_token_file)");
    } else if settings.tls.is_none() {
        tracing::warn!(%listen, "the metrics endpoint takes a bearer token over plain HTTP beyond localhost: the token crosses the network in clear (set metrics.tls)");
    }
}

fn protection_of(settings: &MetricsSettings) -> io::Result<Protection> {
    Protection::from_settings(settings).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("metrics endpoint: {e}"),
        )
    })
}
