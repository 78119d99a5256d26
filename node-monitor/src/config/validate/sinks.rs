//! Validation of `sinks`: one function per sink type plus the fields every sink shares.

use serde_saphyr::{Location, Spanned};

use super::{
    Bound, Validator,
    addresses::{check_header_name, check_header_value, check_http_url, parse_syslog_address},
    groups::check_group_name,
};
use crate::config::{
    outputs::{ClientTls, Format, SinkKind, SinkSpec, SyslogTransport},
    raw::RawSink,
};

/// The sink types, in the order error messages list them.
const SINK_TYPES: [&str; 4] = ["stdout", "file", "syslog", "http"];

/// Fields every sink takes.
const SINK_COMMON_FIELDS: [&str; 5] = ["type", "name", "format", "queue", "flows"];

/// The fields of each sink type besides the common ones.
fn sink_type_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" => &["path", "max_size_mb", "keep"],
        "syslog" => &["address", "tls"],
        "http" => &[
            "url",
            "batch_max",
            "batch_interval_ms",
            "timeout_ms",
            "max_retries",
            "headers",
            "tls",
            "bearer_token_file",
        ],
        _ => &[],
    }
}

const SINK_QUEUE: Bound = Bound {
    field: "queue",
    min: 1,
    max: 10_000_000,
    note: "",
    power_of_two: false,
};
const FILE_MAX_SIZE_MB: Bound = Bound {
    field: "max_size_mb",
    min: 1,
    max: 1_048_576,
    note: "",
    power_of_two: false,
};
const FILE_KEEP: Bound = Bound {
    field: "keep",
    min: 0,
    max: 100,
    note: "",
    power_of_two: false,
};
const HTTP_BATCH_MAX: Bound = Bound {
    field: "batch_max",
    min: 1,
    max: 100_000,
    note: "",
    power_of_two: false,
};
const HTTP_BATCH_INTERVAL: Bound = Bound {
    field: "batch_interval_ms",
    min: 1,
    max: 600_000,
    note: "",
    power_of_two: false,
};
const HTTP_TIMEOUT: Bound = Bound {
    field: "timeout_ms",
    min: 1,
    max: 600_000,
    note: "",
    power_of_two: false,
};
const HTTP_MAX_RETRIES: Bound = Bound {
    field: "max_retries",
    min: 0,
    max: 100,
    note: "",
    power_of_two: false,
};

/// Defaults of the sink fields that have one.
const FILE_DEFAULT_MAX_SIZE_MB: u64 = 100;
const FILE_DEFAULT_KEEP: u32 = 5;
const HTTP_DEFAULT_BATCH_MAX: u64 = 500;
const HTTP_DEFAULT_BATCH_INTERVAL_MS: u64 = 1000;
const HTTP_DEFAULT_TIMEOUT_MS: u64 = 5000;
const HTTP_DEFAULT_MAX_RETRIES: u32 = 5;

/// Where a sink is in the file, for its errors.
struct SinkAt<'s> {
    /// `sinks[i]`.
    section: &'s str,
    type_name: &'static str,
    /// Where its `type` is written: missing fields are reported there.
    type_at: Location,
}

impl SinkAt<'_> {
    fn field(&self, field: &str) -> String {
        format!("{}.{field}", self.section)
    }
}

