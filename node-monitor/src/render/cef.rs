//! ArcSight Common Event Format (CEF:0), as Microsoft Sentinel (CommonSecurityLog) and
//! ArcSight ingest it: `CEF:0|vendor|product|version|signature id|name|severity|extensions`.
use std::net::IpAddr;

use super::{
    facts::{
        community_id_text, epoch_ms, item_time, outcome, parts, rule_category, spans_connections,
    },
    identity::cef_pairs,
    json::write_ip,
    message::Message,
    observer::Observer,
};
use crate::{
    config::FindingSeverity,
    detect::{AlertKind, FloodScope, FloodSummary, OutputItem, Severity},
    posture::FindingEvent,
    record::{FlowRecord, Protocol, RecordType},
};

/// CEF severity (0-10).
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// Severity of a sampled flow (informational).
pub const FLOW_SEVERITY: u8 = 1;

/// Escapes a header field: `\\` and `|`; line breaks (not allowed in a header) become spaces.
pub fn escape_header(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    escape_header_into(&mut out, s.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes an extension value: `\\`, `=`, and line breaks as `\n` / `\r`.
pub fn escape_value(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    escape_value_into(&mut out, s.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

// Both escapes work on bytes: every byte they change is ASCII, and no byte of a multi-byte
// UTF-8 character is ASCII, so the text stays valid UTF-8.
fn escape_header_into(out: &mut Vec<u8>, s: &[u8]) {
    if !s.iter().any(|b| matches!(b, b'\\' | b'|' | b'\r' | b'\n')) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'|' => out.extend_from_slice(b"\\|"),
            b'\r' | b'\n' => out.push(b' '),
            b => out.push(b),
        }
    }
}

fn needs_value_escape(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b'\\' | b'=' | b'\r' | b'\n'))
}

fn escape_value_into(out: &mut Vec<u8>, s: &[u8]) {
    if !needs_value_escape(s) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'=' => out.extend_from_slice(b"\\="),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

/// Writes the extensions in order, straight into the line: `key=value` pairs separated by
/// spaces (keys are fixed identifiers, values escaped as they are written).
struct Ext<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Ext<'_> {
    fn key(&mut self, key: &str) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.out.push(b' ');
        }
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
        self
    }
    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape_value_into(self.out, value.as_bytes());
    }
    /// An address (addresses need no escaping).
    fn ip(&mut self, key: &str, ip: IpAddr) {
        self.key(key);
        write_ip(self.out, ip);
    }
    fn num(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }
    /// A comma-separated list of ports (digits and commas need no escaping).
    fn ports(&mut self, key: &str, ports: &[u16]) {
        self.key(key);
        for (i, p) in ports.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(itoa::Buffer::new().format(*p).as_bytes());
        }
    }
    /// The text that `write` appends, written in place and escaped only if it needs it.
    fn text(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.key(key);
        let start = self.out.len();
        write(self.out);
        if needs_value_escape(&self.out[start..]) {
            let text = self.out.split_off(start);
            escape_value_into(self.out, &text);
        }
    }
}

/// `group`: the port group (`cs1`), labelled `group_label` (a scan writes its groups).
fn connection(ext: &mut Ext<'_>, r: &FlowRecord, with_ports: bool, group: &str, group_label: &str) {
    ext.ip("src", r.src_ip);
    if with_ports {
        ext.num("spt", r.src_port);
    }
    ext.ip("dst", r.dst_ip);
    if with_ports {
        ext.num("dpt", r.dst_port);
    }
    // IPv6 also in the dedicated custom fields for consumers that take only IPv4 in src/dst.
    if let IpAddr::V6(ip) = r.src_ip {
        ext.ip("c6a2", IpAddr::V6(ip));
        ext.str("c6a2Label", "Source IPv6 Address");
    }
    if let IpAddr::V6(ip) = r.dst_ip {
        ext.ip("c6a3", IpAddr::V6(ip));
        ext.str("c6a3Label", "Destination IPv6 Address");
    }
    ext.str(
        "proto",
        match r.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        },
    );
    ext.str("act", r.action.as_str());
    if let Some(ifname) = &r.interface {
        ext.str("deviceInboundInterface", ifname);
    }
    ext.num("deviceDirection", 0u8);
    ext.str("cs1", group);
    ext.str("cs1Label", group_label);
    if with_ports {
        ext.str("cs2", community_id_text(r).as_str());
        ext.str("cs2Label", "communityId");
    }
}

