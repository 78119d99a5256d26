//! Reading YAML text into the raw structs: serde-saphyr's messages reworded for whoever edits
//! the file, and serde paths turned into dotted field names.

use std::borrow::Cow;

use serde_saphyr::{DefaultMessageFormatter, Localizer, Location, MessageFormatter};

use super::{
    error::ConfigError,
    raw::{CURRENT_GROUP, RawConfig, set_current_group},
};

/// Renders serde-saphyr messages without the " at line X, column Y" suffix: the position goes
/// into [`ConfigError::line`] / [`ConfigError::column`] instead.
struct PlainMessages;

struct NoLocationSuffix;

impl Localizer for NoLocationSuffix {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _loc: Location) -> Cow<'a, str> {
        base
    }
}

impl MessageFormatter for PlainMessages {
    fn localizer(&self) -> &dyn Localizer {
        &NoLocationSuffix
    }

    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        match err {
            serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
                Cow::Owned(format!("duplicate key `{k}`"))
            }
            serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
                Cow::Borrowed("duplicate key")
            }
            serde_saphyr::Error::InvalidScalar { ty, .. } if ty.starts_with('u') => {
                Cow::Borrowed("expected a whole number (0 or more)")
            }
            serde_saphyr::Error::ExternalMessage { source, .. }
                if matches!(**source, serde_saphyr::ExternalMessageSource::Parser(_)) =>
            {
                Cow::Owned(format!(
                    "YAML syntax error: {}",
                    DefaultMessageFormatter.format_message(err)
                ))
            }
            serde_saphyr::Error::MultipleDocuments { .. } => {
                Cow::Borrowed("more than one YAML document: a config file holds exactly one")
            }
            _ => {
                // Reword the few messages that speak to a Rust developer rather than to
                // whoever edits the file.
                let message = DefaultMessageFormatter.format_message(err);
                if message.starts_with("cannot deserialize null") {
                    Cow::Borrowed("expected a value, found null (nothing)")
                } else if message.ends_with("expected mapping start") {
                    Cow::Borrowed("expected a mapping (`key: value` entries)")
                } else if message.starts_with("invalid boolean") {
                    Cow::Borrowed("expected true or false")
                } else if message.ends_with("expected sequence start") {
                    Cow::Borrowed("expected a list (`[a, b]` or `- a` lines)")
                } else {
                    message
                }
            }
        }
    }
}

/// Reads the YAML into the raw structs. `Ok(None)` for an empty document.
pub(super) fn parse_raw(text: &str, origin: &str) -> Result<Option<RawConfig>, ConfigError> {
    set_current_group(None);
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut path: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Option<RawConfig>>(de).map_err(|e| {
            let unknown_field = matches!(e.inner(), serde_saphyr::Error::SerdeUnknownField { .. });
            path = Some(render_path(e.path(), unknown_field));
            e.into_inner()
        })
    });
    set_current_group(None);
    result.map_err(|e| {
        let location = e.location().filter(|l| l.line() > 0);
        ConfigError {
            origin: origin.to_owned(),
            line: location.and_then(|l| usize::try_from(l.line()).ok()),
            column: location
                .filter(|l| l.column() > 0)
                .and_then(|l| usize::try_from(l.column()).ok()),
            field: path.unwrap_or_default(),
            message: e.render_with_options(serde_saphyr::render_options! {
                formatter: &PlainMessages,
                snippets: serde_saphyr::SnippetMode::Off,
            }),
        }
    })
}

/// Turns a serde path into the dotted form of [`ConfigError::field`]: drops the `value`
/// segments that `Spanned` adds, and names the group that the tracker cannot see.
fn render_path(path: &serde_path_to_error::Path, unknown_field: bool) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let key: Cow<'_, str> = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            // `Spanned<T>` reads its inner value through a `value` key; an unknown field
            // literally named `value` is the last segment of an unknown-field error.
            Segment::Map { key } if key == "value" && !(last && unknown_field) => continue,
            Segment::Map { key } => Cow::Borrowed(key.as_str()),
            Segment::Enum { variant } => Cow::Borrowed(variant.as_str()),
            Segment::Unknown => {
                let in_groups =
                    i == 1 && matches!(segments[0], Segment::Map { key } if key == "groups");
                match CURRENT_GROUP.with(|c| c.borrow().clone()) {
                    Some(name) if in_groups => Cow::Owned(name),
                    _ => continue,
                }
            }
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&key);
    }
    out
}
