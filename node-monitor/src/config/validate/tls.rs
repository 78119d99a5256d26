//! Validation of the TLS files and secret files that `metrics` and the sinks name: each must
//! be an absolute path to a file that exists and parses now, so that `check-config` fails on
//! it rather than the daemon at start. Errors name the file and what is wrong with it, never
//! what it holds.

use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};

use super::Validator;
use crate::{
    config::{
        outputs::ClientTls,
        raw::{RawClientTls, RawServerTls},
    },
    tls::{self, ServerFiles},
};

impl Validator<'_> {
    /// An absolute path, as written; reported and `None` otherwise.
    fn file_path(&self, field: &str, value: &Spanned<String>) -> Option<PathBuf> {
        let text = value.value.trim();
        let path = PathBuf::from(text);
        if text.is_empty() || !path.is_absolute() {
            self.report(self.error(
                Some(value.referenced),
                field,
                format!("`{text}` is not an absolute path"),
            ));
            return None;
        }
        Some(path)
    }

    /// Reports `result`'s error at `at`.
    fn file_check<T>(
        &self,
        at: Location,
        field: &str,
        result: Result<T, tls::TlsError>,
    ) -> Option<T> {
        self.check(result.map_err(|e| self.error(Some(at), field, e.to_string())))
    }

    /// A bearer token file: readable, one token.
    pub(super) fn token_file(&self, field: &str, value: &Spanned<String>) -> Option<PathBuf> {
        let path = self.file_path(field, value)?;
        self.file_check(value.referenced, field, tls::load_token(&path))?;
        Some(path)
    }

    /// A CA bundle: at least one usable CA certificate.
    fn ca_file(&self, field: &str, value: &Spanned<String>) -> Option<PathBuf> {
        let path = self.file_path(field, value)?;
        self.file_check(value.referenced, field, tls::load_roots(&path))?;
        Some(path)
    }

    /// A certificate and its key: each parses (errors at each file) and they match (error at
    /// the key).
    fn identity(
        &self,
        section: &str,
        cert: &Spanned<String>,
        key: &Spanned<String>,
    ) -> Option<(PathBuf, PathBuf)> {
        let cert_field = format!("{section}.cert_file");
        let key_field = format!("{section}.key_file");
        let cert_path = self.file_path(&cert_field, cert);
        let key_path = self.file_path(&key_field, key);
        let cert_ok = cert_path
            .as_deref()
            .and_then(|p| self.file_check(cert.referenced, &cert_field, tls::load_certs(p)));
        let key_ok = key_path
            .as_deref()
            .and_then(|p| self.file_check(key.referenced, &key_field, tls::load_key(p)));
        let (cert_path, key_path) = (cert_path?, key_path?);
        cert_ok?;
        key_ok?;
        self.file_check(
            key.referenced,
            &key_field,
            tls::load_identity(&cert_path, &key_path),
        )?;
        Some((cert_path, key_path))
    }

    /// `metrics.tls`: `cert_file` and `key_file` required, `client_ca_file` optional.
    pub(super) fn server_tls(&self, raw: Spanned<RawServerTls>) -> Option<ServerFiles> {
        const SECTION: &str = "metrics.tls";
        let at = raw.referenced;
        let RawServerTls {
            cert_file,
            key_file,
            client_ca_file,
        } = raw.value;
        // Checked whatever becomes of the pair, so that one pass reports every bad file.
        let client_ca: Option<Option<PathBuf>> =
            client_ca_file.map(|ca| self.ca_file(&format!("{SECTION}.client_ca_file"), &ca));
        let (Some(cert), Some(key)) = (&cert_file, &key_file) else {
            for (name, v) in [("cert_file", &cert_file), ("key_file", &key_file)] {
                if v.is_none() {
                    self.report(self.error(
                        Some(at),
                        format!("{SECTION}.{name}"),
                        "missing field: metrics.tls needs both `cert_file` and `key_file` \
                         (PEM files)",
                    ));
                }
            }
            return None;
        };
        let (cert, key) = self.identity(SECTION, cert, key)?;
        let client_ca = match client_ca {
            // Reported.
            Some(None) => return None,
            Some(Some(ca)) => Some(ca),
            None => None,
        };
        Some(ServerFiles {
            cert,
            key,
            client_ca,
        })
    }

    /// `sinks[i].tls`: every field optional; `cert_file` and `key_file` go together.
    pub(super) fn client_tls(
        &self,
        section: &str,
        raw: Spanned<RawClientTls>,
    ) -> Option<ClientTls> {
        let section = format!("{section}.tls");
        let RawClientTls {
            ca_file,
            cert_file,
            key_file,
            server_name,
        } = raw.value;
        let mut ok = true;
        let ca_file = match ca_file {
            Some(ca) => {
                let p = self.ca_file(&format!("{section}.ca_file"), &ca);
                ok &= p.is_some();
                p
            }
            None => None,
        };
        let cert_and_key = match (&cert_file, &key_file) {
            (Some(cert), Some(key)) => {
                let pair = self.identity(&section, cert, key);
                ok &= pair.is_some();
                pair
            }
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                let missing = if cert_file.is_none() {
                    "cert_file"
                } else {
                    "key_file"
                };
                self.report(self.error(
                    Some(one.referenced),
                    format!("{section}.{missing}"),
                    "a client certificate needs both `cert_file` and `key_file` (PEM files)",
                ));
                ok = false;
                None
            }
        };
        let server_name = server_name.and_then(|n| {
            let name = n.value.trim().to_owned();
            let checked = rustls::pki_types::ServerName::try_from(name.as_str())
                .map(|_| ())
                .map_err(|_| {
                    self.error(
                        Some(n.referenced),
                        format!("{section}.server_name"),
                        format!("`{name}` is not a DNS name or an IP address"),
                    )
                });
            let checked = self.check(checked);
            ok &= checked.is_some();
            checked.map(|()| name)
        });
        ok.then_some(ClientTls {
            ca_file,
            cert_and_key,
            server_name,
        })
    }
}