/// A group's flood summary: `start`/`end` (epoch ms), `cs2` (`floodCounts`,
/// `name:n,...`), `cs6` (`answered`, `accepted:n,refused:n`), `flexString1` (`topSources`,
/// `ip/withheld/rate_limited,...`) and `flexString2` (`topPorts`, `port:withheld,...`).
/// Only digits, addresses and fixed names: nothing to escape.
fn flood_summary(ext: &mut Ext<'_>, s: &FloodSummary, rate_limited: u64) {
    ext.num("start", epoch_ms(s.start));
    ext.num("end", epoch_ms(s.end));
    let mut n = itoa::Buffer::new();
    ext.key("cs2");
    for (i, (name, v)) in [
        ("new_connections", s.new_connections),
        ("events", s.events),
        ("group_budget", s.group_budget),
        ("withheld", rate_limited + s.group_budget),
        ("distinct_sources", s.distinct_sources),
        ("folded_alerts", s.folded_alerts),
        ("folded_accepted", s.folded_by_answer.accepted),
        ("folded_refused", s.folded_by_answer.refused),
        ("folded_no_answer", s.folded_by_answer.no_answer),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            ext.out.push(b',');
        }
        ext.out.extend_from_slice(name.as_bytes());
        ext.out.push(b':');
        ext.out.extend_from_slice(n.format(v).as_bytes());
    }
    ext.out.extend_from_slice(if s.spoofed_likely {
        b",spoofed_likely:true"
    } else {
        b",spoofed_likely:false"
    });
    ext.str("cs2Label", "floodCounts");
    ext.key("cs6");
    ext.out.extend_from_slice(b"accepted:");
    ext.out
        .extend_from_slice(n.format(s.answered.accepted).as_bytes());
    ext.out.extend_from_slice(b",refused:");
    ext.out
        .extend_from_slice(n.format(s.answered.refused).as_bytes());
    ext.str("cs6Label", "answered");
    ext.key("flexString1");
    for (i, t) in s.top_sources.iter().enumerate() {
        if i > 0 {
            ext.out.push(b',');
        }
        write_ip(ext.out, t.ip);
        ext.out.push(b'/');
        ext.out.extend_from_slice(n.format(t.withheld).as_bytes());
        ext.out.push(b'/');
        ext.out
            .extend_from_slice(n.format(t.rate_limited).as_bytes());
    }
    ext.str("flexString1Label", "topSources");
    ext.key("flexString2");
    for (i, t) in s.top_ports.iter().enumerate() {
        if i > 0 {
            ext.out.push(b',');
        }
        ext.out.extend_from_slice(n.format(t.port).as_bytes());
        ext.out.push(b':');
        ext.out.extend_from_slice(n.format(t.withheld).as_bytes());
    }
    ext.str("flexString2Label", "topPorts");
}

/// Writes `CEF:0|vendor|product|version|signature|name|severity|` and returns the writer of
/// the extensions that follow.
fn header<'a>(
    observer: &Observer,
    signature: &str,
    name: &str,
    severity: u8,
    out: &'a mut Vec<u8>,
) -> Ext<'a> {
    out.extend_from_slice(b"CEF:0|");
    for field in [
        observer.vendor,
        observer.product,
        observer.version,
        signature,
        name,
    ] {
        escape_header_into(out, field.as_bytes());
        out.push(b'|');
    }
    out.extend_from_slice(itoa::Buffer::new().format(severity).as_bytes());
    out.push(b'|');
    Ext { out, first: true }
}

/// CEF severity (0-10) of a posture finding.
pub const fn finding_severity_number(s: FindingSeverity) -> u8 {
    match s {
        FindingSeverity::Info => 1,
        FindingSeverity::Low => 3,
        FindingSeverity::Medium => 5,
        FindingSeverity::High => 8,
        FindingSeverity::Critical => 10,
    }
}