impl Validator<'_> {
    pub(super) fn sinks(&self, raw: Option<Spanned<Vec<Spanned<RawSink>>>>) -> Vec<SinkSpec> {
        let Some(raw) = raw else {
            return vec![SinkSpec::default_stdout()];
        };
        if raw.value.is_empty() {
            self.report(self.error(
                Some(raw.referenced),
                "sinks",
                "must list at least one sink (leave `sinks` out for the default: stdout, ecs)",
            ));
            return Vec::new();
        }
        let mut sinks: Vec<SinkSpec> = Vec::with_capacity(raw.value.len());
        let mut names: Vec<String> = Vec::with_capacity(raw.value.len());
        // Unnamed sinks seen so far, per type: for the derived names.
        let mut unnamed = [0usize; SINK_TYPES.len()];
        for (i, sink) in raw.value.into_iter().enumerate() {
            let (at, raw) = (sink.referenced, sink.value);
            let section = format!("sinks[{i}]");
            let Some((type_index, type_at)) = self.sink_type(&section, at, raw.kind.as_ref())
            else {
                continue;
            };
            let cx = SinkAt {
                section: &section,
                type_name: SINK_TYPES[type_index],
                type_at,
            };
            self.misplaced_fields(&cx, &raw);
            let name = self.sink_name(&cx, raw.name.as_ref(), &mut unnamed[type_index]);
            if names.contains(&name) {
                let name_at = raw.name.as_ref().map(|n| n.referenced);
                let how = if name_at.is_some() {
                    ""
                } else {
                    " (the name derived for this sink: give it a `name`)"
                };
                self.report(self.error(
                    Some(name_at.unwrap_or(at)),
                    cx.field("name"),
                    format!("duplicate sink name `{name}`{how}"),
                ));
            }
            names.push(name.clone());
            if let Some(spec) = self.sink(&cx, name, raw) {
                sinks.push(spec);
            }
        }
        sinks
    }

    /// The index of the sink's type in [`SINK_TYPES`] and where it is written.
    fn sink_type(
        &self,
        section: &str,
        at: Location,
        kind: Option<&Spanned<String>>,
    ) -> Option<(usize, Location)> {
        let Some(kind) = kind else {
            self.report(self.error(
                Some(at),
                format!("{section}.type"),
                format!("missing field `type` (one of {})", SINK_TYPES.join(", ")),
            ));
            return None;
        };
        let index = SINK_TYPES.iter().position(|t| *t == kind.value);
        if index.is_none() {
            self.report(self.error(
                Some(kind.referenced),
                format!("{section}.type"),
                format!(
                    "unknown sink type `{}`: expected one of {}",
                    kind.value,
                    SINK_TYPES.join(", ")
                ),
            ));
        }
        index.map(|i| (i, kind.referenced))
    }

    /// Fields of another sink type are errors, each at its own position.
    fn misplaced_fields(&self, cx: &SinkAt<'_>, raw: &RawSink) {
        let present: [(&str, Option<Location>); 12] = [
            ("path", raw.path.as_ref().map(|v| v.referenced)),
            (
                "max_size_mb",
                raw.max_size_mb.as_ref().map(|v| v.referenced),
            ),
            ("keep", raw.keep.as_ref().map(|v| v.referenced)),
            ("address", raw.address.as_ref().map(|v| v.referenced)),
            ("url", raw.url.as_ref().map(|v| v.referenced)),
            ("batch_max", raw.batch_max.as_ref().map(|v| v.referenced)),
            (
                "batch_interval_ms",
                raw.batch_interval_ms.as_ref().map(|v| v.referenced),
            ),
            ("timeout_ms", raw.timeout_ms.as_ref().map(|v| v.referenced)),
            (
                "max_retries",
                raw.max_retries.as_ref().map(|v| v.referenced),
            ),
            ("headers", raw.headers.as_ref().map(|v| v.referenced)),
            ("tls", raw.tls.as_ref().map(|v| v.referenced)),
            (
                "bearer_token_file",
                raw.bearer_token_file.as_ref().map(|v| v.referenced),
            ),
        ];
        let type_name = cx.type_name;
        let own = sink_type_fields(type_name);
        for (field, loc) in present {
            if let Some(loc) = loc
                && !own.contains(&field)
            {
                let fields: Vec<&str> = SINK_COMMON_FIELDS.iter().chain(own).copied().collect();
                self.report(self.error(
                    Some(loc),
                    cx.field(field),
                    format!(
                        "`{field}` is not a field of sinks of type {type_name} (their fields: {})",
                        fields.join(", ")
                    ),
                ));
            }
        }
    }

    /// The name as given (an invalid one reported), else derived from the type: `file`, then
    /// `file-2`, `file-3`...
    fn sink_name(
        &self,
        cx: &SinkAt<'_>,
        name: Option<&Spanned<String>>,
        unnamed: &mut usize,
    ) -> String {
        if let Some(n) = name {
            if check_group_name(&n.value).is_err() {
                self.report(self.error(
                    Some(n.referenced),
                    cx.field("name"),
                    format!(
                        "invalid sink name `{}`: use 1 to 63 characters a-z, 0-9, `_` and `-`, \
                         starting with a letter or digit",
                        n.value
                    ),
                ));
            }
            return n.value.clone();
        }
        *unnamed += 1;
        match *unnamed {
            1 => cx.type_name.to_owned(),
            k => format!("{}-{k}", cx.type_name),
        }
    }

    /// The settings every sink has, then those of its type; `None` when one of them is
    /// missing or bad (reported).
    fn sink(&self, cx: &SinkAt<'_>, name: String, mut raw: RawSink) -> Option<SinkSpec> {
        let format = raw.format.take().map_or(Some(Format::Ecs), |f| {
            let format = Format::from_name(&f.value).ok_or_else(|| {
                self.error(
                    Some(f.referenced),
                    cx.field("format"),
                    format!(
                        "unknown format `{}`: expected one of {}",
                        f.value,
                        Format::ALL.map(Format::name).join(", ")
                    ),
                )
            });
            self.check(format)
        });
        let queue = self.opt_u64(
            cx.section,
            &SINK_QUEUE,
            raw.queue.take(),
            SinkSpec::DEFAULT_QUEUE as u64,
        );
        let flows = raw
            .flows
            .take()
            .map_or(cx.type_name == "stdout", |f| f.value);
        let kind = match cx.type_name {
            "file" => self.file_sink(cx, raw),
            "syslog" => self.syslog_sink(cx, raw),
            "http" => self.http_sink(cx, raw),
            _ => Some(SinkKind::Stdout),
        };
        Some(SinkSpec {
            name,
            kind: kind?,
            format: format?,
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
            flows,
        })
    }

    /// A field the sink's type cannot do without; reported at `type` when missing.
    fn required(
        &self,
        cx: &SinkAt<'_>,
        value: Option<Spanned<String>>,
        field: &str,
        what: &str,
    ) -> Option<Spanned<String>> {
        if value.is_none() {
            self.report(self.error(
                Some(cx.type_at),
                cx.field(field),
                format!(
                    "missing field `{field}` ({what}) for a sink of type {}",
                    cx.type_name
                ),
            ));
        }
        value
    }

    fn file_sink(&self, cx: &SinkAt<'_>, raw: RawSink) -> Option<SinkKind> {
        let path = self
            .required(cx, raw.path, "path", "an absolute file path")
            .and_then(|path| {
                let p = std::path::PathBuf::from(path.value.trim());
                let problem = if !p.is_absolute() {
                    format!("`{}` is not an absolute path", path.value)
                } else if path.value.ends_with('/') {
                    format!("`{}` names a directory: give a file name", path.value)
                } else {
                    return Some(p);
                };
                self.report(self.error(Some(path.referenced), cx.field("path"), problem));
                None
            });
        let mb = self.opt_u64(
            cx.section,
            &FILE_MAX_SIZE_MB,
            raw.max_size_mb,
            FILE_DEFAULT_MAX_SIZE_MB,
        );
        let keep = self.opt_u32(cx.section, &FILE_KEEP, raw.keep, FILE_DEFAULT_KEEP);
        Some(SinkKind::File {
            path: path?,
            max_size_bytes: mb * 1024 * 1024,
            keep,
        })
    }

    fn syslog_sink(&self, cx: &SinkAt<'_>, raw: RawSink) -> Option<SinkKind> {
        let address = self.required(
            cx,
            raw.address,
            "address",
            "udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH",
        )?;
        let transport = parse_syslog_address(&address.value)
            .map_err(|m| self.error(Some(address.referenced), cx.field("address"), m));
        let transport = self.check(transport);
        let tls = match raw.tls {
            None => {
                if matches!(transport, Some(SyslogTransport::Tls(_))) {
                    self.report(self.error(
                        Some(address.referenced),
                        cx.field("tls.ca_file"),
                        "syslog over tls:// needs `tls: {ca_file: ...}`: the CA bundle that the \
                         receiver's certificate chains to",
                    ));
                    return None;
                }
                ClientTls::default()
            }
            Some(t) => {
                let at = t.referenced;
                let tls = self.client_tls(cx.section, t)?;
                match transport {
                    Some(SyslogTransport::Tls(_)) if tls.ca_file.is_none() => {
                        self.report(self.error(
                            Some(at),
                            cx.field("tls.ca_file"),
                            "syslog over tls:// needs `ca_file`: the CA bundle that the \
                             receiver's certificate chains to",
                        ));
                        return None;
                    }
                    Some(SyslogTransport::Tls(_)) | None => {}
                    Some(_) => {
                        self.report(self.error(
                            Some(at),
                            cx.field("tls"),
                            format!(
                                "`tls` applies to tls://HOST:PORT addresses only, not `{}`",
                                address.value.trim()
                            ),
                        ));
                        return None;
                    }
                }
                tls
            }
        };
        Some(SinkKind::Syslog {
            transport: transport?,
            tls,
        })
    }

    fn http_sink(&self, cx: &SinkAt<'_>, raw: RawSink) -> Option<SinkKind> {
        let url = self
            .required(cx, raw.url, "url", "an http:// or https:// URL")
            .and_then(|url| {
                let text = url.value.trim();
                let checked = check_http_url(text)
                    .map_err(|m| self.error(Some(url.referenced), cx.field("url"), m));
                self.check(checked).map(|()| text.to_owned())
            });
        let section = cx.section;
        let ms = std::time::Duration::from_millis;
        let batch_max = self.opt_u64(
            section,
            &HTTP_BATCH_MAX,
            raw.batch_max,
            HTTP_DEFAULT_BATCH_MAX,
        );
        let batch_interval = ms(self.opt_u64(
            section,
            &HTTP_BATCH_INTERVAL,
            raw.batch_interval_ms,
            HTTP_DEFAULT_BATCH_INTERVAL_MS,
        ));
        let timeout = ms(self.opt_u64(
            section,
            &HTTP_TIMEOUT,
            raw.timeout_ms,
            HTTP_DEFAULT_TIMEOUT_MS,
        ));
        let max_retries = self.opt_u32(
            section,
            &HTTP_MAX_RETRIES,
            raw.max_retries,
            HTTP_DEFAULT_MAX_RETRIES,
        );
        let headers = self.http_headers(cx, raw.headers.map(|h| h.value.0).unwrap_or_default());
        let tls = match raw.tls {
            None => Some(ClientTls::default()),
            Some(t) => {
                let at = t.referenced;
                let tls = self.client_tls(section, t);
                if tls.as_ref().is_some_and(|t| t.server_name.is_some()) {
                    self.report(self.error(
                        Some(at),
                        cx.field("tls.server_name"),
                        "an http sink verifies the URL's host: leave `server_name` out",
                    ));
                }
                if url
                    .as_deref()
                    .is_some_and(|u| !u.to_ascii_lowercase().starts_with("https://"))
                {
                    self.report(self.error(
                        Some(at),
                        cx.field("tls"),
                        "`tls` needs an https:// URL",
                    ));
                }
                tls
            }
        };
        let bearer_token_file = raw.bearer_token_file.and_then(|f| {
            if let Some((n, _)) = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                self.report(self.error(
                    Some(f.referenced),
                    cx.field("bearer_token_file"),
                    format!("`headers.{n}` is set too: give one or the other"),
                ));
                return None;
            }
            self.token_file(&cx.field("bearer_token_file"), &f)
        });
        Some(SinkKind::Http {
            tls: tls?,
            bearer_token_file,
            url: url?,
            batch_max: usize::try_from(batch_max).unwrap_or(usize::MAX),
            batch_interval,
            timeout,
            max_retries,
            headers,
        })
    }

    /// The headers in file order; each bad name or value and each repeated name reported.
    fn http_headers(
        &self,
        cx: &SinkAt<'_>,
        raw: Vec<(Spanned<String>, Spanned<String>)>,
    ) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let field = cx.field(&format!("headers.{}", name.value));
            let checked = check_header_name(&name.value)
                .map_err(|m| self.error(Some(name.referenced), field.as_str(), m));
            if self.check(checked).is_none() {
                continue;
            }
            if headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&name.value))
            {
                self.report(self.error(
                    Some(name.referenced),
                    field,
                    format!(
                        "duplicate header `{}` (header names ignore case)",
                        name.value
                    ),
                ));
                continue;
            }
            let checked = check_header_value(&value.value)
                .map_err(|m| self.error(Some(value.referenced), field.as_str(), m));
            if self.check(checked).is_some() {
                headers.push((name.value, value.value));
            }
        }
        headers
    }
}
