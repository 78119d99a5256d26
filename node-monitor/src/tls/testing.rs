//! Certificates for tests, made at test time (rcgen, ring) and written as PEM files into a
//! directory the test owns: a CA, a server certificate for `127.0.0.1`, `::1` and
//! `localhost`, a client certificate signed by the CA, and a second CA with a client
//! certificate of its own, which the first CA does not vouch for.
#![allow(
    clippy::expect_used,
    reason = "test fixture: a failure to make a certificate fails the test at once"
)]
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed `server_*` and `client_*`.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA of its own, and a client certificate it signed (not trusted by `ca`).
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf cert");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    /// Makes the certificates and writes them under `dir` (which must exist).
    pub fn write(dir: &Path) -> TestPki {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write PEM");
            p
        };
        let main = ca("node-monitor test CA");
        let (sc, sk) = leaf(
            &main,
            &["127.0.0.1", "::1", "localhost"],
            "node-monitor test server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cc, ck) = leaf(
            &main,
            &["prometheus.test"],
            "node-monitor test client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other = ca("another CA");
        let (oc, ok) = leaf(
            &other,
            &["intruder.test"],
            "not trusted",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        TestPki {
            ca: write("ca.pem", &main.pem()),
            server_cert: write("server.pem", &sc),
            server_key: write("server-key.pem", &sk),
            client_cert: write("client.pem", &cc),
            client_key: write("client-key.pem", &ck),
            other_ca: write("other-ca.pem", &other.pem()),
            other_client_cert: write("other-client.pem", &oc),
            other_client_key: write("other-client-key.pem", &ok),
        }
    }
}
