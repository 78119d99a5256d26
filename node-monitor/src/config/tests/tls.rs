//! TLS and secret files in the config: `metrics.tls`, `metrics.bearer_token_file`, and the
//! `tls` and `bearer_token_file` of the http and syslog sinks. Each file is read at load
//! time; a bad one is an error at its own position that names the file and never quotes it;
//! no secret reaches the canonical form, the digest, `Debug` or an error.

use std::path::{Path, PathBuf};

use super::*;
use crate::tls::testing::TestPki;

/// A secret that must never be seen outside its file.
const SECRET: &str = "s3cr3t-T0KEN-never-printed";

/// A temporary directory with a test PKI and a token file; removed on drop.
struct Files {
    dir: PathBuf,
    pki: TestPki,
    token: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("nm-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = TestPki::write(&dir);
        let token = dir.join("token");
        std::fs::write(&token, format!("{SECRET}\n")).unwrap();
        Files { dir, pki, token }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Every error of `yaml`, as `check-config` would print them.
fn errors(yaml: &str) -> ConfigErrors {
    Config::from_yaml(yaml, "test.yaml").expect_err("config should be rejected")
}

#[test]
fn metrics_tls_and_token_files_are_read_at_load() {
    let f = Files::new();
    let yaml = format!(
        "metrics:\n  listen: \"0.0.0.0:9630\"\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n  bearer_token_file: {}\n",
        p(&f.pki.server_cert),
        p(&f.pki.server_key),
        p(&f.pki.ca),
        p(&f.token)
    );
    let cfg = parse(&yaml);
    let tls = cfg.metrics.tls.as_ref().unwrap();
    assert_eq!(tls.cert, f.pki.server_cert);
    assert_eq!(tls.key, f.pki.server_key);
    assert_eq!(tls.client_ca.as_deref(), Some(f.pki.ca.as_path()));
    assert_eq!(
        cfg.metrics.bearer_token_file.as_deref(),
        Some(f.token.as_path())
    );
    // By path only, never the token.
    let canonical = cfg.canonical();
    assert!(
        canonical.contains(&format!("bearer_token_file={}", p(&f.token))),
        "{canonical}"
    );
    assert!(!canonical.contains(SECRET), "{canonical}");
    assert!(!format!("{cfg:?}").contains(SECRET));
    // The token rotates without changing the config's digest; a new path changes it.
    let digest = cfg.digest();
    std::fs::write(&f.token, "another-token").unwrap();
    assert_eq!(parse(&yaml).digest(), digest);
    let moved = f.write("token2", "another-token");
    assert_ne!(
        parse(&yaml.replace(&p(&f.token), &p(&moved))).digest(),
        digest
    );
    // No TLS: the canonical metrics line is what it always was.
    assert!(
        parse("metrics: { listen: \"127.0.0.1:9630\" }\n")
            .canonical()
            .contains("\nmetrics listen=127.0.0.1:9630\n")
    );
}

#[test]
fn metrics_tls_errors_name_the_file_at_its_position() {
    let f = Files::new();
    let (cert, key) = (p(&f.pki.server_cert), p(&f.pki.server_key));
    // A file that does not exist.
    assert_error(
        &format!(
            "metrics:\n  tls:\n    cert_file: {}/nope.pem\n    key_file: {key}\n",
            f.dir.display()
        ),
        3,
        16,
        "metrics.tls.cert_file",
        "nope.pem`: No such file or directory",
    );
    // A relative path.
    assert_error(
        &format!("metrics:\n  tls:\n    cert_file: tls.crt\n    key_file: {key}\n"),
        3,
        16,
        "metrics.tls.cert_file",
        "`tls.crt` is not an absolute path",
    );
    // A missing key_file, reported at `tls`.
    assert_error(
        &format!("metrics:\n  tls:\n    cert_file: {cert}\n"),
        3,
        5,
        "metrics.tls.key_file",
        "needs both `cert_file` and `key_file`",
    );
    // A key that is not the certificate's.
    assert_error(
        &format!(
            "metrics:\n  tls:\n    cert_file: {cert}\n    key_file: {}\n",
            p(&f.pki.client_key)
        ),
        4,
        15,
        "metrics.tls.key_file",
        "does not match the certificate",
    );
    // A certificate file that holds a key, and a CA file that is not PEM.
    let e = errors(&format!(
        "metrics:\n  tls:\n    cert_file: {key}\n    key_file: {key}\n    client_ca_file: {}\n",
        p(&f.token)
    ));
    let lines: Vec<String> = e.errors().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(
        lines[0].starts_with("test.yaml:3:16: metrics.tls.cert_file: "),
        "{e}"
    );
    assert!(lines[0].contains("holds no PEM certificate"), "{e}");
    assert!(
        lines[1].starts_with("test.yaml:5:21: metrics.tls.client_ca_file: "),
        "{e}"
    );
    assert!(!e.to_string().contains(SECRET), "{e}");
    // An empty token file, and an unknown field.
    let empty = f.write("empty", "\n");
    assert_error(
        &format!("metrics:\n  bearer_token_file: {}\n", p(&empty)),
        2,
        22,
        "metrics.bearer_token_file",
        "the file is empty",
    );
    let e = errors("metrics:\n  tls: { cert: /x }\n");
    assert!(e.to_string().contains("unknown field `cert`"), "{e}");
}

#[test]
fn secrets_never_appear_in_errors() {
    let f = Files::new();
    // A key file whose key is damaged: the PEM parser would quote the line; we do not.
    let key_text = std::fs::read_to_string(&f.pki.server_key).unwrap();
    let broken = key_text.replacen('\n', &format!("\n{SECRET}!!\n"), 1);
    let bad_key = f.write("bad-key.pem", &broken);
    // A BEGIN line that carries the secret.
    let bad_begin = f.write("bad-begin.pem", &format!("-----BEGIN {SECRET}\nAAAA\n"));
    // A token with a character a bearer token cannot hold.
    let bad_token = f.write("bad-token", &format!("{SECRET} with spaces\n"));
    let binary_token = f.write("bin-token", "\u{7f}\u{1}");
    for (yaml, field) in [
        (
            format!(
                "metrics:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
                p(&f.pki.server_cert),
                p(&bad_key)
            ),
            "metrics.tls.key_file",
        ),
        (
            format!(
                "metrics:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
                p(&bad_begin),
                p(&f.pki.server_key)
            ),
            "metrics.tls.cert_file",
        ),
        (
            format!("metrics:\n  bearer_token_file: {}\n", p(&bad_token)),
            "metrics.bearer_token_file",
        ),
        (
            format!("metrics:\n  bearer_token_file: {}\n", p(&binary_token)),
            "metrics.bearer_token_file",
        ),
        (
            format!(
                "sinks:\n  - type: http\n    url: \"https://203.0.113.9/in\"\n    bearer_token_file: {}\n",
                p(&bad_token)
            ),
            "sinks[0].bearer_token_file",
        ),
    ] {
        let e = errors(&yaml);
        let text = e.to_string();
        assert_eq!(e.first().field, field, "{text}");
        assert!(!text.contains(SECRET), "a secret leaked into: {text}");
        assert!(!text.contains("AAAA"), "file contents leaked into: {text}");
    }
    // What the sink's own start-up check says about the same token file.
    assert!(
        !crate::tls::load_token(&bad_token)
            .unwrap_err()
            .to_string()
            .contains(SECRET)
    );
    // Token and key print redacted.
    let token = crate::tls::load_token(&f.token).unwrap();
    assert_eq!(format!("{token:?} {token}"), "Token([redacted]) [redacted]");
    assert!(token.matches(SECRET.as_bytes()));
    assert!(!token.matches(b"s3cr3t-T0KEN-never-printeX"));
    assert!(!token.matches(b""));
    let key = crate::tls::load_key(&f.pki.server_key).unwrap();
    assert!(!format!("{key:?}").contains(key_text.lines().nth(1).unwrap()));
}

#[test]
fn sink_tls_and_token_files() {
    let f = Files::new();
    let yaml = format!(
        r#"sinks:
  - type: http
    url: "https://198.51.100.7:8443/ingest"
    tls: {{ ca_file: {ca}, cert_file: {cert}, key_file: {key} }}
    bearer_token_file: {token}
  - type: syslog
    address: "tls://198.51.100.8:6514"
    tls: {{ ca_file: {ca}, server_name: syslog.example }}
"#,
        ca = p(&f.pki.ca),
        cert = p(&f.pki.client_cert),
        key = p(&f.pki.client_key),
        token = p(&f.token)
    );
    let cfg = parse(&yaml);
    let SinkKind::Http {
        tls,
        bearer_token_file,
        ..
    } = &cfg.sinks[0].kind
    else {
        panic!("{:?}", cfg.sinks[0]);
    };
    assert_eq!(tls.ca_file.as_deref(), Some(f.pki.ca.as_path()));
    assert_eq!(
        tls.cert_and_key,
        Some((f.pki.client_cert.clone(), f.pki.client_key.clone()))
    );
    assert_eq!(bearer_token_file.as_deref(), Some(f.token.as_path()));
    let SinkKind::Syslog { transport, tls } = &cfg.sinks[1].kind else {
        panic!("{:?}", cfg.sinks[1]);
    };
    assert_eq!(transport.to_string(), "tls://198.51.100.8:6514");
    assert_eq!(tls.server_name.as_deref(), Some("syslog.example"));
    let canonical = cfg.canonical();
    assert!(!canonical.contains(SECRET), "{canonical}");
    assert!(
        canonical.contains("tls_server_name=syslog.example"),
        "{canonical}"
    );
    assert!(!format!("{cfg:?}").contains(SECRET));

    let (ca, cert, key, token) = (
        p(&f.pki.ca),
        p(&f.pki.client_cert),
        p(&f.pki.client_key),
        p(&f.token),
    );
    // Each error at the value it is about (`at`, found in the sink's line).
    let check = |body: String, at: &str, field: &str, msg: &str| {
        let column = 5 + body
            .find(at)
            .unwrap_or_else(|| panic!("{at} not in {body}"));
        assert_error(&format!("sinks:\n  - {body}\n"), 2, column, field, msg);
    };
    check(
        format!("{{type: http, url: \"http://198.51.100.7/\", tls: {{ca_file: {ca}}}}}"),
        "{ca_file",
        "sinks[0].tls",
        "`tls` needs an https:// URL",
    );
    check(
        format!(
            "{{type: http, url: \"https://198.51.100.7/\", headers: {{Authorization: x}}, bearer_token_file: {token}}}"
        ),
        &token,
        "sinks[0].bearer_token_file",
        "`headers.Authorization` is set too",
    );
    check(
        format!("{{type: http, url: \"https://198.51.100.7/\", tls: {{cert_file: {cert}}}}}"),
        &cert,
        "sinks[0].tls.key_file",
        "needs both `cert_file` and `key_file`",
    );
    check(
        format!(
            "{{type: syslog, address: \"tls://198.51.100.8:6514\", tls: {{cert_file: {cert}, key_file: {key}}}}}"
        ),
        "{cert_file",
        "sinks[0].tls.ca_file",
        "needs `ca_file`",
    );
    check(
        "{type: syslog, address: \"tls://198.51.100.8:6514\"}".to_owned(),
        "\"tls://",
        "sinks[0].tls.ca_file",
        "needs `tls: {ca_file: ...}`",
    );
    check(
        format!("{{type: syslog, address: \"tcp://198.51.100.8:514\", tls: {{ca_file: {ca}}}}}"),
        "{ca_file",
        "sinks[0].tls",
        "applies to tls://HOST:PORT addresses only",
    );
    check(
        format!("{{type: stdout, bearer_token_file: {token}}}"),
        &token,
        "sinks[0].bearer_token_file",
        "not a field of sinks of type stdout",
    );
    check(
        format!(
            "{{type: syslog, address: \"tls://198.51.100.8:6514\", tls: {{ca_file: {ca}, server_name: \"bad name!\"}}}}"
        ),
        "\"bad name!",
        "sinks[0].tls.server_name",
        "is not a DNS name or an IP address",
    );
}
