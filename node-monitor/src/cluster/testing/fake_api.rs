//! An in-process Kubernetes API server that speaks list and watch as the real one does, for
//! the cluster tests: a global resourceVersion; lists in chunks (`limit`, `continue`) served
//! from the snapshot of their first page; watches from a resourceVersion as JSON lines
//! (ADDED, MODIFIED, DELETED), with BOOKMARK events; a resourceVersion older than the last
//! compaction answered with a 410 Gone ERROR event; metadata-only lists and watches
//! (`Accept: ...;as=PartialObjectMetadata...`); 403 on demand. HTTPS on 127.0.0.1, with a
//! self-signed certificate (rcgen) for `127.0.0.1` that the client trusts as its CA, as a
//! kubeconfig's `certificate-authority-data` makes it.
//!
//! It can stop (the listener closes and every open connection is cut, as when an API server
//! goes away) and start again on the same port.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc, watch},
    task::JoinSet,
};

/// The resources the cache watches: (name in the path, kind, apiVersion, list path).
const RESOURCES: [(&str, &str, &str, &str); 6] = [
    ("nodes", "Node", "v1", "/api/v1/nodes"),
    ("pods", "Pod", "v1", "/api/v1/pods"),
    ("services", "Service", "v1", "/api/v1/services"),
    (
        "endpointslices",
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
    ),
    (
        "replicasets",
        "ReplicaSet",
        "apps/v1",
        "/apis/apps/v1/replicasets",
    ),
    ("jobs", "Job", "batch/v1", "/apis/batch/v1/jobs"),
];

/// How often an idle watch gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_millis(300);

/// One change, as the watch log keeps it.
#[derive(Clone, Debug)]
struct Change {
    resource: &'static str,
    rv: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct ApiState {
    rv: u64,
    /// Changes at or below this resourceVersion are forgotten: resuming from there is 410.
    compacted: u64,
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    log: Vec<Change>,
    /// List snapshots in progress, by continue token.
    continues: HashMap<String, (u64, Vec<Value>)>,
    next_token: u64,
    /// Every request, as `LIST pods` / `WATCH pods rv=12`.
    requests: Vec<String>,
    /// Resources answered with 403.
    forbidden: HashSet<&'static str>,
}

/// The server's certificate and key, made once per server.
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate, DER (the client's root) and PEM (the kubeconfig's CA data).
    der: Vec<u8>,
    pem: String,
}

