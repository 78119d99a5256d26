//! TLS material and secrets read from files: PEM certificates, private keys and CA bundles,
//! bearer tokens; the rustls server and client configurations built from them (rustls with
//! the `ring` provider, the one kube and reqwest already use), and their reload when the files
//! change.
//!
//! Secrets never leave this module as text: errors name the file and what is wrong with it,
//! never a line of it (the PEM parser's own errors quote the line they choke on, so they are
//! replaced here), and [`Token`] and the keys print as `[redacted]`.
use std::{
    fmt,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, PrivateKeyDer, ServerName,
        pem::{self, PemObject},
    },
    server::WebPkiClientVerifier,
    sign::CertifiedKey,
};

/// Largest file read as a certificate, key, CA bundle or token: far above any real one, and
/// small enough that a wrong path (a log, a device) is refused rather than read whole.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why TLS material or a secret could not be used. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is larger than {MAX_FILE_BYTES} bytes: not a {what}")]
    TooLarge { path: PathBuf, what: &'static str },
    #[error("`{path}` is not valid PEM ({problem}): expected {what}")]
    BadPem {
        path: PathBuf,
        problem: &'static str,
        what: &'static str,
    },
    #[error("`{path}` holds no {what}")]
    Missing { path: PathBuf, what: &'static str },
    #[error("`{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("the private key in `{key}` does not match the certificate in `{cert}`")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{0}")]
    Config(String),
}

/// The crypto provider of every TLS configuration here: ring, as kube and reqwest use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_bounded(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
            what,
        });
    }
    std::fs::read(path).map_err(read)
}

/// The PEM parser's error, without the line or the base64 it quotes.
fn pem_error(path: &Path, e: &pem::Error, what: &'static str) -> TlsError {
    let problem = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable",
    };
    TlsError::BadPem {
        path: path.to_owned(),
        problem,
        what,
    }
}

/// Every certificate of a PEM file, in order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const WHAT: &str = "PEM certificate (-----BEGIN CERTIFICATE-----)";
    let bytes = read_bounded(path, WHAT)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e, WHAT))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: WHAT,
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "PEM private key (PKCS#8, PKCS#1 or SEC1)";
    let bytes = read_bounded(path, WHAT)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::Missing {
            path: path.to_owned(),
            what: WHAT,
        }),
        Err(e) => Err(pem_error(path, &e, WHAT)),
    }
}

/// A CA bundle: every certificate of the file becomes a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A certificate chain and its key, checked to belong together.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|_| TlsError::Invalid {
            path: key.to_owned(),
            message: "the private key cannot be used: it is damaged, or not an RSA, ECDSA \
                      (P-256, P-384) or Ed25519 key"
                .to_owned(),
        })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(Arc::new(ck))
}

/// A bearer token read from a file. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token itself, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time that depends on the lengths only.
    pub fn matches(&self, other: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if mine.len() != other.len() {
            return false;
        }
        mine.iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a bearer token: the file's text without surrounding white space (a trailing newline,
/// as `echo` and Kubernetes Secrets leave). It must be one non-empty run of the characters
/// RFC 6750 allows (`A-Z a-z 0-9 - . _ ~ + /`, then `=` padding).
pub fn load_token(path: &Path) -> Result<Token, TlsError> {
    const WHAT: &str = "bearer token";
    let bytes = read_bounded(path, WHAT)?;
    let invalid = |message: &str| TlsError::Invalid {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("the token is not UTF-8 text"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid("the file is empty: expected a bearer token"));
    }
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err(invalid(
            "the token holds characters a bearer token cannot (RFC 6750: A-Z a-z 0-9 - . _ ~ + / \
             and trailing =)",
        ));
    }
    Ok(Token(token.to_owned()))
}

/// What identifies a version of a file cheaply: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn stamps(paths: &[&Path]) -> Vec<Stamp> {
    paths.iter().map(|p| stamp(p)).collect()
}

/// A value built from files, rebuilt when one of them changes (checked at each use: a `stat`
/// per file). A rebuild that fails keeps the last good value and logs why, once per change.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    state: Mutex<(Vec<Stamp>, T)>,
}

