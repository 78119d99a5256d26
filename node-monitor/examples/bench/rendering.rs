//! The rendering section: µs per item of each SIEM format over one realistic mix of
//! output items, on one core.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use node_monitor::{
    config::Format,
    detect::{Alert, AlertKind, FloodScope, OutputItem, rules},
    record::{Action, Answer, Family, FlowRecord, RecordType, Verdict, fixture},
    render::{self, Observer},
};

use crate::testrun::median;

/// Rendering on one core: µs per item of each SIEM format over the same 100,000-item mix.
pub(crate) fn rendering(report: &mut String) -> anyhow::Result<()> {
    const ITEMS: usize = 100_000;
    const ROUNDS: usize = 3;
    let items = render_mix(ITEMS);
    let observer = Observer::local();
    writeln!(report)?;
    writeln!(report, "## Rendering")?;
    writeln!(report)?;
    writeln!(
        report,
        "`node_monitor::render::render` of {ITEMS} items, one line each, on one core: 70% connection alerts (IPv4 and IPv6, some VLAN tagged), 10% dedup follow-ups, 10% sampled flows, 5% sweeps, 5% floods. Median of {ROUNDS} rounds. The budget is what a file sink writing 200,000 alerts/s on one core leaves for rendering."
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "| format | µs/item | items/s | bytes/item | target | met |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---|:---:|")?;
    for f in [Format::Ecs, Format::Ocsf, Format::Cef] {
        let mut per_item = Vec::new();
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            bytes = 0;
            for item in &items {
                bytes += render::render(item, f, &observer).len();
            }
            per_item.push(t.elapsed().as_secs_f64() * 1e6 / ITEMS as f64);
        }
        let us = median(&mut per_item);
        eprintln!("rendering {f:?}: {us:.2} µs/item");
        writeln!(
            report,
            "| {f:?} | {us:.2} | {:.0} | {} | <= 3 µs | {} |",
            1e6 / us,
            bytes / ITEMS,
            if us <= 3.0 { "yes" } else { "NO" }
        )?;
    }
    Ok(())
}

/// A realistic mix of 100,000 output items for the rendering figures: 70% connection alerts
/// (IPv4 and IPv6, some VLAN tagged, every action and answer), 10% dedup follow-ups, 10%
/// sampled flows, 5% sweeps, 5% floods; about a third carry losses since the previous alert.
fn render_mix(n: usize) -> Vec<OutputItem> {
    let now = SystemTime::now();
    let record = |i: usize| {
        let v6 = i.is_multiple_of(4);
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if v6 {
            (
                Ipv6Addr::new(0x2001, 0xdb8, 0, (i % 65536) as u16, 0, 0, 0, 7).into(),
                Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1).into(),
            )
        } else {
            (
                Ipv4Addr::new(203, 0, 113, (i % 256) as u8).into(),
                Ipv4Addr::new(198, 51, 100, 1).into(),
            )
        };
        let (verdict, action) = match i % 3 {
            0 => (Verdict::Denied, Action::WouldDrop),
            1 => (Verdict::Denied, Action::Dropped),
            _ => (Verdict::Allowed, Action::Pass),
        };
        let wall = now + Duration::from_micros(i as u64);
        FlowRecord {
            time: wall,
            verdict,
            action,
            answer: [
                None,
                Some(Answer::Accepted),
                Some(Answer::Refused),
                Some(Answer::NoAnswer),
            ][i % 4],
            answer_corrects: None,
            family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
            src_ip,
            src_port: 30000 + (i % 30000) as u16,
            dst_ip,
            dst_port: 10250,
            vlan: match i % 10 {
                0 => vec![100, 200],
                1 | 2 => vec![100],
                _ => vec![],
            },
            packet_length: 74,
            ktime_ns: i as u64,
            ..fixture::flagged()
        }
    };
    let kubelet = rules::rule_for_group("kubelet");
    (0..n)
        .map(|i| {
            let rec = record(i);
            let mut losses = BTreeMap::new();
            if i % 3 == 0 {
                losses.insert("ringbuf_full".to_owned(), (i % 17) as u64);
            }
            let time = rec.time;
            let alert = |rule, kind| Alert {
                id: format!("3f2b8c1e-7d4a-4e8b-9c1d-{i:012x}"),
                time,
                rule,
                kind,
                suppressed: 0,
                follow_up_of: None,
                repeats_by_answer: None,
                losses_since_previous: losses.clone(),
            };
            match i % 20 {
                0 | 1 => {
                    let mut r = rec.clone();
                    r.record_type = RecordType::Sampled;
                    r.answer = None;
                    r.sampled = true;
                    OutputItem::Flow(r)
                }
                2 | 3 => {
                    let mut a = alert(kubelet, AlertKind::Connection { record: rec });
                    a.suppressed = (i % 50) as u64 + 1;
                    a.follow_up_of = Some("3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d".to_owned());
                    OutputItem::Alert(a)
                }
                4 => OutputItem::Alert(alert(
                    rules::sweep_rule(),
                    AlertKind::Sweep {
                        source: rec.src_ip,
                        group: "nodeport".into(),
                        ports: (30000..30010).collect(),
                        window: Duration::from_secs(60),
                        last: rec,
                    },
                )),
                5 => OutputItem::Alert(alert(
                    rules::flood_rule(),
                    AlertKind::Flood {
                        scope: if i % 40 == 5 {
                            FloodScope::Node
                        } else {
                            FloodScope::Source(rec.src_ip)
                        },
                        rate_limited: 260,
                        ringbuf_full: 7,
                        window: Duration::from_secs(10),
                        summary: None,
                    },
                )),
                _ => OutputItem::Alert(alert(kubelet, AlertKind::Connection { record: rec })),
            }
        })
        .collect()
}