/// One posture finding: signature = its id, `cat=posture`, `outcome=failure`, the CIS item
/// in `cs1`, the fix in `cs2`, the evidence in `msg`.
fn finding_into(e: &FindingEvent, observer: &Observer, out: &mut Vec<u8>) {
    let f = &e.finding;
    let mut ext = header(
        observer,
        f.id,
        f.title,
        finding_severity_number(f.severity),
        out,
    );
    ext.num("rt", epoch_ms(e.time));
    ext.str("cat", "posture");
    ext.str("outcome", "failure");
    ext.str("externalId", &e.id);
    ext.str("cs1", f.cis.unwrap_or(""));
    ext.str("cs1Label", "cisBenchmark");
    ext.str("cs2", f.fix);
    ext.str("cs2Label", "remediation");
    ext.str("cs3", f.severity.as_str());
    ext.str("cs3Label", "findingSeverity");
    ext.str("msg", &super::finding::message(e));
    ext.str("dvchost", &observer.hostname);
}

/// Appends the CEF line of one item to `out`, escaping each field as it is written.
pub fn render_into(item: &OutputItem, observer: &Observer, out: &mut Vec<u8>) {
    let (signature, name, severity) = match item {
        OutputItem::Alert(a) => (a.rule.id, a.rule.name, severity_number(a.rule.severity)),
        OutputItem::Flow(_) => ("flow", "sampled flow", FLOW_SEVERITY),
        OutputItem::Finding(f) => {
            return finding_into(f, observer, out);
        }
    };
    let mut ext = header(observer, signature, name, severity, out);
    ext.num("rt", epoch_ms(item_time(item)));
    let (alert, rec) = parts(item);
    if let Some(r) = rec {
        match alert.map(|a| &a.kind) {
            // A scan spans groups: cs1 lists them (rare alerts: one small string each).
            Some(AlertKind::Scan { groups, .. }) => {
                let groups = groups.join(",");
                connection(&mut ext, r, false, &groups, "portGroups");
            }
            _ => connection(
                &mut ext,
                r,
                !spans_connections(alert),
                &r.group,
                "portGroup",
            ),
        }
    }
    ext.str("outcome", outcome(rec));
    if let OutputItem::Alert(a) = item {
        ext.str("cat", rule_category(a));
        ext.num("cn1", a.suppressed);
        ext.str("cn1Label", "suppressedCount");
        ext.str("externalId", &a.id);
        if let Some(first) = &a.follow_up_of {
            ext.str("cs3", first);
            ext.str("cs3Label", "followUpOf");
        } else if let Some(corrected) = rec.and_then(|r| r.answer_corrects_alert.as_deref()) {
            // A late answer's first alert: cs3 names the alert it corrects (a follow-up's
            // cs3 is its series; JSON formats carry both).
            ext.str("cs3", corrected);
            ext.str("cs3Label", "correctsAlert");
        }
        match &a.kind {
            AlertKind::Connection { .. } => {
                if let Some(c) = &a.repeats_by_answer {
                    ext.key("cs4");
                    for (i, (name, n)) in [
                        ("accepted", c.accepted),
                        ("refused", c.refused),
                        ("no_answer", c.no_answer),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        if i > 0 {
                            ext.out.push(b',');
                        }
                        ext.out.extend_from_slice(name.as_bytes());
                        ext.out.push(b':');
                        ext.out
                            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    }
                    ext.str("cs4Label", "repeatsByAnswer");
                }
            }
            AlertKind::Sweep { ports, window, .. } => {
                ext.ports("cs4", ports);
                ext.str("cs4Label", "sweepPorts");
                ext.num("cn2", ports.len());
                ext.str("cn2Label", "sweepPortCount");
                ext.num("cn3", window.as_secs());
                ext.str("cn3Label", "windowSeconds");
            }
            AlertKind::Scan {
                ports,
                window,
                connections,
                connection_alerts,
                ..
            } => {
                ext.ports("cs4", ports);
                ext.str("cs4Label", "scanPorts");
                ext.num("cn2", ports.len());
                ext.str("cn2Label", "scanPortCount");
                ext.num("cn3", window.as_secs());
                ext.str("cn3Label", "windowSeconds");
                ext.num("flexNumber1", *connections);
                ext.str("flexNumber1Label", "scanConnections");
                ext.num("flexNumber2", *connection_alerts);
                ext.str("flexNumber2Label", "scanConnectionAlerts");
            }
            AlertKind::Flood {
                scope,
                rate_limited,
                ringbuf_full,
                window,
                summary,
            } => {
                ext.num("cn2", *rate_limited);
                ext.str("cn2Label", "rateLimited");
                ext.num("cn3", *ringbuf_full);
                ext.str("cn3Label", "ringbufFull");
                ext.num("cs4", window.as_secs());
                ext.str("cs4Label", "windowSeconds");
                match scope {
                    FloodScope::Source(ip) => ext.ip("src", *ip),
                    FloodScope::Group(g) => {
                        ext.str("cs1", g);
                        ext.str("cs1Label", "portGroup");
                    }
                    FloodScope::Node => {}
                }
                if let Some(s) = summary {
                    flood_summary(&mut ext, s, *rate_limited);
                }
            }
        }
        if !a.losses_since_previous.is_empty() {
            ext.key("cs5");
            for (i, (k, v)) in a.losses_since_previous.iter().enumerate() {
                if i > 0 {
                    ext.out.push(b',');
                }
                escape_value_into(ext.out, k.as_bytes());
                ext.out.push(b':');
                ext.out
                    .extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
            }
            ext.str("cs5Label", "lossesSincePrevious");
        }
    }
    if let Some(answer) = rec.and_then(|r| r.answer) {
        ext.str("cs6", answer.as_str());
        ext.str("cs6Label", "answer");
    }
    if let Some(corrects) = rec.and_then(|r| r.answer_corrects) {
        ext.str("flexString1", corrects.as_str());
        ext.str("flexString1Label", "answerCorrects");
    }
    if rec.is_some_and(|r| r.record_type == RecordType::Revoked) {
        ext.str("flexString1", "open_when_revoked");
        ext.str("flexString1Label", "connectionState");
    }
    if let Some(r) = rec {
        cef_pairs(r, |k, v| ext.str(k, v));
    }
    ext.text("msg", |o| Message(item).write_to(o));
    ext.str("dvchost", &observer.hostname);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        detect::fixture::{
            connection_alert, flood, follow_up, fragmented_alert, group_flood, handshake_alert,
            late_answer_alert, scan, sweep, unseen_alert, variety,
        },
        record::fixture::{CID, TIME_MS as T_MS, sampled},
        render::check::{self, hostile_observer, observer},
    };

    fn render(item: &OutputItem, observer: &Observer) -> String {
        check::line(render_into, item, observer)
    }

    /// Splits a CEF line into its 7 header fields and the extension map (unescaping).
    fn parse(line: &str) -> (Vec<String>, BTreeMap<String, String>) {
        assert!(!line.contains('\n') && !line.contains('\r'));
        let mut header = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while header.len() < 7 {
            let c = chars.next().expect("truncated header");
            match c {
                '\\' => cur.push(chars.next().unwrap()),
                '|' => header.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        let rest: String = chars.collect();
        // Extension: key=value pairs; a value runs until the next unescaped ` key=`.
        let mut ext = BTreeMap::new();
        let mut tokens: Vec<(String, String)> = Vec::new();
        let bytes: Vec<char> = rest.chars().collect();
        let mut i = 0;
        let mut key = String::new();
        let mut val = String::new();
        let mut in_key = true;
        while i < bytes.len() {
            let c = bytes[i];
            if in_key {
                if c == '=' {
                    in_key = false;
                } else {
                    key.push(c);
                }
            } else if c == '\\' {
                i += 1;
                match bytes[i] {
                    'n' => val.push('\n'),
                    'r' => val.push('\r'),
                    o => val.push(o),
                }
            } else if c == ' ' && next_is_key(&bytes[i + 1..]) {
                tokens.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                in_key = true;
            } else if c == '=' {
                panic!("unescaped = in value of {key}: {rest}");
            } else {
                val.push(c);
            }
            i += 1;
        }
        tokens.push((key, val));
        for (k, v) in tokens {
            assert!(ext.insert(k.clone(), v).is_none(), "duplicate key {k}");
        }
        (header, ext)
    }

    fn next_is_key(rest: &[char]) -> bool {
        let key: String = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        !key.is_empty() && rest.get(key.len()) == Some(&'=')
    }

    fn header_ok(h: &[String], sig: &str, name: &str, sev: &str) {
        assert_eq!(h[0], "CEF:0");
        assert_eq!(h[1], "node-monitor");
        assert_eq!(h[2], "node-monitor");
        assert_eq!(h[3], "0.1.0");
        assert_eq!(h[4], sig);
        assert_eq!(h[5], name);
        assert_eq!(h[6], sev);
    }

    #[test]
    fn unseen_and_fragmented_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(unseen_alert()), &observer()));
        header_ok(
            &h,
            "NM-1030",
            "the node accepted a connection nobody saw arrive",
            "10",
        );
        assert_eq!(e["src"], "128.232.110.120");
        assert_eq!(e["outcome"], "success");
        assert_eq!(
            (e["cs6Label"].as_str(), e["cs6"].as_str()),
            ("answer", "accepted")
        );
        assert_eq!(e["cat"], "unauthorized-port-access");
        assert!(
            e["msg"].contains("no attempt seen on ingress"),
            "{}",
            e["msg"]
        );
        let (h, e) = parse(&render(&OutputItem::Alert(fragmented_alert()), &observer()));
        header_ok(
            &h,
            "NM-1001",
            "kubelet API access from a source not allowed",
            "8",
        );
        assert!(e["msg"].contains("sent in IPv4 fragments"), "{}", e["msg"]);
        let (h, e) = parse(&render(&OutputItem::Alert(handshake_alert()), &observer()));
        header_ok(
            &h,
            "NM-1030",
            "the node accepted a connection nobody saw arrive",
            "10",
        );
        assert!(
            e["msg"].contains("handshake completed after event budgets withheld"),
            "{}",
            e["msg"]
        );
    }

    #[test]
    fn connection_alert_fields() {
        let line = render(&OutputItem::Alert(connection_alert()), &observer());
        let (h, e) = parse(&line);
        header_ok(
            &h,
            "NM-1001",
            "kubelet API access from a source not allowed",
            "8",
        );
        assert_eq!(e["rt"], T_MS.to_string());
        assert_eq!(e["src"], "128.232.110.120");
        assert_eq!(e["spt"], "34855");
        assert_eq!(e["dst"], "66.35.250.204");
        assert_eq!(e["dpt"], "80");
        assert_eq!(e["proto"], "TCP");
        assert_eq!(e["act"], "would_drop");
        assert_eq!(e["outcome"], "failure");
        assert_eq!(e["deviceInboundInterface"], "eth0");
        assert_eq!(e["deviceDirection"], "0");
        assert_eq!(
            (e["cs1Label"].as_str(), e["cs1"].as_str()),
            ("portGroup", "kubelet")
        );
        assert_eq!(
            (e["cs2Label"].as_str(), e["cs2"].as_str()),
            ("communityId", CID)
        );
        assert_eq!(
            (e["cn1Label"].as_str(), e["cn1"].as_str()),
            ("suppressedCount", "0")
        );
        assert_eq!(e["externalId"], "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d");
        assert_eq!(
            (e["cs5Label"].as_str(), e["cs5"].as_str()),
            ("lossesSincePrevious", "ringbuf_full:4")
        );
        assert_eq!(
            (e["cs6Label"].as_str(), e["cs6"].as_str()),
            ("answer", "refused")
        );
        assert_eq!(e["cat"], "unauthorized-port-access");
        assert_eq!(e["dvchost"], "node-a");
        assert!(e["msg"].starts_with("kubelet API access"));
        assert!(!e.contains_key("cs3"));
        // The community id's `=` padding is escaped on the wire.
        assert!(line.contains("cs2=1:LQU9qZlK+B5F3KDmev6m5PMibrg\\="));
    }

    #[test]
    fn follow_up_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(follow_up()), &observer()));
        header_ok(
            &h,
            "NM-1001",
            "kubelet API access from a source not allowed",
            "8",
        );
        assert_eq!(e["cn1"], "17");
        assert_eq!(e["externalId"], "0b7c9e2d-1111-4222-8333-444455556666");
        assert_eq!(
            (e["cs3Label"].as_str(), e["cs3"].as_str()),
            ("followUpOf", "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d")
        );
        assert!(!e.contains_key("cs5"));
        assert!(e["msg"].contains("17 more occurrences"));
        assert_eq!(
            (e["cs4Label"].as_str(), e["cs4"].as_str()),
            ("repeatsByAnswer", "accepted:0,refused:12,no_answer:5")
        );
        let (_, e) = parse(&render(
            &OutputItem::Alert(late_answer_alert()),
            &observer(),
        ));
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["cs6"], "accepted");
        assert_eq!(
            (e["flexString1Label"].as_str(), e["flexString1"].as_str()),
            ("answerCorrects", "no_answer")
        );
        assert_eq!(
            (e["cs3Label"].as_str(), e["cs3"].as_str()),
            ("correctsAlert", crate::detect::fixture::CORRECTED_ALERT)
        );
    }

    #[test]
    fn sweep_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(sweep()), &observer()));
        header_ok(&h, "NM-1010", "NodePort sweep", "5");
        assert_eq!(e["src"], "128.232.110.120");
        assert_eq!(e["dst"], "66.35.250.204");
        assert!(!e.contains_key("spt") && !e.contains_key("dpt") && !e.contains_key("cs2"));
        assert_eq!(e["cs1"], "nodeport");
        assert_eq!(
            (e["cs4Label"].as_str(), e["cs4"].as_str()),
            ("sweepPorts", "30001,30002,30003,30004,30005")
        );
        assert_eq!(e["cn2"], "5");
        assert_eq!(e["cn3"], "60");
        assert_eq!(e["act"], "pass");
        assert_eq!(e["outcome"], "unknown");
        assert_eq!(e["cat"], "network-scan");
        assert_eq!(e["cn1"], "0");
    }

    #[test]
    fn scan_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(scan()), &observer()));
        header_ok(&h, "NM-1011", "control-plane port scan", "8");
        assert!(!e.contains_key("spt") && !e.contains_key("dpt") && !e.contains_key("cs2"));
        assert_eq!(
            (e["cs1Label"].as_str(), e["cs1"].as_str()),
            (
                "portGroups",
                "apiserver,etcd-client,etcd-peer,kubelet,kubelet-readonly"
            )
        );
        assert_eq!(
            (e["cs4Label"].as_str(), e["cs4"].as_str()),
            ("scanPorts", "2379,2380,6443,10250,10255")
        );
        assert_eq!((e["cn2"].as_str(), e["cn3"].as_str()), ("5", "60"));
        assert_eq!(
            (e["flexNumber1"].as_str(), e["flexNumber2"].as_str()),
            ("7", "5")
        );
        assert_eq!(e["cat"], "network-scan");
    }

    #[test]
    fn flood_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(flood()), &observer()));
        header_ok(&h, "NM-1020", "event limits reached (flood)", "5");
        assert_eq!(e["rt"], T_MS.to_string());
        assert!(!e.contains_key("src") && !e.contains_key("dst"));
        assert_eq!(
            (e["cn2Label"].as_str(), e["cn2"].as_str()),
            ("rateLimited", "260")
        );
        assert_eq!(
            (e["cn3Label"].as_str(), e["cn3"].as_str()),
            ("ringbufFull", "7")
        );
        assert_eq!(e["cs4"], "10");
        assert_eq!(e["externalId"], "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d");
        assert_eq!(e["dvchost"], "node-a");
    }

    /// Issue 9: a group's NM-1020 in CEF: the group in `cs1`, the window in `start`/`end`,
    /// the counts in `cs2`, the answers in `cs6`, the top sources and ports in
    /// `flexString1`/`flexString2`.
    #[test]
    fn group_flood_fields() {
        let (h, e) = parse(&render(&OutputItem::Alert(group_flood()), &observer()));
        header_ok(&h, "NM-1020", "event limits reached (flood)", "5");
        assert!(!e.contains_key("src") && !e.contains_key("dst"));
        let pairs = [
            ("cs1", "portGroup", "kubelet"),
            ("cn2", "rateLimited", "12"),
            ("cn3", "ringbufFull", "8"),
            ("cs4", "windowSeconds", "10"),
            (
                "cs2",
                "floodCounts",
                "new_connections:4000,events:100,group_budget:3880,withheld:3892,\
                 distinct_sources:3850,folded_alerts:6,folded_accepted:1,folded_refused:2,\
                 folded_no_answer:3,spoofed_likely:true",
            ),
            ("cs6", "answered", "accepted:5,refused:2"),
            (
                "flexString1",
                "topSources",
                "203.0.113.7/14/12,2001:db8::9/2/0",
            ),
            ("flexString2", "topPorts", "10250:3890,10251:2"),
        ];
        for (k, label, v) in pairs {
            assert_eq!(e[k], v, "{k}");
            assert_eq!(e[&format!("{k}Label")], label, "{k}Label");
        }
        assert_eq!(e["start"], (T_MS - 10_000).to_string());
        assert_eq!(e["end"], T_MS.to_string());
        assert!(
            e["msg"]
                .starts_with("event limits reached (flood): group kubelet: 4000 new connections")
        );
    }

    #[test]
    fn flow_fields() {
        let (h, e) = parse(&render(&OutputItem::Flow(sampled()), &observer()));
        header_ok(&h, "flow", "sampled flow", "1");
        assert_eq!(e["rt"], T_MS.to_string());
        assert_eq!(e["src"], "2001:470:e5bf:dead:4957:2174:e82c:4887");
        assert_eq!(e["c6a2"], "2001:470:e5bf:dead:4957:2174:e82c:4887");
        assert_eq!(e["c6a3"], "2607:f8b0:400c:c03::1a");
        assert_eq!(e["spt"], "63943");
        assert_eq!(e["dpt"], "30053");
        assert_eq!(e["proto"], "UDP");
        assert_eq!(e["act"], "pass");
        assert_eq!(e["outcome"], "unknown");
        assert_eq!(e["cs1"], "nodeport");
        assert!(e["cs2"].starts_with("1:"));
        assert!(!e.contains_key("externalId") && !e.contains_key("cn1"));
    }

    /// Every kind of item (hostile strings included) is one parseable line whose `msg` is
    /// the item's message and whose `dvchost` is the observer's hostname.
    #[test]
    fn every_variety_parses_with_its_message() {
        for obs in [observer(), hostile_observer()] {
            for item in &variety() {
                let (header, e) = parse(&render(item, &obs));
                assert_eq!(header.len(), 7);
                assert_eq!(e["msg"], crate::render::message::message(item), "{item:?}");
                assert_eq!(e["dvchost"], obs.hostname);
            }
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(escape_header("a\nb\rc"), "a b c");
        assert_eq!(escape_header("x=y"), "x=y");
        assert_eq!(escape_value(r"a=b\c|d"), r"a\=b\\c|d");
        assert_eq!(escape_value("l1\nl2\r"), r"l1\nl2\r");

        // Hostile names end up escaped in a full line and parse back intact.
        let obs = Observer {
            hostname: "evil=host\nx".to_owned(),
            product: "node|monitor",
            vendor: r"v\x",
            version: "1",
        };
        let mut a = connection_alert();
        a.rule.name = "a|b";
        if let AlertKind::Connection { record } = &mut a.kind {
            record.group = r"g=1\2 key=x".into();
        }
        let line = render(&OutputItem::Alert(a), &obs);
        assert!(
            line.starts_with(r"CEF:0|v\\x|node\|monitor|1|NM-1001|a\|b|8|"),
            "{line}"
        );
        let (h, e) = parse(&line);
        assert_eq!(h[5], "a|b");
        assert_eq!(e["dvchost"], "evil=host\nx");
        assert_eq!(e["cs1"], r"g=1\2 key=x");
    }

    #[test]
    fn finding_line_parses_back() {
        let ev = crate::render::finding::tests::event();
        let line = render(&OutputItem::Finding(ev.clone()), &observer());
        assert!(
            line.starts_with(
                "CEF:0|node-monitor|node-monitor|0.1.0|NM-2001|kubelet read-only port open|8|"
            ),
            "{line}"
        );
        let (h, e) = parse(&line);
        assert_eq!(h[4], "NM-2001");
        assert_eq!(e["cat"], "posture");
        assert_eq!(e["outcome"], "failure");
        assert_eq!(e["externalId"], ev.id);
        assert_eq!(e["cs1"], "4.2.4");
        assert_eq!(e["cs1Label"], "cisBenchmark");
        assert_eq!(e["cs2"], ev.finding.fix);
        assert_eq!(e["cs3"], "high");
        assert_eq!(e["rt"], "1700000000000");
        // The evidence holds `=`, `|`, `\` and a line break: escaped, and back intact.
        assert_eq!(e["msg"], crate::render::finding::message(&ev));
        assert!(e["msg"].contains("a=b | c\\d\nnext"), "{}", e["msg"]);
        assert_eq!(e["dvchost"], "node-a");
    }
}