impl Tls {
    fn new() -> Tls {
        use tokio_rustls::rustls;
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        let der = cert.der().to_vec();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            der,
            pem: cert.pem(),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<ApiState>>,
    changes: broadcast::Sender<Change>,
    /// Largest page a list returns, whatever `limit` says.
    page: usize,
}

/// The fake API server.
pub struct FakeApi {
    ctx: Ctx,
    tls: Arc<Tls>,
    addr: SocketAddr,
    stop: Option<watch::Sender<bool>>,
}

impl FakeApi {
    /// Starts on 127.0.0.1, serving lists in pages of at most `page` items.
    pub async fn start(page: usize) -> FakeApi {
        let (changes, _) = broadcast::channel(4096);
        let ctx = Ctx {
            state: Arc::new(Mutex::new(ApiState::default())),
            changes,
            page,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut api = FakeApi {
            ctx,
            tls: Arc::new(Tls::new()),
            addr,
            stop: None,
        };
        api.serve(listener);
        api
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, mut stopped) = watch::channel(false);
        self.stop = Some(stop);
        let app = Router::new().fallback(handle).with_state(self.ctx.clone());
        let acceptor = self.tls.acceptor.clone();
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let service = TowerToHyperService::new(app.clone());
                        let acceptor = acceptor.clone();
                        conns.spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                }
            }
            // Going away: no more connections, and the open ones are cut.
            drop(listener);
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
    }

    /// Stops: the port closes and every open watch is cut.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
            stop.closed().await;
        }
    }

    /// Starts again on the same port, with the same objects and history.
    pub async fn restart(&mut self) {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.serve(listener.expect("the fake API server's port is free again"));
    }

    /// Where it listens (127.0.0.1 of the network namespace it was started in).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this server, as `KUBECONFIG` names it.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.tls.pem)
        )
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("https://{}", self.addr).parse().unwrap();
        let mut config = kube::Config::new(url);
        config.root_cert = Some(vec![self.tls.der.clone()]);
        kube::Client::try_from(config).unwrap()
    }

    /// Creates or replaces an object (`kubectl get -o json` shape), as ADDED or MODIFIED.
    pub fn apply(&self, resource: &str, mut object: Value) {
        let resource = resource_name(resource);
        let mut st = self.ctx.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&object);
        let old = st
            .objects
            .entry(resource)
            .or_default()
            .insert(key, object.clone());
        let change = Change {
            resource,
            rv,
            kind: if old.is_some() { "MODIFIED" } else { "ADDED" },
            object,
        };
        st.log.push(change.clone());
        let _ = self.ctx.changes.send(change);
    }

    /// Deletes an object, as DELETED (with its last state).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let resource = resource_name(resource);
        let mut st = self.ctx.state.lock().unwrap();
        let key = format!("{namespace}/{name}");
        let Some(mut object) = st.objects.entry(resource).or_default().remove(&key) else {
            panic!("no {resource} {key} to delete");
        };
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change {
            resource,
            rv,
            kind: "DELETED",
            object,
        };
        st.log.push(change.clone());
        let _ = self.ctx.changes.send(change);
    }

    /// Forgets the history so far: a watch resuming from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let mut st = self.ctx.state.lock().unwrap();
        st.compacted = st.rv;
        st.log.clear();
    }

    /// Answers requests for `resource` with 403 Forbidden (or stops doing so).
    pub fn forbid(&self, resource: &str, forbidden: bool) {
        let resource = resource_name(resource);
        let mut st = self.ctx.state.lock().unwrap();
        if forbidden {
            st.forbidden.insert(resource);
        } else {
            st.forbidden.remove(resource);
        }
    }

    /// Every request so far (`LIST pods`, `WATCH pods rv=12`, `410 pods rv=3`, ...).
    pub fn requests(&self) -> Vec<String> {
        self.ctx.state.lock().unwrap().requests.clone()
    }
}

fn resource_name(resource: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.0 == resource)
        .unwrap_or_else(|| panic!("unknown resource {resource}"))
        .0
}

fn key_of(object: &Value) -> String {
    let m = &object["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap()
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}

/// `k=v,k2=v2` equality selectors, as the cache uses them.
fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    selector.is_none_or(|sel| {
        sel.split(',').filter(|t| !t.is_empty()).all(|term| {
            let (k, v) = term.split_once('=').unwrap();
            object["metadata"]["labels"][k].as_str() == Some(v)
        })
    })
}

/// The object as a metadata-only request sees it.
fn metadata_only(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"].clone(),
    })
}

