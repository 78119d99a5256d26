//! Alert messages: one readable sentence about each item, written straight into its
//! destination (a JSON string, a CEF line) without the `fmt` machinery: this runs for every
//! item of every format.
use std::{fmt, net::IpAddr};

use super::json::write_ip;
use crate::{
    detect::{AlertKind, OutputItem},
    record::{FlowRecord, RecordType},
};

/// `src -> dst/proto` of a record, IPv6 addresses in brackets.
fn write_endpoints(out: &mut Vec<u8>, r: &FlowRecord) {
    let ep = |out: &mut Vec<u8>, ip: IpAddr, port: u16| {
        if ip.is_ipv6() {
            out.push(b'[');
            write_ip(out, ip);
            out.extend_from_slice(b"]:");
        } else {
            write_ip(out, ip);
            out.push(b':');
        }
        out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    };
    ep(out, r.src_ip, r.src_port);
    out.extend_from_slice(b" -> ");
    ep(out, r.dst_ip, r.dst_port);
    out.push(b'/');
    out.extend_from_slice(r.protocol.name().as_bytes());
}

/// One readable sentence about the item. [`Message::write_to`] writes it straight into its
/// destination.
pub(crate) struct Message<'a>(pub &'a OutputItem);

impl Message<'_> {
    /// Appends the sentence to `out`, unescaped.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let num = |out: &mut Vec<u8>, n: u64| {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        };
        let text = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
        match self.0 {
            OutputItem::Flow(r) => {
                text(out, "Sampled flow ");
                write_endpoints(out, r);
                text(out, " of group ");
                text(out, &r.group);
                text(out, " (");
                text(out, r.verdict.as_str());
                text(out, ", ");
                text(out, r.action.as_str());
                text(out, ").");
                super::identity::write_sentence(out, r);
            }
            OutputItem::Finding(f) => text(out, &super::finding::message(f)),
            OutputItem::Alert(a) => {
                text(out, a.rule.name);
                text(out, ": ");
                match &a.kind {
                    AlertKind::Connection { record: r } => {
                        write_endpoints(out, r);
                        text(out, " (group ");
                        text(out, &r.group);
                        text(out, ", ");
                        text(out, r.action.as_str());
                        if let Some(x) = r.answer {
                            text(out, ", answer ");
                            text(out, x.as_str());
                        }
                        if let Some(x) = r.answer_corrects {
                            text(out, " after being reported as ");
                            text(out, x.as_str());
                        }
                        if r.fragmented {
                            text(out, ", sent in IPv4 fragments");
                        }
                        if r.record_type == RecordType::Revoked {
                            text(out, ", still open after its source was revoked");
                        }
                        if r.completes_reported {
                            text(
                                out,
                                ", handshake completed after the cap on connection alerts folded its alert",
                            );
                        } else if r.handshake_completed {
                            text(
                                out,
                                ", handshake completed after event budgets withheld its attempt and the node's answer",
                            );
                        } else if r.record_type == RecordType::Unseen {
                            text(out, ", no attempt seen on ingress");
                        }
                        text(out, ").");
                        super::identity::write_sentence(out, r);
                    }
                    AlertKind::Sweep {
                        source,
                        group,
                        ports,
                        window,
                        ..
                    } => {
                        write_ip(out, *source);
                        text(out, " reached ");
                        num(out, ports.len() as u64);
                        text(out, " distinct ports of group ");
                        text(out, group);
                        text(out, " within ");
                        num(out, window.as_secs());
                        text(out, "s.");
                    }
                    AlertKind::Scan {
                        source,
                        ports,
                        groups,
                        window,
                        connections,
                        connection_alerts,
                        ..
                    } => {
                        write_ip(out, *source);
                        text(out, " reached ");
                        num(out, ports.len() as u64);
                        text(out, " distinct watched ports (");
                        for (i, p) in ports.iter().enumerate() {
                            if i > 0 {
                                text(out, ", ");
                            }
                            num(out, u64::from(*p));
                        }
                        text(out, ") of ");
                        num(out, groups.len() as u64);
                        text(out, " groups (");
                        for (i, g) in groups.iter().enumerate() {
                            if i > 0 {
                                text(out, ", ");
                            }
                            text(out, g);
                        }
                        text(out, ") within ");
                        num(out, window.as_secs());
                        text(out, "s: ");
                        num(out, *connections);
                        text(out, " connection");
                        text(out, if *connections == 1 { "" } else { "s" });
                        text(out, ", ");
                        num(out, *connection_alerts);
                        text(out, " of them alerted on their own.");
                    }
                    AlertKind::Flood {
                        scope: crate::detect::FloodScope::Group(group),
                        rate_limited,
                        ringbuf_full,
                        window,
                        summary: Some(s),
                    } => {
                        text(out, "group ");
                        text(out, group);
                        text(out, ": ");
                        num(out, s.new_connections);
                        text(out, " new connections within ");
                        num(out, window.as_secs());
                        text(out, "s, ");
                        num(out, s.events);
                        text(out, " reported, ");
                        num(out, *rate_limited);
                        text(out, " withheld by the per-source limit, ");
                        num(out, s.group_budget);
                        text(out, " by the group budget, ");
                        num(out, *ringbuf_full);
                        text(out, " lost to a full ring buffer; ");
                        if s.folded_alerts > 0 {
                            num(out, s.folded_alerts);
                            text(out, " connection alert");
                            text(out, if s.folded_alerts == 1 { "" } else { "s" });
                            text(out, " folded in here (");
                            num(out, s.folded_by_answer.accepted);
                            text(out, " accepted, ");
                            num(out, s.folded_by_answer.refused);
                            text(out, " refused, ");
                            num(out, s.folded_by_answer.no_answer);
                            text(out, " unanswered); ");
                        }
                        text(out, "about ");
                        num(out, s.distinct_sources);
                        text(out, " distinct sources");
                        if s.spoofed_likely {
                            text(out, " (spoofed likely)");
                        }
                        text(out, "; the node accepted ");
                        num(out, s.answered.accepted);
                        text(out, " and refused ");
                        num(out, s.answered.refused);
                        text(out, ".");
                    }
                    AlertKind::Flood {
                        rate_limited,
                        ringbuf_full,
                        window,
                        ..
                    } => {
                        num(out, *rate_limited);
                        text(out, " events withheld by the rate limit and ");
                        num(out, *ringbuf_full);
                        text(out, " lost to a full ring buffer within ");
                        num(out, window.as_secs());
                        text(out, "s.");
                    }
                }
                if a.suppressed > 0 {
                    text(out, " ");
                    num(out, a.suppressed);
                    text(out, " more occurrence");
                    text(out, if a.suppressed == 1 { "" } else { "s" });
                    text(out, " since the first alert");
                    if let Some(c) = &a.repeats_by_answer {
                        text(out, " (");
                        num(out, c.accepted);
                        text(out, " accepted, ");
                        num(out, c.refused);
                        text(out, " refused, ");
                        num(out, c.no_answer);
                        text(out, " unanswered)");
                    }
                    text(out, ".");
                }
            }
        }
    }
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(160);
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// One readable sentence about the item.
#[cfg(test)]
pub(crate) fn message(item: &OutputItem) -> String {
    Message(item).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::fixture::{connection_alert, flood, follow_up, late_answer_alert, sweep},
        record::fixture::sampled,
    };

    #[test]
    fn messages() {
        let m = message(&OutputItem::Alert(connection_alert()));
        assert_eq!(
            m,
            "kubelet API access from a source not allowed: 128.232.110.120:34855 -> \
             66.35.250.204:80/tcp (group kubelet, would_drop, answer refused)."
        );
        assert!(message(&OutputItem::Alert(follow_up())).ends_with(
            " 17 more occurrences since the first alert \
                     (0 accepted, 12 refused, 5 unanswered)."
        ));
        assert_eq!(
            message(&OutputItem::Alert(late_answer_alert())),
            "kubelet API access from a source not allowed: 128.232.110.120:34855 -> \
             66.35.250.204:80/tcp (group kubelet, would_drop, answer accepted after being \
             reported as no_answer)."
        );
        assert_eq!(
            message(&OutputItem::Alert(sweep())),
            "NodePort sweep: 128.232.110.120 reached 5 distinct ports of group nodeport within 60s."
        );
        assert!(
            message(&OutputItem::Alert(flood()))
                .contains("260 events withheld by the rate limit and 7 lost")
        );
        assert_eq!(
            message(&OutputItem::Flow(sampled())),
            "Sampled flow [2001:470:e5bf:dead:4957:2174:e82c:4887]:63943 -> [2607:f8b0:400c:c03::1a]:30053/udp \
             of group nodeport (allowed, pass)."
        );
    }
}
