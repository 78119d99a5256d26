//! Validation of `sinks`: one function per sink type plus the fields every sink shares.

use serde_saphyr::{Location, Spanned};

use super::addresses::{
    check_header_name, check_header_value, check_http_url, parse_syslog_address,
};
use super::groups::check_group_name;
use super::{Bound, Validator};
use crate::config::error::ConfigError;
use crate::config::outputs::{Format, SinkKind, SinkSpec};
use crate::config::raw::RawSink;

/// The sink types, in the order error messages list them.
const SINK_TYPES: [&str; 4] = ["stdout", "file", "syslog", "http"];

/// Fields every sink takes.
const SINK_COMMON_FIELDS: [&str; 5] = ["type", "name", "format", "queue", "flows"];

/// The fields of each sink type besides the common ones.
fn sink_type_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" => &["path", "max_size_mb", "keep"],
        "syslog" => &["address"],
        "http" => &[
            "url",
            "batch_max",
            "batch_interval_ms",
            "timeout_ms",
            "max_retries",
            "headers",
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

impl Validator<'_> {
    pub(super) fn sinks(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawSink>>>>,
    ) -> Result<Vec<SinkSpec>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(vec![SinkSpec::default_stdout()]);
        };
        if raw.value.is_empty() {
            return Err(self.error(
                Some(raw.referenced),
                "sinks",
                "must list at least one sink (leave `sinks` out for the default: stdout, ecs)",
            ));
        }
        let mut sinks: Vec<SinkSpec> = Vec::with_capacity(raw.value.len());
        // Unnamed sinks seen so far, per type: for the derived names.
        let mut unnamed = [0usize; SINK_TYPES.len()];
        for (i, sink) in raw.value.into_iter().enumerate() {
            let at = sink.referenced;
            let (spec, name_at) = self.sink(i, at, sink.value, &mut unnamed)?;
            if sinks.iter().any(|s| s.name == spec.name) {
                let how = if name_at.is_some() {
                    String::new()
                } else {
                    " (the name derived for this sink: give it a `name`)".to_owned()
                };
                return Err(self.error(
                    Some(name_at.unwrap_or(at)),
                    format!("sinks[{i}].name"),
                    format!("duplicate sink name `{}`{how}", spec.name),
                ));
            }
            sinks.push(spec);
        }
        Ok(sinks)
    }

    /// One sink; also returns where its `name` was written, if it was.
    fn sink(
        &self,
        i: usize,
        at: Location,
        raw: RawSink,
        unnamed: &mut [usize; SINK_TYPES.len()],
    ) -> Result<(SinkSpec, Option<Location>), ConfigError> {
        let section = format!("sinks[{i}]");
        let Some(kind) = raw.kind else {
            return Err(self.error(
                Some(at),
                format!("{section}.type"),
                format!("missing field `type` (one of {})", SINK_TYPES.join(", ")),
            ));
        };
        let Some(type_index) = SINK_TYPES.iter().position(|t| *t == kind.value) else {
            return Err(self.error(
                Some(kind.referenced),
                format!("{section}.type"),
                format!(
                    "unknown sink type `{}`: expected one of {}",
                    kind.value,
                    SINK_TYPES.join(", ")
                ),
            ));
        };
        let type_name = SINK_TYPES[type_index];

        // Fields of another sink type are errors, at their own position.
        let present: [(&str, Option<Location>); 10] = [
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
        ];
        let own = sink_type_fields(type_name);
        for (field, loc) in present {
            if let Some(loc) = loc
                && !own.contains(&field)
            {
                let fields: Vec<&str> = SINK_COMMON_FIELDS.iter().chain(own).copied().collect();
                return Err(self.error(
                    Some(loc),
                    format!("{section}.{field}"),
                    format!(
                        "`{field}` is not a field of sinks of type {type_name} (their fields: {})",
                        fields.join(", ")
                    ),
                ));
            }
        }

        let name_at = raw.name.as_ref().map(|n| n.referenced);
        let name = match raw.name {
            Some(n) => {
                check_group_name(&n.value).map_err(|_| {
                    self.error(
                        Some(n.referenced),
                        format!("{section}.name"),
                        format!(
                            "invalid sink name `{}`: use 1 to 63 characters a-z, 0-9, `_` \
                                 and `-`, starting with a letter or digit",
                            n.value
                        ),
                    )
                })?;
                n.value
            }
            None => {
                unnamed[type_index] += 1;
                match unnamed[type_index] {
                    1 => type_name.to_owned(),
                    k => format!("{type_name}-{k}"),
                }
            }
        };
        let format = match raw.format {
            None => Format::Ecs,
            Some(f) => Format::from_name(&f.value).ok_or_else(|| {
                self.error(
                    Some(f.referenced),
                    format!("{section}.format"),
                    format!(
                        "unknown format `{}`: expected one of {}",
                        f.value,
                        Format::ALL.map(Format::name).join(", ")
                    ),
                )
            })?,
        };
        let queue = self.opt_u64(
            &section,
            &SINK_QUEUE,
            raw.queue,
            SinkSpec::DEFAULT_QUEUE as u64,
        )?;
        let queue = usize::try_from(queue).unwrap_or(usize::MAX);
        let flows = raw.flows.map_or(type_name == "stdout", |f| f.value);

        let required = |value: Option<Spanned<String>>, field: &str, what: &str| {
            value.ok_or_else(|| {
                self.error(
                    Some(kind.referenced),
                    format!("{section}.{field}"),
                    format!("missing field `{field}` ({what}) for a sink of type {type_name}"),
                )
            })
        };
        let kind = match type_name {
            "file" => {
                let path = required(raw.path, "path", "an absolute file path")?;
                let p = std::path::PathBuf::from(path.value.trim());
                if !p.is_absolute() {
                    return Err(self.error(
                        Some(path.referenced),
                        format!("{section}.path"),
                        format!("`{}` is not an absolute path", path.value),
                    ));
                }
                if path.value.ends_with('/') {
                    return Err(self.error(
                        Some(path.referenced),
                        format!("{section}.path"),
                        format!("`{}` names a directory: give a file name", path.value),
                    ));
                }
                let mb = self.opt_u64(
                    &section,
                    &FILE_MAX_SIZE_MB,
                    raw.max_size_mb,
                    FILE_DEFAULT_MAX_SIZE_MB,
                )?;
                let keep = self.opt_u32(&section, &FILE_KEEP, raw.keep, FILE_DEFAULT_KEEP)?;
                SinkKind::File {
                    path: p,
                    max_size_bytes: mb * 1024 * 1024,
                    keep,
                }
            }
            "syslog" => {
                let address = required(
                    raw.address,
                    "address",
                    "udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH",
                )?;
                let transport = parse_syslog_address(&address.value).map_err(|m| {
                    self.error(Some(address.referenced), format!("{section}.address"), m)
                })?;
                SinkKind::Syslog { transport }
            }
            "http" => {
                let url = required(raw.url, "url", "an http:// or https:// URL")?;
                let text = url.value.trim();
                check_http_url(text)
                    .map_err(|m| self.error(Some(url.referenced), format!("{section}.url"), m))?;
                let ms = std::time::Duration::from_millis;
                let batch_max = self.opt_u64(
                    &section,
                    &HTTP_BATCH_MAX,
                    raw.batch_max,
                    HTTP_DEFAULT_BATCH_MAX,
                )?;
                let batch_interval = ms(self.opt_u64(
                    &section,
                    &HTTP_BATCH_INTERVAL,
                    raw.batch_interval_ms,
                    HTTP_DEFAULT_BATCH_INTERVAL_MS,
                )?);
                let timeout = ms(self.opt_u64(
                    &section,
                    &HTTP_TIMEOUT,
                    raw.timeout_ms,
                    HTTP_DEFAULT_TIMEOUT_MS,
                )?);
                let max_retries = self.opt_u32(
                    &section,
                    &HTTP_MAX_RETRIES,
                    raw.max_retries,
                    HTTP_DEFAULT_MAX_RETRIES,
                )?;
                let mut headers: Vec<(String, String)> = Vec::new();
                for (name, value) in raw.headers.map(|h| h.value.0).unwrap_or_default() {
                    let field = format!("{section}.headers.{}", name.value);
                    check_header_name(&name.value)
                        .map_err(|m| self.error(Some(name.referenced), field.as_str(), m))?;
                    if headers
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&name.value))
                    {
                        return Err(self.error(
                            Some(name.referenced),
                            field,
                            format!(
                                "duplicate header `{}` (header names ignore case)",
                                name.value
                            ),
                        ));
                    }
                    check_header_value(&value.value)
                        .map_err(|m| self.error(Some(value.referenced), field.as_str(), m))?;
                    headers.push((name.value, value.value));
                }
                SinkKind::Http {
                    url: text.to_owned(),
                    batch_max: usize::try_from(batch_max).unwrap_or(usize::MAX),
                    batch_interval,
                    timeout,
                    max_retries,
                    headers,
                }
            }
            _ => SinkKind::Stdout,
        };
        Ok((
            SinkSpec {
                name,
                kind,
                format,
                queue,
                flows,
            },
            name_at,
        ))
    }
}