async fn handle(State(ctx): State<Ctx>, headers: HeaderMap, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                .collect()
        })
        .unwrap_or_default();
    let Some(&(resource, kind, api_version, _)) = RESOURCES.iter().find(|r| r.3 == path) else {
        return (
            StatusCode::NOT_FOUND,
            json_body(&status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        )
            .into_response();
    };
    let meta_only = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let selector = query.get("labelSelector").map(String::as_str);
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    {
        let mut st = ctx.state.lock().unwrap();
        let rv = query.get("resourceVersion").map_or("", String::as_str);
        st.requests.push(if watching {
            format!("WATCH {resource} rv={rv}")
        } else {
            format!("LIST {resource}")
        });
        if st.forbidden.contains(resource) {
            return (
                StatusCode::FORBIDDEN,
                json_body(&status(403, "Forbidden", &format!("{resource} is forbidden: User \"system:serviceaccount:kube-system:node-monitor\" cannot list resource \"{resource}\""))),
            )
                .into_response();
        }
    }
    let shape = move |o: &Value| {
        if meta_only {
            metadata_only(o)
        } else {
            o.clone()
        }
    };
    if !watching {
        return list(
            &ctx,
            resource,
            kind,
            api_version,
            &query,
            selector,
            meta_only,
            &shape,
        );
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let selector = selector.map(str::to_owned);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // Subscribe before reading the backlog, so that nothing falls between the two.
    let mut live = ctx.changes.subscribe();
    let (backlog, too_old) = {
        let mut st = ctx.state.lock().unwrap();
        let too_old = from < st.compacted;
        if too_old {
            st.requests.push(format!("410 {resource} rv={from}"));
        }
        let backlog: Vec<Change> = st
            .log
            .iter()
            .filter(|c| c.resource == resource && c.rv > from)
            .cloned()
            .collect();
        (backlog, too_old)
    };
    let event = move |c: &Change| -> Bytes {
        let line = json!({"type": c.kind, "object": shape(&c.object)});
        Bytes::from(format!("{line}\n"))
    };
    let bookmark = move |rv: u64| -> Bytes {
        let object = if meta_only {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}})
        } else {
            json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}})
        };
        Bytes::from(format!(
            "{}\n",
            json!({"type": "BOOKMARK", "object": object})
        ))
    };
    tokio::spawn(async move {
        if too_old {
            let gone = status(
                410,
                "Expired",
                &format!("too old resource version: {from} (compacted)"),
            );
            let _ = tx
                .send(Bytes::from(format!(
                    "{}\n",
                    json!({"type": "ERROR", "object": gone})
                )))
                .await;
            return;
        }
        let mut last = from;
        for c in &backlog {
            if matches_selector(&c.object, selector.as_deref()) && tx.send(event(c)).await.is_err()
            {
                return;
            }
            last = c.rv;
        }
        let until = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                () = tokio::time::sleep(BOOKMARK_EVERY) => {
                    if tx.send(bookmark(last)).await.is_err() {
                        return;
                    }
                }
                c = live.recv() => {
                    let Ok(c) = c else { return };
                    if c.resource != resource || c.rv <= last {
                        continue;
                    }
                    last = c.rv;
                    if matches_selector(&c.object, selector.as_deref())
                        && tx.send(event(&c)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap()
}

#[expect(
    clippy::too_many_arguments,
    reason = "a test helper with the request's parts"
)]
fn list(
    ctx: &Ctx,
    resource: &'static str,
    kind: &str,
    api_version: &str,
    query: &HashMap<String, String>,
    selector: Option<&str>,
    meta_only: bool,
    shape: &dyn Fn(&Value) -> Value,
) -> Response {
    let mut st = ctx.state.lock().unwrap();
    let (rv, items) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match st.continues.remove(token) {
            Some(saved) => saved,
            None => {
                return (
                    StatusCode::GONE,
                    json_body(&status(410, "Expired", "the continue token has expired")),
                )
                    .into_response();
            }
        },
        None => {
            let items = st
                .objects
                .get(resource)
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(|o| matches_selector(o, selector))
                .map(shape)
                .collect();
            (st.rv, items)
        }
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX)
        .min(ctx.page);
    let mut items = items;
    let rest = if items.len() > limit {
        items.split_off(limit)
    } else {
        Vec::new()
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if !rest.is_empty() {
        st.next_token += 1;
        let token = format!("token-{}", st.next_token);
        metadata["continue"] = json!(token.clone());
        st.continues.insert(token, (rv, rest));
    }
    let (list_kind, list_api) = if meta_only {
        ("PartialObjectMetadataList".to_owned(), "meta.k8s.io/v1")
    } else {
        (format!("{kind}List"), api_version)
    };
    json_body(
        &json!({"kind": list_kind, "apiVersion": list_api, "metadata": metadata, "items": items}),
    )
    .into_response()
}

/// Undoes the percent-encoding of a query value (selectors carry `=` and `,`).
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A JSON body (`application/json`).
fn json_body(v: &Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}
