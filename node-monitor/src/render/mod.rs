//! Render: one output item → one line in the sink's format (ECS JSON, OCSF JSON or CEF).
//!
//! This module only dispatches. The formats ([`ecs`], [`ocsf`], [`cef`]) build on the JSON
//! writer (`json.rs`), the facts they share (`facts.rs`), the messages (`message.rs`) and the
//! Community ID ([`community_id`](mod@community_id)); none of them uses this module.
pub mod audit;
pub mod cef;
#[cfg(test)]
mod check;
pub mod community_id;
pub mod ecs;
mod facts;
pub mod finding;
mod fragments;
mod identity;
mod json;
mod message;
mod observer;
pub mod ocsf;

pub use facts::{COMMUNITY_ID_SEED, community_id};
pub use observer::Observer;

use crate::{config::Format, detect::OutputItem};

/// Renders one item as one line (no trailing newline).
pub fn render(item: &OutputItem, format: Format, observer: &Observer) -> String {
    let mut out = Vec::with_capacity(2048);
    render_into(item, format, observer, &mut out);
    // Every writer appends UTF-8 only (strings, numbers, escapes).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends one item as one line (no trailing newline) to `out`, which a sink reuses.
pub fn render_into(item: &OutputItem, format: Format, observer: &Observer, out: &mut Vec<u8>) {
    match format {
        Format::Ecs => ecs::render_into(item, observer, out),
        Format::Ocsf => ocsf::render_into(item, observer, out),
        Format::Cef => cef::render_into(item, observer, out),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        detect::fixture::{connection_alert, flood, follow_up, sweep, variety},
        record::fixture::{flagged, sampled},
        render::check::observer,
    };

    #[test]
    fn message_written_in_place_matches_message() {
        // Every format writes the message straight into its output; `message()` is the text
        // it must be, for every kind of item (CEF's tests check its `msg` the same way).
        let obs = observer();
        for item in &variety() {
            let ecs = ecs::to_value(item, &obs);
            assert_eq!(ecs["message"], message::message(item), "{item:?}");
            let ocsf = ocsf::to_value(item, &obs);
            assert_eq!(ocsf["message"], message::message(item), "{item:?}");
        }
    }

    #[test]
    fn render_dispatches_one_line_per_format() {
        let items = [
            OutputItem::Alert(connection_alert()),
            OutputItem::Alert(follow_up()),
            OutputItem::Alert(sweep()),
            OutputItem::Alert(flood()),
            OutputItem::Flow(sampled()),
        ];
        for item in &items {
            for format in [Format::Ecs, Format::Ocsf, Format::Cef] {
                let line = render(item, format, &observer());
                assert!(
                    !line.contains('\n') && !line.contains('\r'),
                    "{format:?}: {line}"
                );
                match format {
                    Format::Cef => {
                        assert!(line.starts_with("CEF:0|node-monitor|node-monitor|0.1.0|"));
                    }
                    _ => {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                        assert!(v.is_object());
                    }
                }
            }
        }
    }

    /// Engine output straight into every format.
    #[test]
    fn engine_to_formats() {
        use std::time::Instant;

        use crate::detect::{Engine, LossTotals, tests::settings};
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        e.on_losses(&LossTotals::default(), t0, &mut out); // the baseline at start
        e.on_losses(
            &LossTotals {
                ringbuf_full: 3,
                ..Default::default()
            },
            t0,
            &mut out,
        );
        let mut r = flagged();
        r.group = "etcd-peer".into();
        r.dst_port = 2380;
        e.on_record(&r, t0, &mut out);
        e.on_record(&r, t0 + Duration::from_secs(1), &mut out);
        e.flush(&mut out);
        assert_eq!(out.len(), 3, "first, follow-up, flood");
        let first = ecs::to_value(&OutputItem::Alert(out[0].clone()), &observer());
        assert_eq!(first["rule"]["id"], "NM-1003");
        assert_eq!(first["event"]["severity"], 99);
        assert_eq!(
            first["node_monitor"]["losses_since_previous"]["ringbuf_full"],
            3
        );
        let up = ocsf::to_value(&OutputItem::Alert(out[1].clone()), &observer());
        assert_eq!(up["activity_id"], 2);
        assert_eq!(up["finding_info"]["uid"], out[0].id);
        assert_eq!(up["count"], 2);
        let cef = render(&OutputItem::Alert(out[2].clone()), Format::Cef, &observer());
        assert!(
            cef.contains("|NM-1020|event limits reached (flood)|5|"),
            "{cef}"
        );
        assert!(cef.contains("cn3=3 cn3Label=ringbufFull"), "{cef}");
    }
}