impl<T: Clone> Reloading<T> {
    /// Builds the value now (an error here is the caller's); `paths` are the files whose
    /// change makes [`Reloading::current`] build it again.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let before = stamps(&refs);
        let value = build()?;
        Ok(Reloading {
            what,
            paths,
            build: Box::new(build),
            state: Mutex::new((before, value)),
        })
    }

    /// The value the files hold now: built again if one of them changed since the last call
    /// (else, or when that fails, the last good one).
    pub fn current(&self) -> T {
        let refs: Vec<&Path> = self.paths.iter().map(PathBuf::as_path).collect();
        let now = stamps(&refs);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 != now {
            state.0 = now;
            match (self.build)() {
                Ok(v) => {
                    state.1 = v;
                    tracing::info!(what = self.what, "files changed: reloaded");
                }
                Err(e) => {
                    tracing::warn!(what = self.what, error = %e, "files changed but cannot be used; keeping the last good ones");
                }
            }
        }
        state.1.clone()
    }
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// A bearer token file, re-read when it changes (rotation without a restart).
pub struct TokenFile(Reloading<Token>);

impl TokenFile {
    /// Reads the token now: an unusable file is an error here, later only a warning.
    pub fn open(path: &Path) -> Result<TokenFile, TlsError> {
        let p = path.to_owned();
        Reloading::new("bearer token", vec![p.clone()], move || load_token(&p)).map(TokenFile)
    }

    /// The token as the file holds it now (or the last good one).
    pub fn current(&self) -> Token {
        self.0.current()
    }
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenFile").field(&self.0.paths).finish()
    }
}

/// The files of a TLS server: its certificate chain and key, and optionally the CA that
/// client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Builds a server configuration from `files`. With a client CA, a client certificate is
/// asked for and, when one is given, must chain to the CA (else the handshake fails); a
/// client without one still connects, and the caller decides what it may see
/// ([`ReloadingServer::accept`] tells it).
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let identity = load_identity(&files.cert, &files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Invalid {
                    path: ca.clone(),
                    message: format!("cannot verify client certificates with it: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Fixed(identity)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One certified key for every client hello.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A TLS server whose certificate, key and client CA are re-read when their files change:
/// each new connection gets the configuration the files hold now (a `stat` per file per
/// connection); connections already open keep theirs.
pub struct ReloadingServer {
    config: Reloading<Arc<ServerConfig>>,
    client_auth: bool,
}

impl fmt::Debug for ReloadingServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingServer")
            .field("files", &self.config.paths)
            .finish_non_exhaustive()
    }
}

/// A server-side TLS connection, and whether its client showed a certificate that chains to
/// the client CA.
pub struct Accepted<IO> {
    pub stream: tokio_rustls::server::TlsStream<IO>,
    pub client_verified: bool,
}

impl ReloadingServer {
    /// Loads the files now: an unusable file is an error here; later, a change that cannot
    /// be used is logged and the last good configuration kept.
    pub fn open(files: &ServerFiles) -> Result<ReloadingServer, TlsError> {
        let mut paths = vec![files.cert.clone(), files.key.clone()];
        paths.extend(files.client_ca.clone());
        let owned = files.clone();
        Ok(ReloadingServer {
            config: Reloading::new(
                "metrics TLS certificate, key and client CA",
                paths,
                move || server_config(&owned),
            )?,
            client_auth: files.client_ca.is_some(),
        })
    }

    /// Whether a client CA is set (client certificates are checked).
    pub fn client_auth(&self) -> bool {
        self.client_auth
    }

    /// The handshake on `io`, under the configuration the files hold now.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<Accepted<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.current());
        let stream = acceptor.accept(io).await?;
        let client_verified = self.client_auth && stream.get_ref().1.peer_certificates().is_some();
        Ok(Accepted {
            stream,
            client_verified,
        })
    }
}

/// A client configuration trusting only the CA bundle `ca`, presenting `cert`/`key` when
/// given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = load_roots(ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            // Checked as a pair first, for the clearer error.
            load_identity(cert, key)?;
            builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                // rustls errors describe the problem, never key bytes.
                .map_err(|e| TlsError::Invalid {
                    path: key.to_owned(),
                    message: format!("cannot present this client certificate and key: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a client verifies the server's certificate against: `name` when given (a DNS
/// name or an IP address), else the IP address it connects to.
pub fn server_name(
    name: Option<&str>,
    ip: std::net::IpAddr,
) -> Result<ServerName<'static>, TlsError> {
    match name {
        Some(n) => ServerName::try_from(n.to_owned())
            .map_err(|e| TlsError::Config(format!("`{n}` is not a DNS name or IP address: {e}"))),
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests;
